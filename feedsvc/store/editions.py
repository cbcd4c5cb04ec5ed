"""Digest periods, editions and the delivery rows that queue them, all created idempotently.

Every insert here ignores a row that is already there (unique keys), so two schedulers, or a restart in the
middle of a period, create each edition and each subscriber's delivery once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from feedsvc.store.dialects import insert_ignoring_conflicts
from feedsvc.store.schema import deliveries, digest_periods, editions, subscribers

# Deliveries still to be sent (or being sent).
OPEN_STATES = ("queued", "sending", "retry")


@dataclass(frozen=True, slots=True)
class Period:
    key: str
    frequency: str
    period_start: datetime
    period_end: datetime
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Recipient:
    id: int
    tags: tuple[str, ...]  # tag slugs; empty = every post
    confirmed_at: datetime


_PERIOD_COLUMNS = (
    digest_periods.c.key,
    digest_periods.c.frequency,
    digest_periods.c.period_start,
    digest_periods.c.period_end,
    digest_periods.c.completed_at,
)


def latest_period(connection: Connection, frequency: str) -> Period | None:
    statement = (
        select(*_PERIOD_COLUMNS)
        .where(digest_periods.c.frequency == frequency)
        .order_by(digest_periods.c.period_end.desc())
        .limit(1)
    )
    row = connection.execute(statement).first()
    return Period(*row) if row else None


def latest_period_end(connection: Connection, frequencies: Sequence[str]) -> datetime | None:
    statement = select(func.max(digest_periods.c.period_end)).where(digest_periods.c.frequency.in_(list(frequencies)))
    return connection.execute(statement).scalar_one_or_none()


def open_period(
    connection: Connection, key: str, frequency: str, start: datetime, end: datetime, now: datetime
) -> Period:
    """The period with this key: created with this window, or as an earlier run (any process) created it."""
    values = {"key": key, "frequency": frequency, "period_start": start, "period_end": end, "created_at": now}
    connection.execute(insert_ignoring_conflicts(connection, digest_periods, ["key"]).values(**values))
    row = connection.execute(select(*_PERIOD_COLUMNS).where(digest_periods.c.key == key)).one()
    return Period(*row)


def complete_period(connection: Connection, key: str, now: datetime) -> None:
    connection.execute(
        update(digest_periods)
        .where(digest_periods.c.key == key, digest_periods.c.completed_at.is_(None))
        .values(completed_at=now)
    )


def edition_id(connection: Connection, key: str) -> int | None:
    return connection.execute(select(editions.c.id).where(editions.c.key == key)).scalar_one_or_none()


def insert_edition(connection: Connection, **values: Any) -> int:
    """Insert the edition unless its key exists; its id either way."""
    connection.execute(insert_ignoring_conflicts(connection, editions, ["key"]).values(**values))
    found = edition_id(connection, values["key"])
    assert found is not None
    return found


def recipients(
    connection: Connection, frequency: str, *, confirmed_by: datetime, after_id: int, limit: int
) -> list[Recipient]:
    """Up to `limit` active subscribers of this frequency confirmed by then, in id order after `after_id`.

    Called page after page (keyset pagination), so a list of 100,000 is never held at once."""
    statement = (
        select(subscribers.c.id, subscribers.c.tags, subscribers.c.confirmed_at)
        .where(
            subscribers.c.status == "active",
            subscribers.c.frequency == frequency,
            subscribers.c.confirmed_at.is_not(None),
            subscribers.c.confirmed_at <= confirmed_by,
            subscribers.c.id > after_id,
        )
        .order_by(subscribers.c.id)
        .limit(limit)
    )
    return [Recipient(id, tuple(tags or ()), confirmed_at) for id, tags, confirmed_at in connection.execute(statement)]


def insert_deliveries(connection: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Queue these deliveries, skipping any whose key exists. Returns the edition id of each new row."""
    if not rows:
        return []
    statement = insert_ignoring_conflicts(connection, deliveries, ["key"]).returning(deliveries.c.edition_id)
    return list(connection.execute(statement, list(rows)).scalars())


def refresh_queue_statistics(connection: Connection) -> None:
    """After queueing a period's deliveries: on PostgreSQL, let the planner see them (ANALYZE).

    Until autovacuum's next pass (a minute or more away) its statistics still say few rows are queued, so the
    statements marking each wave of 8 look them up through the index on `state`, over every queued row, instead
    of by id: most of the server's CPU per mail in `benchmarks/store_queue.py` (376 against about 100 µs). SQLite
    keeps no statistics unless asked and plans these by id already."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {deliveries.name}")


def delivery_states(connection: Connection, edition_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per edition: how many of its deliveries are in each state."""
    statement = (
        select(deliveries.c.edition_id, deliveries.c.state, func.count())
        .where(deliveries.c.edition_id.in_(list(edition_ids)))
        .group_by(deliveries.c.edition_id, deliveries.c.state)
    )
    states: dict[int, dict[str, int]] = {edition: {} for edition in edition_ids}
    for edition, state, number in connection.execute(statement):
        states[edition][state] = number
    return states


def unfinished_editions(connection: Connection) -> dict[int, str]:
    """Editions with deliveries still queued, sending or to retry: id -> key."""
    statement = select(editions.c.id, editions.c.key).where(
        select(deliveries.c.id)
        .where(deliveries.c.edition_id == editions.c.id, deliveries.c.state.in_(OPEN_STATES))
        .exists()
    )
    return {edition_id: key for edition_id, key in connection.execute(statement)}


@dataclass(frozen=True, slots=True)
class SentEdition:
    """An edition as its web copy needs it: which posts, under which subject, for which period."""

    id: int
    key: str
    frequency: str
    period_start: datetime
    period_end: datetime
    post_ids: tuple[str, ...]
    subject: str


def sent_editions(
    connection: Connection,
    *,
    limit: int,
    frequency: str | None = None,
    ending_from: datetime | None = None,
    ending_before: datetime | None = None,
) -> list[SentEdition]:
    """Editions mailed to at least one subscriber, newest period first; optionally of one frequency and with
    their period ending in [ending_from, ending_before)."""
    sent = select(deliveries.c.id).where(deliveries.c.edition_id == editions.c.id, deliveries.c.state == "sent")
    statement = select(
        editions.c.id,
        editions.c.key,
        editions.c.frequency,
        editions.c.period_start,
        editions.c.period_end,
        editions.c.post_ids,
        editions.c.subject,
    ).where(sent.exists())
    if frequency is not None:
        statement = statement.where(editions.c.frequency == frequency)
    if ending_from is not None:
        statement = statement.where(editions.c.period_end >= ending_from)
    if ending_before is not None:
        statement = statement.where(editions.c.period_end < ending_before)
    statement = statement.order_by(editions.c.period_end.desc(), editions.c.id.desc()).limit(limit)
    return [
        SentEdition(id, key, frequency, start, end, tuple(post_ids or ()), subject)
        for id, key, frequency, start, end, post_ids, subject in connection.execute(statement)
    ]

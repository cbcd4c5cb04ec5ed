"""Mail event rows: what mail systems reported about a subscriber. The policy lives in `feedsvc.mail_events`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from feedsvc.store.dialects import insert_ignoring_conflicts
from feedsvc.store.schema import deliveries, mail_events, subscribers
from feedsvc.vocabulary import MAIL_EVENT_KINDS


@dataclass(frozen=True, slots=True)
class MailEvent:
    id: int
    created_at: datetime
    email: str
    kind: str
    source: str
    detail: str
    delivery_id: int | None
    edition_id: int | None


def insert_if_new(connection: Connection, **values: Any) -> bool:
    """Record an event unless one with the same event_key exists; whether it was recorded."""
    statement = (
        insert_ignoring_conflicts(connection, mail_events, ["event_key"]).values(**values).returning(mail_events.c.id)
    )
    return connection.execute(statement).scalar_one_or_none() is not None


def delivery_target(connection: Connection, delivery_id: int) -> tuple[int, int] | None:
    """(subscriber id, edition id) of a delivery, or None when it no longer exists."""
    row = connection.execute(
        select(deliveries.c.subscriber_id, deliveries.c.edition_id).where(deliveries.c.id == delivery_id)
    ).first()
    return (row[0], row[1]) if row else None


def count_since(connection: Connection, subscriber_id: int, kind: str, since: datetime) -> int:
    c = mail_events.c
    statement = select(func.count()).where(c.subscriber_id == subscriber_id, c.kind == kind, c.created_at >= since)
    return connection.execute(statement).scalar_one()


def recent(connection: Connection, *, kind: str | None = None, limit: int = 100) -> list[MailEvent]:
    """The latest events first, with the subscriber's address."""
    c = mail_events.c
    statement = (
        select(c.id, c.created_at, subscribers.c.email, c.kind, c.source, c.detail, c.delivery_id, c.edition_id)
        .join(subscribers, subscribers.c.id == c.subscriber_id)
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(limit)
    )
    if kind:
        statement = statement.where(c.kind == kind)
    return [MailEvent(*row) for row in connection.execute(statement)]


def counts_by_kind(connection: Connection) -> dict[str, int]:
    """Events of each kind ever recorded, every kind present (0 when none)."""
    counts = dict.fromkeys(MAIL_EVENT_KINDS, 0)
    statement = select(mail_events.c.kind, func.count()).group_by(mail_events.c.kind)
    counts.update({kind: number for kind, number in connection.execute(statement)})
    return counts

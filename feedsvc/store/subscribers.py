"""Subscriber rows: reading, writing and searching them. The rules (who may become what) live in
`feedsvc.subscriptions`; this module only runs the statements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, or_, select, update

from feedsvc.store.dialects import insert_ignoring_conflicts
from feedsvc.store.schema import subscribers
from feedsvc.vocabulary import STATUSES


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    email_key: str
    name: str
    status: str
    frequency: str
    tags: tuple[str, ...]
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    status_reason: str
    consent_at: datetime | None
    consent_ip: str
    consent_user_agent: str
    consent_source: str
    link_key: str
    unkeyed_links: bool

    @classmethod
    def from_row(cls, row: Row[Any]) -> Subscriber:
        values = dict(row._mapping)
        values["tags"] = tuple(values["tags"] or ())
        values["unkeyed_links"] = bool(values["unkeyed_links"])
        return cls(**values)


def get(connection: Connection, subscriber_id: int) -> Subscriber | None:
    row = connection.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return Subscriber.from_row(row) if row else None


def find(connection: Connection, email_key: str) -> Subscriber | None:
    row = connection.execute(select(subscribers).where(subscribers.c.email_key == email_key)).first()
    return Subscriber.from_row(row) if row else None


def insert_if_absent(connection: Connection, **values: Any) -> bool:
    """Insert a subscriber unless one with the same email_key exists (also against a concurrent insert).

    Returns whether a row was inserted."""
    values["tags"] = list(values.get("tags", ()))
    statement = (
        insert_ignoring_conflicts(connection, subscribers, ["email_key"]).values(**values).returning(subscribers.c.id)
    )
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
    return connection.execute(statement).scalar_one_or_none() is not None


def insert_many_if_absent(connection: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert these subscribers in one statement, but none whose email_key exists (also against a concurrent
    insert). Returns the ids of those inserted, by email_key."""
    if not rows:
        return {}
    statement = insert_ignoring_conflicts(connection, subscribers, ["email_key"]).returning(
        subscribers.c.email_key, subscribers.c.id
    )
    # One statement for many rows takes its columns from the first: every row gets every column given.
    columns = dict.fromkeys(key for row in rows for key in row)
    parameters = [{column: row.get(column) for column in columns} | {"tags": list(row.get("tags", ()))} for row in rows]
    inserted = connection.execute(statement, parameters)
    return {email_key: subscriber_id for email_key, subscriber_id in inserted}


def change(connection: Connection, subscriber_id: int, **values: Any) -> None:
    if "tags" in values:
        values["tags"] = list(values["tags"])
    connection.execute(update(subscribers).where(subscribers.c.id == subscriber_id).values(**values))


def remove(connection: Connection, subscriber_id: int) -> bool:
    """Erase the row (and, by cascade, its deliveries). Returns whether it existed."""
    return connection.execute(delete(subscribers).where(subscribers.c.id == subscriber_id)).rowcount == 1


def _filtered(statement, status: str | None, query: str | None):
    if status:
        statement = statement.where(subscribers.c.status == status)
    if query:
        # A substring of the address or the name; LIKE wildcards in the query are taken literally.
        pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            or_(
                subscribers.c.email_key.like(pattern, escape="\\"),
                func.lower(subscribers.c.name).like(pattern, escape="\\"),
            )
        )
    return statement


def search(
    connection: Connection,
    *,
    status: str | None = None,
    query: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Subscriber]:
    statement = _filtered(select(subscribers), status, query).order_by(subscribers.c.id).limit(limit).offset(offset)
    return [Subscriber.from_row(row) for row in connection.execute(statement)]


def count(connection: Connection, *, status: str | None = None, query: str | None = None) -> int:
    return connection.execute(_filtered(select(func.count()).select_from(subscribers), status, query)).scalar_one()


def counts_by_status(connection: Connection) -> dict[str, int]:
    """Number of subscribers per status, every status present (0 when none)."""
    counts = dict.fromkeys(STATUSES, 0)
    statement = select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
    for status, number in connection.execute(statement):
        counts[status] = number
    return counts


def every(connection: Connection, batch: int = 1000) -> Iterator[Subscriber]:
    """All subscribers in id order, read in batches (export of a large list without holding it all)."""
    last_id = 0
    while True:
        statement = select(subscribers).where(subscribers.c.id > last_id).order_by(subscribers.c.id).limit(batch)
        rows = [Subscriber.from_row(row) for row in connection.execute(statement)]
        if not rows:
            return
        yield from rows
        last_id = rows[-1].id

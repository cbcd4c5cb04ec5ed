"""Announcement rows: which posts have been seen published, when, and in which batch."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, literal, select, update

from feedsvc.cadences import INSTANT
from feedsvc.store.dialects import insert_ignoring_conflicts
from feedsvc.store.schema import announcements, digest_periods

ARCHIVE_KEY = "archive"
# The longest post id and slug the store keeps (PostgreSQL enforces it; SQLite would not).
ID_MAX_CHARS: int = announcements.c.post_id.type.length  # type: ignore[attr-defined]
# Rows per multi-row INSERT: well under SQLite's bound-parameter limit.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Announcement:
    post_id: str
    published_at: datetime
    announced_at: datetime
    first_seen_at: datetime
    batch: str


_COLUMNS = (
    announcements.c.post_id,
    announcements.c.published_at,
    announcements.c.announced_at,
    announcements.c.first_seen_at,
    announcements.c.batch,
)


def archive_recorded_at(connection: Connection) -> datetime | None:
    """When the first run recorded the existing blog (None: no run yet)."""
    statement = select(digest_periods.c.period_end).where(digest_periods.c.key == ARCHIVE_KEY)
    return connection.execute(statement).scalar_one_or_none()


def record_archive(connection: Connection, now: datetime) -> None:
    values = {"key": ARCHIVE_KEY, "frequency": ARCHIVE_KEY, "period_start": now, "period_end": now, "created_at": now, "completed_at": now}
    connection.execute(insert_ignoring_conflicts(connection, digest_periods, ["key"]).values(**values))


def identities(connection: Connection, post_ids: Collection[str] | None = None) -> dict[str, tuple[str, datetime]]:
    """Every announced post id (or those of `post_ids` that are) -> (title, published_at): what a renamed file is
    recognised by."""
    statement = select(announcements.c.post_id, announcements.c.title, announcements.c.published_at)
    if post_ids is not None:
        statement = statement.where(announcements.c.post_id.in_(post_ids))
    return {post_id: (title, published_at) for post_id, title, published_at in connection.execute(statement)}


def amend(connection: Connection, announced_id: str, **values: Any) -> None:
    """Change an announcement's post id, slug, url, title or date (the post it records was renamed or edited)."""
    connection.execute(update(announcements).where(announcements.c.post_id == announced_id).values(**values))


def insert_new(connection: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert the rows whose post_id is not there yet (also against a concurrent insert); the ids inserted."""
    inserted: set[str] = set()
    for start in range(0, len(rows), _CHUNK):
        statement = insert_ignoring_conflicts(connection, announcements, ["post_id"]).returning(announcements.c.post_id)
        inserted.update(connection.execute(statement, list(rows[start : start + _CHUNK])).scalars())
    return inserted


def release_archive(connection: Connection, batch: str, now: datetime) -> int:
    """Make the posts recorded as not mailable into news of `now`, in one batch. Returns how many."""
    statement = (
        update(announcements)
        .where(announcements.c.mailable == 0)
        .values(mailable=1, batch=batch, announced_at=now, first_seen_at=now)
    )
    return connection.execute(statement).rowcount


def unfinished_batches(connection: Connection) -> list[str]:
    """Mailable batches whose instant period is not completed, oldest first."""
    period_key = literal(f"{INSTANT}:") + announcements.c.batch
    statement = (
        select(announcements.c.batch)
        .select_from(announcements.outerjoin(digest_periods, digest_periods.c.key == period_key))
        .where(announcements.c.mailable == 1, digest_periods.c.completed_at.is_(None))
        .group_by(announcements.c.batch)
        .order_by(func.min(announcements.c.announced_at), announcements.c.batch)
    )
    return list(connection.execute(statement).scalars())


def in_batch(connection: Connection, batch: str) -> list[Announcement]:
    statement = select(*_COLUMNS).where(announcements.c.batch == batch, announcements.c.mailable == 1)
    return [Announcement(*row) for row in connection.execute(statement)]


def in_window(connection: Connection, start: datetime, end: datetime | None) -> list[Announcement]:
    """Mailable announcements made in [start, end) (end None: up to now)."""
    statement = select(*_COLUMNS).where(announcements.c.mailable == 1, announcements.c.announced_at >= start)
    if end is not None:
        statement = statement.where(announcements.c.announced_at < end)
    return [Announcement(*row) for row in connection.execute(statement)]


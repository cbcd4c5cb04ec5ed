"""Fixed-window counters in the `rate_limits` table, so every process serving the same store agrees.

One statement per hit (INSERT … ON CONFLICT DO UPDATE … RETURNING): the count is read and raised
atomically, with no lost updates between processes and no read-then-write race.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, case, delete, literal

from feedsvc.store.dialects import upsert
from feedsvc.store.schema import rate_limits


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    count: int  # hits in the current window, this one included
    retry_after: float  # seconds until the window resets


def hit(connection: Connection, key: str, *, limit: int, window: timedelta, now: datetime) -> Decision:
    """Count one hit on `key`; allowed while the window holds at most `limit` hits."""
    table = rate_limits
    now_value = literal(now, type_=table.c.window_start.type)
    expired = table.c.window_start <= now - window
    statement = (
        upsert(connection, table)
        .values(key=key, window_start=now, count=1)
        .on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": case((expired, 1), else_=table.c.count + 1),
                "window_start": case((expired, now_value), else_=table.c.window_start),
            },
        )
        .returning(table.c.count, table.c.window_start)
    )
    count, window_start = connection.execute(statement).one()
    retry_after = max((window_start + window - now).total_seconds(), 0.0)
    return Decision(allowed=count <= limit, count=count, retry_after=retry_after)


def prune(connection: Connection, *, older_than: datetime) -> int:
    """Forget windows that started before `older_than` (they count as fresh anyway)."""
    return connection.execute(delete(rate_limits).where(rate_limits.c.window_start < older_than)).rowcount

"""Claims on a queue table under a lease: what the mail queue (`deliveries`) and the fediverse queue
(`fediverse_deliveries`) share.

A queue table has `state`, `next_attempt_at`, `claimed_by` and `lease_until`. A row is *claimed* (claimed_by +
lease_until set, state unchanged) in batches, turns `sending` just before its own send, and leaves `sending`
right after. A claim whose lease ran out is free again: a queued/retry row that never turned `sending` was never
sent, and a row left `sending` was in flight when its process died, so it is sent again (the only repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Table, and_, or_, select, update

WAITING = ("queued", "retry")


def waiting_due(table: Table, now: datetime) -> ColumnElement[bool]:
    c = table.c
    return and_(
        c.state.in_(WAITING), c.next_attempt_at <= now, or_(c.lease_until.is_(None), c.lease_until < now)
    )


def abandoned_in_flight(table: Table, now: datetime) -> ColumnElement[bool]:
    c = table.c
    return and_(c.state == "sending", or_(c.lease_until.is_(None), c.lease_until < now))


def claim_rows(
    connection: Connection,
    table: Table,
    worker_id: str,
    *,
    now: datetime,
    lease_until: datetime,
    limit: int,
    only: ColumnElement[bool] | None = None,
    returning: Sequence[ColumnElement[Any]] = (),
    joined: ColumnElement[bool] | None = None,
) -> list[Row[Any]]:
    """Lease up to `limit` due rows (those matching `only`, when given) to `worker_id`; each claimed row's
    `returning` columns (its id by default), which may name a table `joined` to it (PostgreSQL only: SQLite's
    RETURNING cannot name another table).

    On PostgreSQL the candidate rows are locked with SKIP LOCKED, so concurrent workers take disjoint sets
    without waiting; SQLite has a single writer, so the UPDATE over a sub-select is atomic by itself. Each of the
    two statements is a whole claim by itself: the rows one leased stay leased if the other fails.
    Rows abandoned in flight go first (they have waited longest), then the due ones.
    """
    claimed: list[Row[Any]] = []
    for condition in (abandoned_in_flight(table, now), waiting_due(table, now)):
        remaining = limit - len(claimed)
        if remaining <= 0:
            break
        # No ORDER BY: the (state, next_attempt_at) index yields due rows in a useful order without a sort.
        candidates = select(table.c.id).where(condition).limit(remaining)
        if only is not None:
            candidates = candidates.where(only)
        if connection.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        statement = update(table).where(table.c.id.in_(candidates.scalar_subquery()))
        if joined is not None:
            statement = statement.where(joined)
        statement = statement.values(claimed_by=worker_id, lease_until=lease_until).returning(*returning or [table.c.id])
        claimed += connection.execute(statement).all()
    return claimed


def renew(connection: Connection, table: Table, worker_id: str, lease_until: datetime) -> None:
    """Extend this worker's leases on the claims it still holds, so a slow batch is never taken over mid-way."""
    c = table.c
    connection.execute(
        update(table)
        .where(c.claimed_by == worker_id, c.state.in_((*WAITING, "sending")))
        .values(lease_until=lease_until)
    )


def release(connection: Connection, table: Table, worker_id: str) -> int:
    """Give back this worker's claims that were never started (on stop, or at the end of a drain)."""
    c = table.c
    statement = update(table).where(c.claimed_by == worker_id, c.state.in_(WAITING)).values(claimed_by=None, lease_until=None)
    return connection.execute(statement).rowcount

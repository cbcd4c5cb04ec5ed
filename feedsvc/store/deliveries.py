"""The delivery queue: claiming due deliveries under a lease, and recording what became of each send.

A delivery is *claimed* (claimed_by + lease_until set, state unchanged) in batches, turns `sending` just
before its own send, and `sent` (or `retry`/`failed`/`bounced`) right after. A claim whose lease ran out
is free again: a queued/retry row that never turned `sending` was never sent, and a row left `sending`
was in flight when its process died, so it is sent again (the only case where a mail may repeat).

Deliveries of kind `digest` carry an edition to an active subscriber; those of kind `confirmation` carry the
double opt-in mail to a pending one, through the same claims, retries and bounces.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Connection,
    Text,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.sql.dml import UpdateBase

from feedsvc.store import claims
from feedsvc.store.claims import WAITING
from feedsvc.store.on_loop import LoopConnection
from feedsvc.store.schema import DELIVERY_STATES, deliveries, editions, subscribers

SUPPRESSED = "subscriber suppressed"
INACTIVE = "subscriber is no longer active"
CONFIRMATION = "confirmation"


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    key: str
    kind: str
    edition_id: int | None  # None for a confirmation
    subscriber_id: int
    email: str
    name: str
    link_key: str


@dataclass(frozen=True, slots=True)
class Held:
    """Deliveries due now that another worker's unexpired lease keeps from this one (a live or a dead process)."""

    count: int
    holders: tuple[str, ...]
    until: datetime | None  # when the last of those leases runs out


@dataclass(frozen=True, slots=True)
class EditionContent:
    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class Sent:
    id: int
    message_id: str


@dataclass(frozen=True, slots=True)
class Retry:
    id: int
    error: str
    next_attempt_at: datetime | None  # None: out of attempts, the delivery has failed


@dataclass(frozen=True, slots=True)
class Bounce:
    id: int
    subscriber_id: int
    error: str


def _waiting_due(now: datetime):
    return claims.waiting_due(deliveries, now)


def _abandoned_in_flight(now: datetime):
    return claims.abandoned_in_flight(deliveries, now)


def count_due(connection: Connection, now: datetime) -> int:
    statement = select(func.count()).select_from(deliveries).where(or_(_waiting_due(now), _abandoned_in_flight(now)))
    return connection.execute(statement).scalar_one()


def claim(
    connection: Connection, worker_id: str, *, now: datetime, lease_until: datetime, limit: int, kind: str | None = None
) -> list[Claimed]:
    """Lease up to `limit` due deliveries to `worker_id` and return them with their subscriber's address.

    On PostgreSQL the candidate rows are locked with SKIP LOCKED, so concurrent workers take disjoint sets
    without waiting; SQLite has a single writer, so the UPDATE over a sub-select is atomic by itself.
    Deliveries abandoned in flight go first (see `claims.claim_rows`). `kind`: only those.
    """
    only = deliveries.c.kind == kind if kind is not None else None
    if connection.dialect.name == "postgresql":
        # The claim returns the subscribers' columns itself (UPDATE ... FROM): no second query per batch.
        leased = claims.claim_rows(
            connection, deliveries, worker_id, now=now, lease_until=lease_until, limit=limit, only=only,
            returning=_CLAIMED_COLUMNS, joined=subscribers.c.id == deliveries.c.subscriber_id,
        )
        return [Claimed(*tuple(row)) for row in sorted(leased, key=lambda row: row[0])]
    leased = claims.claim_rows(connection, deliveries, worker_id, now=now, lease_until=lease_until, limit=limit, only=only)
    claimed = [row.id for row in leased]
    if not claimed:
        return []
    rows = connection.execute(
        select(*_CLAIMED_COLUMNS)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.id.in_(claimed))
        .order_by(deliveries.c.id)
    )
    return [Claimed(*tuple(row)) for row in rows]


# What a claim gives the drain of each delivery, in the order of `Claimed`'s fields.
_CLAIMED_COLUMNS = (
    deliveries.c.id,
    deliveries.c.key,
    deliveries.c.kind,
    deliveries.c.edition_id,
    deliveries.c.subscriber_id,
    subscribers.c.email,
    subscribers.c.name,
    subscribers.c.link_key,
)


def edition_content(connection: Connection, edition_id: int) -> EditionContent:
    row = connection.execute(
        select(editions.c.subject, editions.c.html, editions.c.text).where(editions.c.id == edition_id)
    ).one()
    return EditionContent(*row)


# The statements run for every few messages sent, built once: SQLAlchemy spends far longer constructing and
# keying a statement than SQLite takes to run these.
_c = deliveries.c
_UNFINISHED = or_(*(_c.state == state for state in (*WAITING, "sending")))  # no IN list: rendered each time
_OURS = and_(
    _c.id.in_(bindparam("ids", expanding=True)),
    _c.claimed_by == bindparam("worker"),
    _UNFINISHED,
)
_RELEASED = {"claimed_by": None, "lease_until": None}
# A digest goes to active subscribers only. A confirmation goes to a pending one, or to one the operator has
# activated meanwhile (confirming again changes nothing), never to one who left or bounced.
_LEFT = exists().where(
    subscribers.c.id == _c.subscriber_id,
    subscribers.c.status != "active",
    or_(_c.kind != CONFIRMATION, subscribers.c.status != "pending"),
)
_START = (
    update(deliveries)
    .where(_OURS, ~_LEFT)
    .values(state="sending", attempts=_c.attempts + 1)
    .returning(_c.id, _c.attempts)
)
_SKIP_INACTIVE = update(deliveries).where(_OURS, _LEFT).values(state="failed", last_error=INACTIVE, **_RELEASED).returning(_c.id)
_MINE = and_(_c.id == bindparam("delivery_id"), _c.claimed_by == bindparam("worker"))
# The server accepted the mail: it is sent, even when a store outage let this worker's claim lapse meanwhile
# (so a worker that took the claim over finds it sent instead of sending it again).
_MARK_SENT = (
    update(deliveries)
    .where(_c.id == bindparam("delivery_id"), _UNFINISHED)
    .values(state="sent", sent_at=bindparam("now"), message_id=bindparam("mid"), last_error="", **_RELEASED)
)


@functools.cache
def _driver_form(statement: UpdateBase, dialect: Dialect) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """A statement as SQLite's driver takes it (its SQL, the order of its parameters, the fixed ones' values),
    compiled once. For the statements run every few mails: SQLAlchemy's own execution processes each row's
    parameters in Python and renders an IN list again each time, which costs more than SQLite takes to run them."""
    compiled = statement.compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup or ()), compiled.params


def _execute_on_driver(connection: Connection, statement: UpdateBase, rows: list[dict[str, Any]]) -> CursorResult:
    """Run `statement` (qmark parameters; its one expanding parameter, if any, named "ids") with each row's
    values, given as the driver takes them."""
    sql, order, fixed = _driver_form(statement, connection.dialect)
    if "ids" in order:  # one row: the IN list rendered for its length
        [row] = rows
        sql = sql.replace("__[POSTCOMPILE_ids]", ", ".join("?" * len(row["ids"])))
        values = {**fixed, **row}
        return connection.exec_driver_sql(sql, tuple(_flat(values[name] for name in order)))
    return connection.exec_driver_sql(sql, [tuple({**fixed, **row}[name] for name in order) for row in rows])


def _flat(values: Iterable[Any]) -> Iterator[Any]:
    for value in values:
        if isinstance(value, list):
            yield from value
        else:
            yield value


@functools.cache
def _sent_at_processor(dialect: Dialect) -> Callable[[datetime], Any]:
    """How `sent_at` is stored on this backend (SQLite: a string of the UTC time), as SQLAlchemy writes it."""
    processor = _c.sent_at.type.dialect_impl(dialect).bind_processor(dialect)
    return processor or (lambda value: value)


# The same on PostgreSQL as one statement over two arrays: psycopg runs an executemany row by row (in one
# pipeline, but with a round of its own Python per row), a third of the queue's CPU there.
_SENT_ROWS = (
    func.unnest(bindparam("sent_ids", type_=ARRAY(BigInteger)), bindparam("sent_mids", type_=ARRAY(Text)))
    .table_valued("id", "mid")
    .render_derived()
)
_MARK_SENT_ARRAYS = (
    update(deliveries)
    .where(_c.id == _SENT_ROWS.c.id, _UNFINISHED)
    .values(state="sent", sent_at=bindparam("now"), message_id=_SENT_ROWS.c.mid, last_error="", **_RELEASED)
)
# A wave's write on PostgreSQL as one statement, atomic by itself: the previous waves' `sent` marks (a CTE; the
# rows are not this wave's) and this wave's `sending` mark.
_START_AFTER_SENT = _START.add_cte(_MARK_SENT_ARRAYS.cte("sent"))
_MARK_RETRY = (
    update(deliveries)
    .where(_MINE)
    .values(state=bindparam("new_state"), next_attempt_at=bindparam("next_at"), last_error=bindparam("error"), **_RELEASED)
)


def start_sending(connection: Connection, worker_id: str, ids: Sequence[int]) -> tuple[dict[int, int], set[int]]:
    """Mark these claimed deliveries `sending` (one more attempt) just before they are sent.

    Returns ({id to send now: its attempt number}, ids skipped). Skipped: the subscriber is no longer active (those deliveries
    fail here); deliveries no longer ours (lease taken over, cancelled meanwhile) are in neither set.
    """
    return _start(connection, _START, worker_id, ids, {})


def record_and_start(
    connection: Connection,
    worker_id: str,
    *,
    sent: Sequence[Sent] = (),
    retries: Sequence[Retry] = (),
    bounces: Sequence[Bounce] = (),
    start: Sequence[int] = (),
    now: datetime,
) -> tuple[dict[int, int], set[int]]:
    """`record` these outcomes, then `start_sending` these deliveries: a drain's write for each wave.

    On PostgreSQL the `sent` marks and the next wave's `sending` mark are one statement. With no retry or bounce
    among the outcomes that statement is a whole write by itself, and a drain runs it from the event loop outside
    a transaction instead (`record_and_start_on_loop`): one round trip where a transaction took four (BEGIN, two
    UPDATEs, COMMIT). A bounce's UPDATEs need the transaction around them."""
    if sent and start and connection.dialect.name == "postgresql":
        record(connection, worker_id, retries=retries, bounces=bounces, now=now)
        return _start(connection, _START_AFTER_SENT, worker_id, start, _sent_arrays(sent, now))
    record(connection, worker_id, sent=sent, retries=retries, bounces=bounces, now=now)
    return start_sending(connection, worker_id, start)


async def record_and_start_on_loop(
    connection: LoopConnection, worker_id: str, *, sent: Sequence[Sent], start: Sequence[int], now: datetime
) -> tuple[dict[int, int], set[int]]:
    """`record_and_start` for outcomes that are all `sent`, on PostgreSQL from the event loop (`store.on_loop`),
    where a drain writes its waves: one statement, a second only when some of `start` were left out."""
    params = {"ids": list(start), "worker": worker_id, **_sent_arrays(sent, now)}
    if not start:
        await connection.execute(_MARK_SENT_ARRAYS, params)
        return {}, set()
    sending = dict(await connection.execute(_START_AFTER_SENT if sent else _START, params))
    # As in `_start`: the subscribers who left fail here, the deliveries no longer ours are in neither set.
    if len(sending) == len(start):
        return sending, set()
    return sending, {delivery_id for delivery_id, in await connection.execute(_SKIP_INACTIVE, params)}


def _start(
    connection: Connection, statement: UpdateBase, worker_id: str, ids: Sequence[int], extra: dict[str, Any]
) -> tuple[dict[int, int], set[int]]:
    if not ids:
        return {}, set()
    params = {"ids": list(ids), "worker": worker_id}
    if connection.dialect.name == "sqlite":
        started = _execute_on_driver(connection, statement, [{**params, **extra}])
    else:
        started = connection.execute(statement, {**params, **extra})
    sending = {delivery_id: attempts for delivery_id, attempts in started}
    # Only when some were left out (their subscriber left, or the claim is no longer ours): fail the former.
    skipped_ids = set(connection.execute(_SKIP_INACTIVE, params).scalars()) if len(sending) < len(ids) else set()
    return sending, skipped_ids


def record(
    connection: Connection,
    worker_id: str,
    *,
    sent: Sequence[Sent] = (),
    retries: Sequence[Retry] = (),
    bounces: Sequence[Bounce] = (),
    now: datetime,
) -> None:
    """Record the outcome of finished sends."""
    if sent and connection.dialect.name == "postgresql":
        connection.execute(_MARK_SENT_ARRAYS, _sent_arrays(sent, now))
    elif sent:
        stamp = _sent_at_processor(connection.dialect)(now)
        _execute_on_driver(
            connection, _MARK_SENT, [{"delivery_id": item.id, "now": stamp, "mid": item.message_id} for item in sent]
        )
    if retries:
        connection.execute(
            _MARK_RETRY,
            [
                {
                    "delivery_id": item.id,
                    "worker": worker_id,
                    "new_state": "retry" if item.next_attempt_at else "failed",
                    "next_at": item.next_attempt_at or now,
                    "error": item.error,
                }
                for item in retries
            ],
        )
    for bounce in bounces:
        _suppress(connection, worker_id, bounce)


def _sent_arrays(sent: Sequence[Sent], now: datetime) -> dict[str, Any]:
    return {"sent_ids": [item.id for item in sent], "sent_mids": [item.message_id for item in sent], "now": now}


def _suppress(connection: Connection, worker_id: str, bounce: Bounce) -> None:
    """A permanent failure: the delivery bounced, its subscriber gets no further mail, with the reason kept."""
    c = deliveries.c
    connection.execute(
        update(deliveries)
        .where(c.id == bounce.id, c.claimed_by == worker_id)
        .values(state="bounced", last_error=bounce.error, claimed_by=None, lease_until=None)
    )
    connection.execute(
        update(subscribers)
        .where(subscribers.c.id == bounce.subscriber_id, subscribers.c.status == "active")
        .values(status="bounced", status_reason=bounce.error)
    )
    connection.execute(
        update(deliveries)
        .where(c.subscriber_id == bounce.subscriber_id, c.state.in_(WAITING))
        .values(state="failed", last_error=SUPPRESSED, claimed_by=None, lease_until=None)
    )


def renew(connection: Connection, worker_id: str, lease_until: datetime) -> None:
    """Extend this worker's leases on the claims it still holds, so a slow batch is never taken over mid-way."""
    claims.renew(connection, deliveries, worker_id, lease_until)


def release(connection: Connection, worker_id: str) -> int:
    """Give back this worker's claims that were never started (on stop, or at the end of a drain)."""
    return claims.release(connection, deliveries, worker_id)


def held_by_others(connection: Connection, worker_id: str, now: datetime) -> Held:
    """Deliveries due now (or in flight) under another worker's lease that has not run out."""
    c = deliveries.c
    condition = and_(
        c.state.in_((*WAITING, "sending")),
        c.next_attempt_at <= now,
        c.claimed_by.is_not(None),
        c.claimed_by != worker_id,
        c.lease_until >= now,
    )
    rows = connection.execute(
        select(c.claimed_by, func.count(), func.max(c.lease_until)).where(condition).group_by(c.claimed_by)
    ).all()
    return Held(
        count=sum(number for _, number, _ in rows),
        holders=tuple(sorted(holder for holder, _, _ in rows)),
        until=max((until for _, _, until in rows), default=None),
    )


def queue_confirmation(connection: Connection, subscriber_id: int, now: datetime) -> None:
    """Queue a double opt-in mail for this pending subscriber, due now: one per request, as the person asked
    (the subscribe form's per-address rate limit bounds how many)."""
    connection.execute(
        insert(deliveries).values(
            key=f"{CONFIRMATION}:{subscriber_id}:{secrets.token_hex(8)}", kind=CONFIRMATION, subscriber_id=subscriber_id,
            state="queued", attempts=0, next_attempt_at=now, last_error="", created_at=now,
        )
    )


def count_by_state(connection: Connection) -> dict[str, int]:
    """Deliveries in each state, every state present (0 when none)."""
    counts = dict.fromkeys(DELIVERY_STATES, 0)
    statement = select(deliveries.c.state, func.count()).group_by(deliveries.c.state)
    counts.update({state: number for state, number in connection.execute(statement)})
    return counts


def requeue_failed(connection: Connection, now: datetime) -> int:
    """Give deliveries that ran out of attempts (a relay down for long) a new set of attempts, due now.

    Deliveries cancelled because their subscriber was suppressed or left stay failed: they are not owed."""
    c = deliveries.c
    statement = (
        update(deliveries)
        .where(c.state == "failed", c.last_error.not_in((SUPPRESSED, INACTIVE)))
        .values(state="queued", attempts=0, next_attempt_at=now, last_error="", claimed_by=None, lease_until=None)
    )
    return connection.execute(statement).rowcount

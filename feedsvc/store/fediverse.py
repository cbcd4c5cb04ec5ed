"""The fediverse's rows: followers, blocks, the objects published, and the queue of signed POSTs.

Deliveries follow the same claim/lease rules as the mail queue (`feedsvc.store.claims`): claimed in batches,
`sending` just before their own POST, `sent`/`retry`/`failed` right after; a row left `sending` by a killed
process is sent again once its lease runs out (the only repeat).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, literal, or_, select, update

from feedsvc.store import claims
from feedsvc.store.claims import WAITING
from feedsvc.store.dialects import insert_ignoring_conflicts, upsert
from feedsvc.store.schema import (
    DELIVERY_STATES,
    fediverse_activities,
    fediverse_blocks,
    fediverse_deliveries,
    fediverse_followers,
    fediverse_objects,
    fediverse_state,
)

GONE = "gone (410): follower removed"


# --- followers and blocks --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Follower:
    actor: str
    inbox: str
    delivery_inbox: str
    host: str
    created_at: datetime


def add_follower(
    connection: Connection, *, actor: str, inbox: str, delivery_inbox: str, host: str, follow_id: str, now: datetime
) -> None:
    """Store a follower, or refresh its inboxes when it follows again."""
    values = {"inbox": inbox, "delivery_inbox": delivery_inbox, "host": host, "follow_id": follow_id}
    statement = upsert(connection, fediverse_followers).values(actor=actor, created_at=now, **values)
    connection.execute(statement.on_conflict_do_update(index_elements=[fediverse_followers.c.actor], set_=values))


def remove_follower(connection: Connection, actor: str) -> bool:
    return connection.execute(delete(fediverse_followers).where(fediverse_followers.c.actor == actor)).rowcount > 0


def followers(connection: Connection) -> list[Follower]:
    c = fediverse_followers.c
    statement = select(c.actor, c.inbox, c.delivery_inbox, c.host, c.created_at).order_by(c.created_at, c.id)
    return [Follower(*row) for row in connection.execute(statement)]


def follower_count(connection: Connection) -> int:
    return connection.execute(select(func.count()).select_from(fediverse_followers)).scalar_one()


def block(connection: Connection, pattern: str, now: datetime) -> int:
    """Block an actor URL or a host name; the followers it covers are removed. Returns how many."""
    connection.execute(insert_ignoring_conflicts(connection, fediverse_blocks, ["pattern"]).values(pattern=pattern, created_at=now))
    c = fediverse_followers.c
    return connection.execute(delete(fediverse_followers).where(or_(c.actor == pattern, c.host == pattern))).rowcount


def is_blocked(connection: Connection, actor: str, host: str) -> bool:
    statement = select(fediverse_blocks.c.pattern).where(fediverse_blocks.c.pattern.in_((actor, host))).limit(1)
    return connection.execute(statement).first() is not None


# --- published objects -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Published:
    post_id: str
    digest: str
    object: dict[str, Any]
    published_at: datetime
    deleted_at: datetime | None


_OBJECT_COLUMNS = (
    fediverse_objects.c.post_id,
    fediverse_objects.c.digest,
    fediverse_objects.c.object,
    fediverse_objects.c.published_at,
    fediverse_objects.c.deleted_at,
)


def state(connection: Connection, key: str) -> str | None:
    return connection.execute(select(fediverse_state.c.value).where(fediverse_state.c.key == key)).scalar_one_or_none()


def set_state(connection: Connection, key: str, value: str) -> None:
    statement = upsert(connection, fediverse_state).values(key=key, value=value)
    connection.execute(statement.on_conflict_do_update(index_elements=[fediverse_state.c.key], set_={"value": value}))


@dataclass(frozen=True, slots=True)
class Known:
    digest: str
    source_version: str
    deleted: bool


def known_objects(connection: Connection) -> dict[str, Known]:
    """post id -> what was last published of it, for every object ever published."""
    c = fediverse_objects.c
    rows = connection.execute(select(c.post_id, c.digest, c.source_version, c.deleted_at))
    return {row.post_id: Known(row.digest, row.source_version, row.deleted_at is not None) for row in rows}


def published(connection: Connection, post_id: str) -> Published | None:
    row = connection.execute(select(*_OBJECT_COLUMNS).where(fediverse_objects.c.post_id == post_id)).first()
    return Published(*row) if row else None


def save_object(
    connection: Connection, *, post_id: str, digest: str, source_version: str, obj: dict[str, Any], published_at: datetime,
    updated_at: datetime | None,
) -> None:
    values = {"digest": digest, "source_version": source_version, "object": obj, "published_at": published_at, "updated_at": updated_at, "deleted_at": None}
    statement = upsert(connection, fediverse_objects).values(post_id=post_id, **values)
    connection.execute(statement.on_conflict_do_update(index_elements=[fediverse_objects.c.post_id], set_=values))


def mark_deleted(connection: Connection, post_id: str, now: datetime) -> None:
    connection.execute(update(fediverse_objects).where(fediverse_objects.c.post_id == post_id).values(deleted_at=now))


def live_objects(connection: Connection, *, offset: int, limit: int) -> tuple[int, list[Published]]:
    """(how many objects are live, a page of them, newest first)."""
    live = fediverse_objects.c.deleted_at.is_(None)
    total = connection.execute(select(func.count()).select_from(fediverse_objects).where(live)).scalar_one()
    statement = (
        select(*_OBJECT_COLUMNS)
        .where(live)
        .order_by(fediverse_objects.c.published_at.desc(), fediverse_objects.c.post_id)
        .offset(offset)
        .limit(limit)
    )
    return total, [Published(*row) for row in connection.execute(statement)]


# --- the delivery queue ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    activity: int  # fediverse_activities.id
    inbox: str


@dataclass(frozen=True, slots=True)
class Retry:
    id: int
    error: str
    next_attempt_at: datetime | None  # None: out of attempts (or refused for good), the delivery has failed


def queue_activity(
    connection: Connection, activity_id: str, body: str, now: datetime, *, inboxes: Sequence[str] | None = None
) -> int:
    """Store an activity and queue one delivery of it to each inbox: `inboxes`, or else every follower's
    delivery inbox, once per shared inbox (in one INSERT … SELECT: memory stays flat with any number of
    followers). An activity stored before is not queued again. Returns how many deliveries were queued."""
    statement = insert_ignoring_conflicts(connection, fediverse_activities, ["activity_id"]).values(
        activity_id=activity_id, body=body, created_at=now
    )
    pk = connection.execute(statement.returning(fediverse_activities.c.id)).scalar_one_or_none()
    if pk is None:
        return 0
    d = fediverse_deliveries.c
    constants = {"activity_id": literal(pk), "state": literal("queued"), "attempts": literal(0),
                 "next_attempt_at": literal(now, d.next_attempt_at.type), "last_error": literal(""),
                 "created_at": literal(now, d.created_at.type)}
    if inboxes is not None:
        if not inboxes:
            return 0
        rows = [{"activity_id": pk, "inbox": inbox, "state": "queued", "attempts": 0, "next_attempt_at": now,
                 "last_error": "", "created_at": now} for inbox in dict.fromkeys(inboxes)]
        connection.execute(insert(fediverse_deliveries), rows)
        return len(rows)
    targets = select(fediverse_followers.c.delivery_inbox.label("inbox")).distinct().subquery()
    source = select(*(value.label(name) for name, value in constants.items()), targets.c.inbox)
    columns = [*constants, "inbox"]
    return connection.execute(insert(fediverse_deliveries).from_select(columns, source)).rowcount


def claim(connection: Connection, worker_id: str, *, now: datetime, lease_until: datetime, limit: int) -> list[Claimed]:
    leased = claims.claim_rows(connection, fediverse_deliveries, worker_id, now=now, lease_until=lease_until, limit=limit)
    ids = [row.id for row in leased]
    if not ids:
        return []
    d = fediverse_deliveries.c
    rows = connection.execute(select(d.id, d.activity_id, d.inbox).where(d.id.in_(ids)).order_by(d.id))
    return [Claimed(*row) for row in rows]


def activity_body(connection: Connection, activity: int) -> str:
    return connection.execute(select(fediverse_activities.c.body).where(fediverse_activities.c.id == activity)).scalar_one()


_d = fediverse_deliveries.c
_OURS = (_d.id.in_(bindparam("ids", expanding=True)), _d.claimed_by == bindparam("worker"), _d.state.in_((*WAITING, "sending")))
_START = update(fediverse_deliveries).where(*_OURS).values(state="sending", attempts=_d.attempts + 1).returning(_d.id, _d.attempts)
_RELEASED = {"claimed_by": None, "lease_until": None}
# The inbox accepted it: sent, even when a store outage let the claim lapse meanwhile.
_MARK_SENT = (
    update(fediverse_deliveries)
    # OR of equalities, not IN: an expanding IN cannot run as executemany.
    .where(_d.id == bindparam("delivery_id"), or_(*(_d.state == name for name in (*WAITING, "sending"))))
    .values(state="sent", sent_at=bindparam("now"), last_error="", **_RELEASED)
)
_MARK_RETRY = (
    update(fediverse_deliveries)
    .where(_d.id == bindparam("delivery_id"), _d.claimed_by == bindparam("worker"))
    .values(state=bindparam("new_state"), next_attempt_at=bindparam("next_at"), last_error=bindparam("error"), **_RELEASED)
)


def start_sending(connection: Connection, worker_id: str, ids: Sequence[int]) -> dict[int, int]:
    """Mark these claimed deliveries `sending` just before their POST: {id: its attempt number}."""
    if not ids:
        return {}
    return {delivery_id: attempts for delivery_id, attempts in connection.execute(_START, {"ids": list(ids), "worker": worker_id})}


def record(
    connection: Connection,
    worker_id: str,
    *,
    sent: Sequence[int] = (),
    retries: Sequence[Retry] = (),
    gone: Sequence[tuple[int, str]] = (),
    now: datetime,
) -> None:
    """Record finished POSTs. `gone`: (delivery id, inbox) answered 410: the followers there are removed."""
    if sent:
        connection.execute(_MARK_SENT, [{"delivery_id": delivery_id, "now": now} for delivery_id in sent])
    failed = [*retries, *(Retry(delivery_id, GONE, None) for delivery_id, _ in gone)]
    if failed:
        connection.execute(
            _MARK_RETRY,
            [
                {"delivery_id": item.id, "worker": worker_id, "new_state": "retry" if item.next_attempt_at else "failed",
                 "next_at": item.next_attempt_at or now, "error": item.error}
                for item in failed
            ],
        )
    for _, inbox in gone:
        c = fediverse_followers.c
        connection.execute(delete(fediverse_followers).where(or_(c.delivery_inbox == inbox, c.inbox == inbox)))


def renew(connection: Connection, worker_id: str, lease_until: datetime) -> None:
    claims.renew(connection, fediverse_deliveries, worker_id, lease_until)


def release(connection: Connection, worker_id: str) -> int:
    return claims.release(connection, fediverse_deliveries, worker_id)


def count_by_state(connection: Connection) -> dict[str, int]:
    counts = dict.fromkeys(DELIVERY_STATES, 0)
    statement = select(_d.state, func.count()).group_by(_d.state)
    counts.update({row_state: number for row_state, number in connection.execute(statement)})
    return counts

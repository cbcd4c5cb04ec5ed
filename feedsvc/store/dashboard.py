"""The dashboard's read queries: counts for the overview, and lists paged by key (never OFFSET: the tenth page
costs what the first does, at 100,000 subscribers as at 100).

A page is asked for "after" the last row shown, by the sort key and the id, in one index range scan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, Select, Text, and_, cast, func, or_, select, update

from feedsvc.store.deliveries import WAITING
from feedsvc.store.schema import deliveries, editions, mail_events, subscribers
from feedsvc.store.subscribers import Subscriber

# Sort orders of the subscriber list: name -> (column, descending).
SUBSCRIBER_SORTS = {
    "newest": (subscribers.c.id, True),
    "oldest": (subscribers.c.id, False),
    "email": (subscribers.c.email_key, False),
}
CANCELLED = "cancelled by the operator"
# The topic filter's value for subscribers who chose no topic (they get every post); never a tag's name.
EVERY_POST = "*"


# --- overview --------------------------------------------------------------------------------------------------


def counts_by_status_and_frequency(connection: Connection) -> dict[tuple[str, str], int]:
    statement = select(subscribers.c.status, subscribers.c.frequency, func.count()).group_by(
        subscribers.c.status, subscribers.c.frequency
    )
    return {(status, frequency): number for status, frequency, number in connection.execute(statement)}


def _per_day(connection: Connection, column, since: datetime) -> dict[date, int]:
    day = func.date(column)
    statement = select(day, func.count()).where(column >= since).group_by(day)
    return {date.fromisoformat(str(value)[:10]): number for value, number in connection.execute(statement)}


@dataclass(frozen=True, slots=True)
class Growth:
    confirmed_before: int  # confirmed before `since` and not gone by then
    confirmed: dict[date, int]  # per day from `since`
    left: dict[date, int]  # unsubscribed, bounced or complained, per day from `since`


def growth(connection: Connection, since: datetime) -> Growth:
    c = subscribers.c
    before = select(func.count()).where(
        c.confirmed_at < since, or_(c.unsubscribed_at.is_(None), c.unsubscribed_at >= since)
    )
    return Growth(
        confirmed_before=connection.execute(before).scalar_one(),
        confirmed=_per_day(connection, c.confirmed_at, since),
        left=_per_day(connection, c.unsubscribed_at, since),
    )


# --- editions --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EditionSummary:
    id: int
    frequency: str
    subject: str
    post_ids: tuple[str, ...]
    created_at: datetime


_EDITION_COLUMNS = (editions.c.id, editions.c.frequency, editions.c.subject, editions.c.post_ids, editions.c.created_at)


def _edition(row) -> EditionSummary:
    return EditionSummary(row.id, row.frequency, row.subject, tuple(row.post_ids or ()), row.created_at)


def editions_page(connection: Connection, *, before_id: int | None, limit: int) -> list[EditionSummary]:
    """Newest first."""
    statement = select(*_EDITION_COLUMNS).order_by(editions.c.id.desc()).limit(limit)
    if before_id is not None:
        statement = statement.where(editions.c.id < before_id)
    return [_edition(row) for row in connection.execute(statement)]


def edition(connection: Connection, edition_id: int) -> EditionSummary | None:
    row = connection.execute(select(*_EDITION_COLUMNS).where(editions.c.id == edition_id)).first()
    return _edition(row) if row else None


def edition_html(connection: Connection, edition_id: int) -> str | None:
    return connection.execute(select(editions.c.html).where(editions.c.id == edition_id)).scalar_one_or_none()


def sent_since(connection: Connection, edition_id: int, since: datetime) -> int:
    """Deliveries of the edition sent after `since` (the current sending rate)."""
    c = deliveries.c
    return connection.execute(
        select(func.count()).where(c.edition_id == edition_id, c.state == "sent", c.sent_at >= since)
    ).scalar_one()


@dataclass(frozen=True, slots=True)
class DeliveryLine:
    id: int
    subscriber_id: int
    email: str
    state: str
    attempts: int
    last_error: str
    sent_at: datetime | None


def edition_deliveries(
    connection: Connection, edition_id: int, *, states: Sequence[str] = (), after_subscriber: int | None, limit: int
) -> list[DeliveryLine]:
    """The edition's deliveries (of these states, if given) by subscriber id, after `after_subscriber`.

    In the order of the (edition_id, subscriber_id) unique index: ordered by delivery id, PostgreSQL walks the
    primary key from the oldest delivery and reaches the newest edition's last (0.5 s at a million rows)."""
    c = deliveries.c
    statement = (
        select(c.id, c.subscriber_id, subscribers.c.email, c.state, c.attempts, c.last_error, c.sent_at)
        .join(subscribers, subscribers.c.id == c.subscriber_id)
        .where(c.edition_id == edition_id)
        .order_by(c.subscriber_id)
        .limit(limit)
    )
    if states:
        statement = statement.where(c.state.in_(list(states)))
    if after_subscriber is not None:
        statement = statement.where(c.subscriber_id > after_subscriber)
    return [DeliveryLine(*row) for row in connection.execute(statement)]


def retry_failed(connection: Connection, edition_id: int, now: datetime) -> int:
    """The edition's failed deliveries queued again with fresh attempts (not those cancelled on purpose)."""
    c = deliveries.c
    statement = (
        update(deliveries)
        .where(c.edition_id == edition_id, c.state == "failed", c.last_error != CANCELLED)
        .values(state="queued", attempts=0, next_attempt_at=now, last_error="", claimed_by=None, lease_until=None)
    )
    return connection.execute(statement).rowcount


def cancel_waiting(connection: Connection, edition_id: int) -> int:
    """The edition's deliveries not yet claimed for sending become failed, marked as cancelled."""
    c = deliveries.c
    statement = (
        update(deliveries)
        .where(c.edition_id == edition_id, c.state.in_(WAITING), c.claimed_by.is_(None))
        .values(state="failed", last_error=CANCELLED)
    )
    return connection.execute(statement).rowcount


# --- subscribers -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriberFilter:
    query: str = ""  # a fragment of the address
    status: str = ""
    frequency: str = ""
    since: datetime | None = None  # subscribed at or after
    until: datetime | None = None  # subscribed before
    topic: str = ""  # a tag the subscriber chose, or EVERY_POST
    sort: str = "newest"


@dataclass(frozen=True, slots=True)
class After:
    """The last row of the page shown: the next page starts past it."""

    id: int
    email_key: str = ""


def _like_fragment(query: str) -> str:
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _with_topic(topic: str):
    """The condition on the subscriber's tags, a JSON list, read as its text on both backends: a tag is a word
    with dashes, so its quoted JSON form occurs in the text exactly when the list holds it."""
    tags = cast(subscribers.c.tags, Text)
    if topic == EVERY_POST:
        return tags == "[]"
    forms = dict.fromkeys([json.dumps(topic), json.dumps(topic, ensure_ascii=False)])  # however it was written
    return or_(*(tags.like(_like_fragment(form), escape="\\") for form in forms))


def _filtered(statement: Select, chosen: SubscriberFilter) -> Select:
    c = subscribers.c
    if chosen.topic:
        statement = statement.where(_with_topic(chosen.topic))
    if chosen.query:
        statement = statement.where(c.email_key.like(_like_fragment(chosen.query), escape="\\"))
    if chosen.status:
        statement = statement.where(c.status == chosen.status)
    if chosen.frequency:
        statement = statement.where(c.frequency == chosen.frequency)
    if chosen.since:
        statement = statement.where(c.created_at >= chosen.since)
    if chosen.until:
        statement = statement.where(c.created_at < chosen.until)
    return statement


def subscribers_page(
    connection: Connection, chosen: SubscriberFilter, *, after: After | None, limit: int
) -> list[Subscriber]:
    column, descending = SUBSCRIBER_SORTS[chosen.sort]
    c = subscribers.c
    statement = _filtered(select(subscribers), chosen)
    if after is not None:
        if column is c.id:
            statement = statement.where(c.id < after.id if descending else c.id > after.id)
        else:
            statement = statement.where(
                or_(column > after.email_key, and_(column == after.email_key, c.id > after.id))
            )
    order = [column.desc() if descending else column.asc()]
    if column is not c.id:
        order.append(c.id.asc())
    statement = statement.order_by(*order).limit(limit)
    return [Subscriber.from_row(row) for row in connection.execute(statement)]


def every_matching(connection: Connection, chosen: SubscriberFilter, batch: int = 1000) -> Iterator[Subscriber]:
    """Every subscriber the filter matches, in its order, read a page at a time (an export of a large list)."""
    after = None
    while rows := subscribers_page(connection, chosen, after=after, limit=batch):
        yield from rows
        after = After(rows[-1].id, rows[-1].email_key)


@dataclass(frozen=True, slots=True)
class MailSent:
    delivery_id: int
    kind: str
    edition_id: int | None
    subject: str
    state: str
    attempts: int
    server_answer: str  # the last error, or the Message-ID the relay accepted
    created_at: datetime
    sent_at: datetime | None


def mails_to(connection: Connection, subscriber_id: int, *, limit: int) -> list[MailSent]:
    """Newest first: every mail queued for the subscriber, with its edition's subject."""
    c = deliveries.c
    statement = (
        select(
            c.id, c.kind, c.edition_id, func.coalesce(editions.c.subject, ""), c.state, c.attempts,
            func.coalesce(func.nullif(c.last_error, ""), c.message_id, ""), c.created_at, c.sent_at,
        )
        .outerjoin(editions, editions.c.id == c.edition_id)
        .where(c.subscriber_id == subscriber_id)
        .order_by(c.id.desc())
        .limit(limit)
    )
    return [MailSent(*row) for row in connection.execute(statement)]


@dataclass(frozen=True, slots=True)
class SubscriberEvent:
    kind: str
    source: str
    detail: str
    edition_id: int | None
    created_at: datetime


def events_of(connection: Connection, subscriber_id: int, *, limit: int) -> list[SubscriberEvent]:
    m = mail_events.c
    statement = (
        select(m.kind, m.source, m.detail, m.edition_id, m.created_at)
        .where(m.subscriber_id == subscriber_id)
        .order_by(m.id.desc())
        .limit(limit)
    )
    return [SubscriberEvent(*row) for row in connection.execute(statement)]

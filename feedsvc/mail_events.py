"""What a bounce, a complaint or a mailto unsubscribe does to a subscriber. Used by every inbound path
(IMAP, Maildir, the SMTP receiver) and every provider webhook alike.

The rules, in one place:
- a hard bounce suppresses the address at once (status `bounced`); the person may come back through the
  double opt-in form, since the address may work again;
- soft bounces suppress it once `inbound.soft_bounce_limit` of them arrived within `soft_bounce_window_days`;
- a complaint suppresses it at once (status `complained`), and only the operator lifts that (`clear`);
- a mailto unsubscribe unsubscribes, as the link does;
- every report is kept (kind, source, reason, time, the mail it is about), once: a report read again after a
  crash (its effect stored, the message not yet marked processed) is recognised by its key and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, Engine

from feedsvc.config import Settings
from feedsvc.metrics import MAIL_EVENTS
from feedsvc.store import mail_events as store
from feedsvc.store import subscribers as subscriber_store
from feedsvc.store.mail_events import MailEvent
from feedsvc.subscriptions import InvalidInput, normalise_address

__all__ = ["Kind", "MailEvent", "Outcome", "Report", "apply", "clear", "recent"]

log = logging.getLogger(__name__)


class Kind(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True, slots=True)
class Report:
    """One event as a mail system reported it, naming the subscriber by delivery, by id or by address."""

    kind: Kind
    source: str  # imap, maildir, smtp, ses, postmark, mailgun, sendgrid
    event_key: str  # unique per report: a hash of the message, or the provider's event id
    detail: str = ""
    delivery_id: int | None = None
    subscriber_id: int | None = None
    address: str | None = None


class Outcome(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"  # this report was recorded before
    UNKNOWN = "unknown"  # names no subscriber of this list


_EFFECTS = {
    Kind.HARD_BOUNCE: ("bounced", ("pending", "active")),
    Kind.SOFT_BOUNCE: ("bounced", ("pending", "active")),
    # A complaint outranks every other state: even an unsubscribed address must not come back silently.
    Kind.COMPLAINT: ("complained", ("pending", "active", "unsubscribed", "bounced")),
    Kind.UNSUBSCRIBE: ("unsubscribed", ("pending", "active")),
}


def apply(settings: Settings, engine: Engine, report: Report, now: datetime) -> Outcome:
    """Record the report and suppress or unsubscribe as the rules say, in one transaction."""
    with engine.begin() as connection:
        outcome = _apply(settings, connection, report, now)
    if outcome is Outcome.RECORDED:
        MAIL_EVENTS.labels(report.kind.value, report.source).inc()
    log.info(
        "mail event %s from %s: %s (%s)", report.kind.value, report.source, outcome.value, report.detail[:200] or "no detail"
    )
    return outcome


def _apply(settings: Settings, connection: Connection, report: Report, now: datetime) -> Outcome:
    subscriber_id, edition_id = _subscriber_of(connection, report)
    if subscriber_id is None:
        return Outcome.UNKNOWN
    subscriber = subscriber_store.get(connection, subscriber_id)
    if subscriber is None:
        return Outcome.UNKNOWN
    recorded = store.insert_if_new(
        connection,
        event_key=report.event_key[:255],
        subscriber_id=subscriber_id,
        kind=report.kind.value,
        source=report.source,
        detail=report.detail[:2000],
        delivery_id=report.delivery_id,
        edition_id=edition_id,
        created_at=now,
    )
    if not recorded:
        return Outcome.DUPLICATE
    status, applies_to = _EFFECTS[report.kind]
    if subscriber.status not in applies_to:
        return Outcome.RECORDED
    reason = f"{report.kind.value.replace('_', ' ')} ({report.source}): {report.detail}".strip()
    if report.kind is Kind.SOFT_BOUNCE:
        inbound = settings.inbound
        window = timedelta(days=inbound.soft_bounce_window_days)
        soft = store.count_since(connection, subscriber_id, Kind.SOFT_BOUNCE.value, now - window)
        if soft < inbound.soft_bounce_limit:
            return Outcome.RECORDED
        reason = f"{soft} soft bounces within {inbound.soft_bounce_window_days:g} days, the last ({report.source}): {report.detail}"
    values: dict[str, object] = {"status": status, "status_reason": reason[:2000]}
    if status == "unsubscribed":
        values["unsubscribed_at"] = now
    subscriber_store.change(connection, subscriber_id, **values)
    return Outcome.RECORDED


def _subscriber_of(connection: Connection, report: Report) -> tuple[int | None, int | None]:
    """(subscriber id, edition id) the report is about; a delivery named by VERP is the surest."""
    if report.delivery_id is not None:
        target = store.delivery_target(connection, report.delivery_id)
        if target:
            return target
    if report.subscriber_id is not None:
        return report.subscriber_id, None
    if report.address:
        try:
            key = normalise_address(report.address).key
        except InvalidInput:
            return None, None
        found = subscriber_store.find(connection, key)
        return (found.id if found else None), None
    return None, None


def clear(engine: Engine, raw_address: str, now: datetime, event_key: str) -> str | None:
    """The operator lifts a bounce or complaint: the address becomes `unsubscribed`, from where the person can
    subscribe again through the form. Returns the former status, or None when the address is not on the list."""
    key = normalise_address(raw_address).key
    with engine.begin() as connection:
        subscriber = subscriber_store.find(connection, key)
        if subscriber is None:
            return None
        if subscriber.status in ("bounced", "complained"):
            store.insert_if_new(
                connection, event_key=event_key, subscriber_id=subscriber.id, kind="cleared", source="operator",
                detail=f"was {subscriber.status}: {subscriber.status_reason}"[:2000], created_at=now,
            )
            subscriber_store.change(
                connection, subscriber.id, status="unsubscribed", unsubscribed_at=now, status_reason="cleared by operator"
            )
        return subscriber.status


def recent(engine: Engine, *, kind: str | None = None, limit: int = 100) -> list[MailEvent]:
    with engine.connect() as connection:
        return store.recent(connection, kind=kind, limit=limit)


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return store.counts_by_kind(connection)

"""Who may become what: the double opt-in form, confirmation, unsubscription, and the operator's add and remove."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine

from feedsvc.store import deliveries as delivery_store
from feedsvc.store import subscribers as store
from feedsvc.store.subscribers import Subscriber
from feedsvc.subscriptions.addresses import UNSAFE_CATEGORIES, SubscriptionRequest, normalise_address

SUPPRESSED = frozenset({"unsubscribed", "bounced", "complained"})


@dataclass(frozen=True, slots=True)
class Consent:
    """The consent record GDPR asks a sender to keep: when, from where, through which form."""

    at: datetime
    source: str
    ip: str = ""
    user_agent: str = ""


def consent_values(consent: Consent) -> dict[str, Any]:
    user_agent = "".join(c for c in consent.user_agent if unicodedata.category(c) not in UNSAFE_CATEGORIES)
    return {
        "consent_at": consent.at,
        "consent_ip": consent.ip[:64],
        "consent_user_agent": user_agent[:512],
        "consent_source": consent.source[:64],
    }


def new_row(request: SubscriptionRequest, status: str, created_at: datetime) -> dict[str, Any]:
    return {
        "email": request.address.email,
        "email_key": request.address.key,
        "name": request.name,
        "status": status,
        "frequency": request.frequency,
        "tags": request.tags,
        "created_at": created_at,
        "status_reason": "",
        "consent_ip": "",
        "consent_user_agent": "",
        "consent_source": "",
    }


# --- the double opt-in form ------------------------------------------------------------------------------------


def request_subscription(
    engine: Engine, request: SubscriptionRequest, consent: Consent, *, mail: bool = True
) -> Subscriber | None:
    """Record a request from the double opt-in form.

    Returns the (pending) subscriber a confirmation mail is due to (queued with it unless `mail` is false: the
    address's rate limit is spent), or None when no mail is due: the address is already active (nothing changes:
    a stranger must not alter someone's subscription), or it complained (a suppression only the operator lifts).
    A bounced address may come back through the confirmation: the mailbox may work again, and the confirmation
    mail proves it.
    """
    with engine.begin() as connection:
        row = new_row(request, "pending", consent.at) | consent_values(consent)
        if store.insert_if_absent(connection, **row):
            return queue_confirmation(connection, store.find(connection, request.address.key), consent.at, mail)
        existing = store.find(connection, request.address.key)
        if existing is None or existing.status not in ("pending", "unsubscribed", "bounced"):
            return None
        # Pending: the latest request wins. Unsubscribed or bounced: the person may come back, through this confirmation
        # only; until they confirm they stay out of every mailing (pending), and unsubscribed_at keeps the history.
        store.change(
            connection,
            existing.id,
            status="pending",
            name=request.name,
            frequency=request.frequency,
            tags=request.tags,
            **consent_values(consent),
        )
        return queue_confirmation(connection, store.get(connection, existing.id), consent.at, mail)


def queue_confirmation(connection: Connection, subscriber: Subscriber | None, now: datetime, mail: bool = True) -> Subscriber:
    assert subscriber is not None and subscriber.status == "pending"
    if mail:
        delivery_store.queue_confirmation(connection, subscriber.id, now)
    return subscriber


def confirm(engine: Engine, subscriber_id: int, now: datetime) -> Subscriber | None:
    """Activate a pending subscriber (idempotent for an active one). None: unknown or no longer pending."""
    with engine.begin() as connection:
        subscriber = store.get(connection, subscriber_id)
        if subscriber is None or subscriber.status not in ("pending", "active"):
            return None
        if subscriber.status == "pending":
            store.change(connection, subscriber_id, status="active", confirmed_at=now, status_reason="")
        return store.get(connection, subscriber_id)


def unsubscribe(engine: Engine, subscriber_id: int, now: datetime, reason: str = "unsubscribe link") -> Subscriber | None:
    """Stop every mail to this subscriber at once. None: unknown id. A bounce or complaint stays as it is."""
    with engine.begin() as connection:
        subscriber = store.get(connection, subscriber_id)
        if subscriber is None:
            return None
        if subscriber.status in ("pending", "active"):
            store.change(connection, subscriber_id, status="unsubscribed", unsubscribed_at=now, status_reason=reason)
        return store.get(connection, subscriber_id)


def update_preferences(
    engine: Engine, subscriber_id: int, frequency: str, tags: Iterable[str]
) -> Subscriber | None:
    with engine.begin() as connection:
        if store.get(connection, subscriber_id) is None:
            return None
        store.change(connection, subscriber_id, frequency=frequency, tags=tuple(tags))
        return store.get(connection, subscriber_id)


def get(engine: Engine, subscriber_id: int) -> Subscriber | None:
    with engine.connect() as connection:
        return store.get(connection, subscriber_id)


def find(engine: Engine, raw_address: str) -> Subscriber | None:
    address = normalise_address(raw_address)
    with engine.connect() as connection:
        return store.find(connection, address.key)


# --- the operator: add, remove, import, export -----------------------------------------------------------------


class AddOutcome(StrEnum):
    ADDED = "added"  # new; pending (a confirmation mail is due) or active when the operator holds consent
    ACTIVATED = "activated"  # was pending, the operator holds consent
    EXISTS = "exists"  # already there; nothing changed
    SUPPRESSED = "suppressed"  # unsubscribed, bounced or complained: not resubscribed


@dataclass(frozen=True, slots=True)
class AddResult:
    outcome: AddOutcome
    subscriber: Subscriber

    @property
    def needs_confirmation(self) -> bool:
        return self.outcome is AddOutcome.ADDED and self.subscriber.status == "pending"


def add(engine: Engine, request: SubscriptionRequest, *, confirmed: bool, consent: Consent) -> AddResult:
    """Add an address on the operator's word. `confirmed`: the operator already holds the person's consent."""
    with engine.begin() as connection:
        return add_within(connection, request, confirmed=confirmed, consent=consent)


def added_row(
    request: SubscriptionRequest, *, confirmed: bool, consent: Consent, history: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The row of an address the operator adds. `history`: what another list recorded of it (created_at,
    confirmed_at, status_reason), kept instead of the values of today."""
    row = new_row(request, "active" if confirmed else "pending", consent.at) | consent_values(consent)
    if confirmed:
        row["confirmed_at"] = consent.at
    row.update(history or {})
    return row


def add_within(connection: Connection, request: SubscriptionRequest, *, confirmed: bool, consent: Consent) -> AddResult:
    """`add` inside the caller's transaction."""
    if store.insert_if_absent(connection, **added_row(request, confirmed=confirmed, consent=consent)):
        subscriber = store.find(connection, request.address.key)
        assert subscriber is not None
        if not confirmed:
            queue_confirmation(connection, subscriber, consent.at)
        return AddResult(AddOutcome.ADDED, subscriber)
    existing = store.find(connection, request.address.key)
    assert existing is not None
    return add_existing(connection, existing, confirmed=confirmed, consent=consent)


def add_existing(
    connection: Connection, existing: Subscriber, *, confirmed: bool, consent: Consent, confirmed_at: datetime | None = None
) -> AddResult:
    """The operator adds an address already on the list: a suppression stays, a pending one the operator holds
    consent for becomes active (confirmed at `confirmed_at`, by default the consent's time)."""
    if existing.status in SUPPRESSED:
        return AddResult(AddOutcome.SUPPRESSED, existing)
    if confirmed and existing.status == "pending":
        store.change(connection, existing.id, status="active", confirmed_at=confirmed_at or consent.at,
                     **consent_values(consent))
        activated = store.get(connection, existing.id)
        assert activated is not None
        return AddResult(AddOutcome.ACTIVATED, activated)
    return AddResult(AddOutcome.EXISTS, existing)


def remove(engine: Engine, raw_address: str, now: datetime, *, forget: bool = False) -> Subscriber | None:
    """Unsubscribe an address on the operator's word (kept as a suppression), or with `forget` erase it
    entirely (a GDPR erasure request: the address may then be imported again). None: not on the list."""
    address = normalise_address(raw_address)
    with engine.begin() as connection:
        subscriber = store.find(connection, address.key)
        if subscriber is None:
            return None
        if forget:
            store.remove(connection, subscriber.id)
            return subscriber
        if subscriber.status in ("pending", "active"):
            store.change(
                connection, subscriber.id, status="unsubscribed", unsubscribed_at=now, status_reason="removed by operator"
            )
        return store.get(connection, subscriber.id)


def search(
    engine: Engine, *, status: str | None = None, query: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[int, list[Subscriber]]:
    """(how many match in all, this page of them)."""
    with engine.connect() as connection:
        return (
            store.count(connection, status=status, query=query),
            store.search(connection, status=status, query=query, limit=limit, offset=offset),
        )


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return store.counts_by_status(connection)

"""Subscribers: who may become what, and how. Used alike by the web front, the admin API and the CLI.

The rules, in one place:
- an address is validated and normalised once (IDN domains to punycode), and is unique case-insensitively;
- the double opt-in form gives the same outward answer whatever the address's state; it asks for a
  confirmation mail only for new and pending addresses, and for people who unsubscribed and now ask again;
- nothing is ever mailed to anyone but `active` subscribers (the confirmation mail aside);
- a confirmation mail is queued in the same transaction that makes the address pending, and sent through the
  delivery queue with its retries: "check your inbox" is never answered for a mail that could be lost;
- unsubscribed, bounced and complained addresses stay as suppressions: the operator's add/import never
  resubscribes them, only the person themself can, through the form (after a complaint, only once the operator
  cleared it: `feedsvc.mail_events.clear`).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import IO, Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.mail.message import message_id_for
from feedsvc.mail.queue import drain
from feedsvc.mail.render import welcome_message
from feedsvc.mail.transport import SendError, Transport
from feedsvc.metrics import CONFIRMATION_MAILS
from feedsvc.store import deliveries as delivery_store
from feedsvc.store import subscribers as store
from feedsvc.store.schema import FREQUENCIES, STATUSES
from feedsvc.store.subscribers import Subscriber
from feedsvc.tokens import Tokens, preferences_url, unsubscribe_url

__all__ = [
    "AddOutcome",
    "Consent",
    "ImportReport",
    "InvalidInput",
    "Subscriber",
    "SubscriptionRequest",
    "add",
    "confirm",
    "export_csv",
    "import_csv",
    "normalise_address",
    "request_subscription",
    "subscription_request",
    "unsubscribe",
    "update_preferences",
]

log = logging.getLogger(__name__)

MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit less the angle brackets
MAX_NAME_LENGTH = 200
MAX_TAGS = 50
SUPPRESSED = frozenset({"unsubscribed", "bounced", "complained"})
_TAG = re.compile(r"^[\w][\w-]{0,63}$")
# Control characters, and the Unicode line/paragraph separators some mail software treats as line breaks.
_UNSAFE_CATEGORIES = {"Cc", "Zl", "Zp"}


class InvalidInput(ValueError):
    """A field the user gave cannot be used; the message names the field and says why."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Address:
    email: str  # as stored and mailed: ASCII, the domain in punycode and lower case
    key: str  # the case-insensitive unique key


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    address: Address
    name: str = ""
    frequency: str = "instant"
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Consent:
    """The consent record GDPR asks a sender to keep: when, from where, through which form."""

    at: datetime
    source: str
    ip: str = ""
    user_agent: str = ""


def _has_unsafe_characters(value: str) -> bool:
    return any(unicodedata.category(char) in _UNSAFE_CATEGORIES for char in value)


def _single_line(field_name: str, value: str, max_length: int) -> str:
    """The value, if it holds no line break or control character (no header injection) and is short enough."""
    if _has_unsafe_characters(value):
        raise InvalidInput(field_name, "contains line breaks or control characters")
    if len(value) > max_length:
        raise InvalidInput(field_name, f"is longer than {max_length} characters")
    return value


def normalise_address(raw: object) -> Address:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("email", "an email address is required")
    value = _single_line("email", raw.strip(), MAX_ADDRESS_LENGTH)
    try:
        # Non-ASCII local parts need SMTPUTF8 all the way to the reader's mailbox, which relays do not promise.
        result = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidInput("email", f"is not a valid address: {exc}") from None
    email = result.ascii_email or result.normalized
    if len(email) > MAX_ADDRESS_LENGTH:
        raise InvalidInput("email", f"is longer than {MAX_ADDRESS_LENGTH} characters once the domain is encoded")
    return Address(email=email, key=email.lower())


def clean_name(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidInput("name", "must be text")
    return _single_line("name", raw.strip(), MAX_NAME_LENGTH)


def parse_frequency(raw: object, default: str = "instant") -> str:
    if raw is None or raw == "":
        return default
    if not isinstance(raw, str) or raw.strip().lower() not in FREQUENCIES:
        raise InvalidInput("frequency", f"must be one of {', '.join(FREQUENCIES)}")
    return raw.strip().lower()


def parse_tags(raw: object) -> tuple[str, ...]:
    """Tag slugs from a list, or from one string separated by spaces, commas or semicolons."""
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        items: list[object] = [part for part in re.split(r"[\s,;]+", raw) if part]
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise InvalidInput("tags", "must be a list of tags")
    tags: set[str] = set()
    for item in items:
        if not isinstance(item, str) or not _TAG.match(item.strip().lower()):
            raise InvalidInput("tags", f"{str(item)[:70]!r} is not a tag (letters, digits and dashes, up to 64)")
        tags.add(item.strip().lower())
    if len(tags) > MAX_TAGS:
        raise InvalidInput("tags", f"at most {MAX_TAGS} tags")
    return tuple(sorted(tags))


def subscription_request(
    email: object, name: object = "", frequency: object = "", tags: object = ()
) -> SubscriptionRequest:
    """Validate the fields of a subscription; raise InvalidInput naming the first bad one."""
    return SubscriptionRequest(
        address=normalise_address(email),
        name=clean_name(name),
        frequency=parse_frequency(frequency),
        tags=parse_tags(tags),
    )


def _consent_values(consent: Consent) -> dict[str, Any]:
    user_agent = "".join(c for c in consent.user_agent if unicodedata.category(c) not in _UNSAFE_CATEGORIES)
    return {
        "consent_at": consent.at,
        "consent_ip": consent.ip[:64],
        "consent_user_agent": user_agent[:512],
        "consent_source": consent.source[:64],
    }


def _new_row(request: SubscriptionRequest, status: str, created_at: datetime) -> dict[str, Any]:
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
        row = _new_row(request, "pending", consent.at) | _consent_values(consent)
        if store.insert_if_absent(connection, **row):
            return _queue_confirmation(connection, store.find(connection, request.address.key), consent.at, mail)
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
            **_consent_values(consent),
        )
        return _queue_confirmation(connection, store.get(connection, existing.id), consent.at, mail)


def _queue_confirmation(connection, subscriber: Subscriber | None, now: datetime, mail: bool = True) -> Subscriber:
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
        return _add(connection, request, confirmed=confirmed, consent=consent)


def _add(connection, request: SubscriptionRequest, *, confirmed: bool, consent: Consent) -> AddResult:
    status = "active" if confirmed else "pending"
    row = _new_row(request, status, consent.at) | _consent_values(consent)
    if confirmed:
        row["confirmed_at"] = consent.at
    if store.insert_if_absent(connection, **row):
        subscriber = store.find(connection, request.address.key)
        assert subscriber is not None
        if not confirmed:
            _queue_confirmation(connection, subscriber, consent.at)
        return AddResult(AddOutcome.ADDED, subscriber)
    existing = store.find(connection, request.address.key)
    assert existing is not None
    if existing.status in SUPPRESSED:
        return AddResult(AddOutcome.SUPPRESSED, existing)
    if confirmed and existing.status == "pending":
        store.change(connection, existing.id, status="active", confirmed_at=consent.at, **_consent_values(consent))
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


EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "frequency",
    "tags",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "status_reason",
    "consent_at",
    "consent_ip",
    "consent_user_agent",
    "consent_source",
)


@dataclass
class ImportReport:
    added: list[Subscriber] = field(default_factory=list)
    activated: list[Subscriber] = field(default_factory=list)
    existing: list[Subscriber] = field(default_factory=list)
    suppressed: list[Subscriber] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)

    @property
    def to_confirm(self) -> list[Subscriber]:
        return [subscriber for subscriber in self.added if subscriber.status == "pending"]

    def summary(self) -> dict[str, Any]:
        return {
            "added": len(self.added),
            "activated": len(self.activated),
            "existing": len(self.existing),
            "suppressed": len(self.suppressed),
            "problems": [{"line": line, "reason": reason} for line, reason in self.problems],
        }


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, no email column, not UTF-8)."""


def decode_csv(data: bytes) -> str:
    """The text of an uploaded CSV (UTF-8, with or without a byte order mark)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(f"line {line}: the file is not UTF-8 text (save it as CSV UTF-8)") from None


def import_csv(engine: Engine, data: bytes, *, confirmed: bool, consent: Consent) -> ImportReport:
    """Import a CSV with a header row naming at least `email` (also: name, frequency, tags, status).

    Each bad row is reported with its line number and skipped; the others are imported. A row whose status
    column says unsubscribed/bounced/complained (an export from another list) is kept as a suppression.
    Imported rows record `consent.source` (e.g. operator-import) in their consent record.
    """
    reader = csv.DictReader(io.StringIO(decode_csv(data), newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ImportFileError(f"cannot read the header row: {exc}") from None
    if not header:
        raise ImportFileError("the file is empty: a header row naming an 'email' column is required")
    columns = {str(name).strip().lower(): name for name in header if name is not None}
    if "email" not in columns:
        raise ImportFileError(f"the header row has no 'email' column (found: {', '.join(map(str, header))})")
    report = ImportReport()
    seen: dict[str, int] = {}
    with engine.begin() as connection:
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                report.problems.append((reader.line_num, f"unreadable row: {exc}"))
                continue
            line = reader.line_num
            row = {key: raw.get(original) for key, original in columns.items()}
            if None in raw:
                report.problems.append((line, "more fields than the header row names"))
                continue
            try:
                request = subscription_request(row["email"], row.get("name"), row.get("frequency"), row.get("tags"))
                status = (row.get("status") or "").strip().lower()
                if status and status not in STATUSES:
                    raise InvalidInput("status", f"must be one of {', '.join(STATUSES)}")
            except InvalidInput as exc:
                report.problems.append((line, str(exc)))
                continue
            if request.address.key in seen:
                report.problems.append((line, f"email: {request.address.email} is already on line {seen[request.address.key]}"))
                continue
            seen[request.address.key] = line
            if status in SUPPRESSED:
                _import_suppression(connection, request, status, consent, report)
                continue
            result = _add(connection, request, confirmed=confirmed, consent=consent)
            {
                AddOutcome.ADDED: report.added,
                AddOutcome.ACTIVATED: report.activated,
                AddOutcome.EXISTS: report.existing,
                AddOutcome.SUPPRESSED: report.suppressed,
            }[result.outcome].append(result.subscriber)
    return report


def _import_suppression(connection, request: SubscriptionRequest, status: str, consent: Consent, report: ImportReport) -> None:
    row = _new_row(request, status, consent.at) | {"status_reason": "imported as " + status}
    if status == "unsubscribed":
        row["unsubscribed_at"] = consent.at
    if store.insert_if_absent(connection, **row):
        report.suppressed.append(store.find(connection, request.address.key))  # type: ignore[arg-type]
        return
    existing = store.find(connection, request.address.key)
    assert existing is not None
    if existing.status in ("pending", "active"):
        # The other list says this person left: honour it here too.
        store.change(connection, existing.id, status=status, unsubscribed_at=row.get("unsubscribed_at"),
                     status_reason=row["status_reason"])
        existing = store.get(connection, existing.id)
    report.suppressed.append(existing)  # type: ignore[arg-type]


def export_row(subscriber: Subscriber) -> dict[str, str]:
    values: Mapping[str, Any] = {name: getattr(subscriber, name) for name in EXPORT_COLUMNS}
    return {
        name: (" ".join(value) if isinstance(value, tuple) else value.isoformat() if isinstance(value, datetime) else str(value or ""))
        for name, value in values.items()
    }


def _spreadsheet_safe(value: str) -> str:
    # A cell starting like a formula runs as one when the file is opened in a spreadsheet (CSV injection).
    return "'" + value if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


def export_csv(engine: Engine, out: IO[str]) -> int:
    """Write every subscriber (suppressions included: they must follow the list) as CSV; return the count."""
    with engine.connect() as connection:
        return write_csv(store.every(connection), out)


def write_csv(rows: Iterable[Subscriber], out: IO[str]) -> int:
    """Write these subscribers as CSV (the columns `import_csv` reads); return the count."""
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    written = 0
    for subscriber in rows:
        writer.writerow({name: _spreadsheet_safe(value) for name, value in export_row(subscriber).items()})
        written += 1
    return written


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


async def send_confirmations(settings: Settings, engine: Engine, transport: Transport) -> int:
    """Send the queued confirmation mails now (they were queued with their pending subscribers); how many went.

    One that fails stays queued with its retries, which every sender (`run`, `worker`, `digest send`) makes.
    """
    report = await drain(settings, engine, transport, worker_id=f"confirm-{uuid.uuid4().hex[:12]}", kind="confirmation")
    CONFIRMATION_MAILS.labels("sent").inc(report.sent)
    CONFIRMATION_MAILS.labels("failed").inc(report.done - report.sent)
    return report.sent


async def send_welcome(settings: Settings, tokens: Tokens, transport: Transport, subscriber: Subscriber) -> bool:
    """The welcome mail after a confirmation (`mail.welcome`); a failure is logged, never raised."""
    try:
        outgoing = welcome_message(
            settings,
            to_email=subscriber.email,
            to_name=subscriber.name,
            unsubscribe_url=unsubscribe_url(settings, tokens, subscriber.id, subscriber.link_key),
            preferences_url=preferences_url(settings, tokens, subscriber.id, subscriber.link_key),
            message_id=message_id_for(settings, f"welcome:{subscriber.id}:{subscriber.confirmed_at}"),
        )
        await transport.send(outgoing)
    except (SendError, OSError) as exc:
        log.warning("welcome mail to subscriber %d not sent: %s", subscriber.id, exc)
        return False
    return True

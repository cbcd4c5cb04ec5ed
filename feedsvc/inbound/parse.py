"""Reading one inbound message: a bounce (hard or soft), a complaint, a mailto unsubscribe, or something else.

- Complaints are ARF reports (RFC 5965, multipart/report; report-type=feedback-report) as the feedback loops of
  Yahoo, Outlook (JMRP), Comcast and the like send them.
- Bounces are DSNs (RFC 3464) and the many non-standard formats MTAs still send (Exim, qmail, Yahoo,
  Exchange …), recognised by `flufl.bounce`. A DSN whose status is 4.x.x (or 5.2.2, mailbox full) is soft.
- A message to a signed unsubscribe+<token> address is an unsubscribe request, whatever it says (RFC 8058).

Who a report is about comes from the signed address it reached (VERP: bounces+<delivery token>, or
unsubscribe+<subscriber token>), or for complaints from the original mail's envelope sender or signed mailto
inside the report. With `mail.bounce_address` set every mail of ours carries such a signature, so an unsigned
report is refused: anyone can send a DSN naming someone else. Without it (nothing is signed), the addresses the
report names are used.
"""

from __future__ import annotations

import email
import email.message
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.parser import HeaderParser
from email.utils import getaddresses

from flufl.bounce import all_failures

from feedsvc.config import Settings
from feedsvc.mail_events import Kind, Report
from feedsvc.tokens import Purpose, Tokens, read_tagged_address

log = logging.getLogger(__name__)

# Headers an MTA or the sender leaves that name the address a message was delivered to.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")
_MAILTO = re.compile(r"<mailto:([^?>]+)", re.IGNORECASE)
_SOFT_STATUS = re.compile(r"^(4\.\d{1,3}\.\d{1,3}|5\.2\.2)\b")


@dataclass(frozen=True)
class Reading:
    """What one message amounts to: the reports to apply, and a note for the log when there are none."""

    reports: list[Report] = field(default_factory=list)
    note: str = ""


def message_key(raw: bytes) -> str:
    """The event key of a message: the same bytes read again (after a crash, or from two sources) are one report."""
    return "msg:" + hashlib.sha256(raw).hexdigest()


def read_message(
    settings: Settings, tokens: Tokens, raw: bytes, source: str, envelope_recipients: Sequence[str] = ()
) -> Reading:
    message = email.message_from_bytes(raw)
    key = message_key(raw)
    signed_only = bool(settings.mail.bounce_address)
    recipients = [*envelope_recipients, *_header_addresses(message, _RECIPIENT_HEADERS)]
    tags = _tags(tokens, recipients)

    if _is_report(message, "feedback-report"):
        return _complaint(message, tokens, key, source, signed_only)
    if Purpose.MAILTO_UNSUBSCRIBE in tags:
        subject = str(message.get("Subject", "")).strip()
        detail = f"mail to the unsubscribe address (subject {subject[:100]!r})"
        report = Report(Kind.UNSUBSCRIBE, source, key, detail, subscriber_id=tags[Purpose.MAILTO_UNSUBSCRIBE])
        return Reading([report])
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # a detector choking on odd input must not block the mailbox
        return Reading(note=f"unreadable as a bounce ({type(exc).__name__}: {exc})")
    if not (temporary or permanent):
        return Reading(note="not a bounce, complaint or unsubscribe")
    kind = Kind.HARD_BOUNCE if permanent and not _only_soft_statuses(message) else Kind.SOFT_BOUNCE
    detail = _bounce_detail(message) or f"{'permanent' if kind is Kind.HARD_BOUNCE else 'temporary'} failure"
    if Purpose.BOUNCE in tags:
        return Reading([Report(kind, source, key, detail, delivery_id=tags[Purpose.BOUNCE])])
    if signed_only:
        return Reading(note="bounce to an unsigned address refused (not one of our VERP addresses)")
    failed = sorted({address.decode("ascii", "replace") for address in (permanent or temporary)})
    return Reading([Report(kind, source, f"{key}:{address}", detail, address=address) for address in failed])


def _header_addresses(message: email.message.Message, names: Iterable[str]) -> list[str]:
    values = [str(value) for name in names for value in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if "@" in address]


def _tags(tokens: Tokens, addresses: Iterable[str]) -> dict[Purpose, int]:
    found: dict[Purpose, int] = {}
    for address in addresses:
        tagged = read_tagged_address(tokens, address)
        if tagged:
            found.setdefault(*tagged)
    return found


def _is_report(message: email.message.Message, report_type: str) -> bool:
    return message.get_content_type() == "multipart/report" and str(message.get_param("report-type", "")).lower() == report_type


def _parts(message: email.message.Message, content_type: str) -> list[email.message.Message]:
    return [part for part in message.walk() if part.get_content_type() == content_type]


def _fields(part: email.message.Message) -> list[email.message.Message]:
    """The header blocks of a message/feedback-report or message/delivery-status part, however it was parsed."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, email.message.Message)]
    text = payload if isinstance(payload, str) else ""
    return [HeaderParser().parsestr(block.strip() + "\n") for block in re.split(r"\r?\n\r?\n", text) if block.strip()]


def _original_headers(message: email.message.Message) -> email.message.Message | None:
    """The headers of the mail a report is about (message/rfc822 or text/rfc822-headers part)."""
    for part in _parts(message, "message/rfc822"):
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], email.message.Message):
            return payload[0]
    for part in _parts(message, "text/rfc822-headers"):
        text = part.get_payload(decode=True)
        return HeaderParser().parsestr(text.decode("utf-8", "replace") if isinstance(text, bytes) else "")
    return None


def _complaint(message: email.message.Message, tokens: Tokens, key: str, source: str, signed_only: bool) -> Reading:
    report_fields = [block for part in _parts(message, "message/feedback-report") for block in _fields(part)]
    feedback = report_fields[0] if report_fields else email.message.Message()
    feedback_type = str(feedback.get("Feedback-Type", "abuse")).strip().lower()
    detail = f"{feedback_type} report from {str(feedback.get('Reported-Domain') or feedback.get('Source-IP') or message.get('From', ''))[:200]}"
    candidates = _header_addresses(feedback, ["Original-Mail-From"])
    original = _original_headers(message)
    if original is not None:
        candidates += _header_addresses(original, ["Return-Path"])
        candidates += _MAILTO.findall(str(original.get("List-Unsubscribe", "")))
    tags = _tags(tokens, candidates)
    if Purpose.BOUNCE in tags:
        return Reading([Report(Kind.COMPLAINT, source, key, detail, delivery_id=tags[Purpose.BOUNCE])])
    if Purpose.MAILTO_UNSUBSCRIBE in tags:
        return Reading([Report(Kind.COMPLAINT, source, key, detail, subscriber_id=tags[Purpose.MAILTO_UNSUBSCRIBE])])
    if signed_only:
        return Reading(note="complaint about a mail without our signature refused")
    named = _header_addresses(feedback, ["Original-Rcpt-To"])
    if not named and original is not None:
        named = _header_addresses(original, ["To"])
    if not named:
        return Reading(note="complaint names no recipient")
    return Reading([Report(Kind.COMPLAINT, source, f"{key}:{address}", detail, address=address) for address in named])


def _delivery_status_blocks(message: email.message.Message) -> list[email.message.Message]:
    return [block for part in _parts(message, "message/delivery-status") for block in _fields(part)]


def _only_soft_statuses(message: email.message.Message) -> bool:
    """Whether every failed recipient of a DSN has a temporary status (4.x.x) or a full mailbox (5.2.2)."""
    statuses = [
        str(block.get("Status", "")).strip()
        for block in _delivery_status_blocks(message)
        if str(block.get("Action", "")).lower().startswith(("fail", "error"))
    ]
    return bool(statuses) and all(_SOFT_STATUS.match(status) for status in statuses)


def _bounce_detail(message: email.message.Message) -> str:
    """Status and diagnostic of a DSN, else the report's subject."""
    for block in _delivery_status_blocks(message):
        status = str(block.get("Status", "")).strip()
        diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
        if status or diagnostic:
            return f"{status} {diagnostic}".strip()[:500]
    return " ".join(str(message.get("Subject", "")).split())[:200]

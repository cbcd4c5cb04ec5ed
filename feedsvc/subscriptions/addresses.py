"""Addresses and the fields of a subscription: validated and normalised once, each refusal naming its field."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from feedsvc.vocabulary import DEFAULT_FREQUENCY, FREQUENCIES

MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit less the angle brackets
MAX_NAME_LENGTH = 200
MAX_TAGS = 50
_TAG = re.compile(r"^[\w][\w-]{0,63}$")
# Control characters, and the Unicode line/paragraph separators some mail software treats as line breaks.
UNSAFE_CATEGORIES = {"Cc", "Zl", "Zp"}
# Bidirectional controls (U+202E right-to-left override and kin): they make text read differently than it is.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class InvalidInput(ValueError):
    """A field the user gave cannot be used; the message names the field and says why. `kind` is the reason
    as a word the web pages choose their translated message by: required, too_long, control_characters,
    not_address, not_tag, too_many or invalid."""

    def __init__(self, field_name: str, reason: str, kind: str = "invalid") -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Address:
    email: str  # as stored and mailed: ASCII, the domain in punycode and lower case
    key: str  # the case-insensitive unique key


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    address: Address
    name: str = ""
    frequency: str = DEFAULT_FREQUENCY
    tags: tuple[str, ...] = ()


def _has_unsafe_characters(value: str) -> bool:
    return any(unicodedata.category(char) in UNSAFE_CATEGORIES or char in BIDI_CONTROLS for char in value)


def _single_line(field_name: str, value: str, max_length: int) -> str:
    """The value, if it holds no line break or control character (no header injection) and is short enough."""
    if _has_unsafe_characters(value):
        raise InvalidInput(field_name, "contains line breaks or control characters", "control_characters")
    if len(value) > max_length:
        raise InvalidInput(field_name, f"is longer than {max_length} characters", "too_long")
    return value


def normalise_address(raw: object) -> Address:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("email", "an email address is required", "required")
    value = _single_line("email", raw.strip(), MAX_ADDRESS_LENGTH)
    try:
        # Non-ASCII local parts need SMTPUTF8 all the way to the reader's mailbox, which relays do not promise.
        # strict: RFC 5321's limit of 64 octets before the @ too.
        result = validate_email(value, check_deliverability=False, allow_smtputf8=False, strict=True)
    except EmailNotValidError as exc:
        raise InvalidInput("email", f"is not a valid address: {exc}", "not_address") from None
    email = result.ascii_email or result.normalized
    if len(email) > MAX_ADDRESS_LENGTH:
        raise InvalidInput("email", f"is longer than {MAX_ADDRESS_LENGTH} characters once the domain is encoded", "too_long")
    return Address(email=email, key=email.lower())


def clean_name(raw: object) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidInput("name", "must be text")
    # Checked before the spaces around it go: a control character at either end is refused, not dropped.
    return _single_line("name", unicodedata.normalize("NFC", raw), MAX_NAME_LENGTH).strip()


def parse_frequency(raw: object, default: str = DEFAULT_FREQUENCY) -> str:
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
            raise InvalidInput("tags", f"{str(item)[:70]!r} is not a tag (letters, digits and dashes, up to 64)", "not_tag")
        tags.add(item.strip().lower())
    if len(tags) > MAX_TAGS:
        raise InvalidInput("tags", f"at most {MAX_TAGS} tags", "too_many")
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

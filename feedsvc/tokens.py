"""Signed, purpose-bound tokens for the links in mails (confirm, unsubscribe, preferences).

A token carries the subscriber id, the subscriber row's random link key and its purpose (as the signing salt),
so a token made for one purpose never passes as another, and a link dies with its row: it never opens another
subscriber's row, even one that got the same id. Confirmation tokens expire; unsubscribe and preferences links
in old mails keep working.

The tokens in addresses (an envelope sender for VERP, a mailto unsubscribe) are spelled in lowercase base32
instead: a mail system may change the case of an address's local part on the way back (RFC 5321 leaves it to the
receiving system), which would break a base64 signature.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from itsdangerous import BadData, BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode, int_to_bytes

from feedsvc.config import Settings
from feedsvc.store.subscribers import Subscriber

# How far the clock of the process that signed a link may lag the one that created its row.
CLOCK_SKEW = timedelta(seconds=5)


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    # In addresses: the envelope sender of one delivery (VERP), and the mailto unsubscribe of one subscriber.
    BOUNCE = "bounce"
    MAILTO_UNSUBSCRIBE = "mailto-unsubscribe"


class InvalidToken(Exception):
    """The token is forged, malformed, expired or made for another purpose."""


class ExpiredToken(InvalidToken):
    """The token was genuine, but is older than a confirmation link may be."""


# A token as `make` writes it: payload, timestamp and signature, each in unpadded URL-safe base64.
_CANONICAL = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# An `address_tag` in any case: 18 bytes in unpadded base32.
_ADDRESS_TAG = re.compile(r"[A-Za-z2-7]{29}")


def _canonical(token: str) -> bool:
    """Whether the token is spelled exactly as it was signed. itsdangerous reads more: it skips non-ASCII
    characters, accepts `=` padding and ignores the unused low bits of the last base64 character, so one
    link would have many spellings."""
    if not _CANONICAL.fullmatch(token):
        return False
    try:
        return all(base64_encode(base64_decode(part)).decode("ascii") == part for part in token.split("."))
    except BadData:
        return False


@dataclass(frozen=True, slots=True)
class Link:
    """What a valid token says: whose row it opens, under which key, signed when."""

    subscriber_id: int
    key: str | None  # None: a link mailed before links carried the row's key
    signed_at: datetime

    def opens(self, subscriber: Subscriber | None) -> bool:
        """Whether this link was made for this very row (not for an erased one that had the same id)."""
        if subscriber is None or subscriber.id != self.subscriber_id:
            return False
        if self.key is not None:
            return hmac.compare_digest(self.key.encode(), subscriber.link_key.encode())
        # A keyless link is honoured only for rows that existed before keys, and only if signed after the row
        # was created: one signed earlier was made for an erased subscriber whose id the row inherited.
        return subscriber.unkeyed_links and self.signed_at >= subscriber.created_at - CLOCK_SKEW


class Tokens:
    def __init__(self, secret: str, confirm_max_age: int) -> None:
        self._serializers = {p: URLSafeTimedSerializer(secret, salt=f"feedsvc.{p}") for p in Purpose}
        self._confirm_max_age = confirm_max_age
        # A mail carries two tokens and a digest goes to thousands: `make` signs with a keyed HMAC prepared
        # once per purpose instead of building a serializer, signer and derived key for every token.
        self._macs: dict[Purpose, hmac.HMAC] = {}
        self._signed_second: tuple[int, bytes] = (-1, b"")
        for purpose, serializer in self._serializers.items():
            signer = serializer.make_signer()
            self._macs[purpose] = hmac.new(signer.derive_key(), digestmod=signer.digest_method)

    def make(self, purpose: Purpose, subscriber_id: int, link_key: str | None) -> str:
        """A token `URLSafeTimedSerializer.loads` reads as `[subscriber_id, link_key]` (so `read` takes it), or
        as the bare id without a key: the signed addresses must fit a local part (64 octets, RFC 5321), and name
        rows whose ids are never reused."""
        if link_key is None:
            payload = b"%d" % subscriber_id
        else:
            payload = b'[%d,"%s"]' % (subscriber_id, link_key.encode("ascii"))  # URL-safe base64: no escapes
        signed = base64_encode(payload) + self._timestamp()
        mac = self._macs[purpose].copy()
        mac.update(signed)
        return (signed + b"." + base64_encode(mac.digest())).decode("ascii")

    def address_tag(self, purpose: Purpose, number: int) -> str:
        """`number` signed for `purpose`, spelled for an address's local part: 29 characters of lowercase base32
        (the number's 8 bytes and 80 bits of HMAC), read back the same in any case."""
        payload = number.to_bytes(8, "big")
        return base64.b32encode(payload + self._address_mac(purpose, payload)).decode("ascii").rstrip("=").lower()

    def read_address_tag(self, purpose: Purpose, tag: str) -> int:
        """The number an `address_tag` of this purpose carries, whatever the case it came back in."""
        if not _ADDRESS_TAG.fullmatch(tag):
            raise InvalidToken("not a signed address")
        raw = base64.b32decode(tag.upper() + "===")
        payload, mac = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, self._address_mac(purpose, payload)):
            raise InvalidToken("not a signed address")
        return int.from_bytes(payload, "big")

    def _address_mac(self, purpose: Purpose, payload: bytes) -> bytes:
        mac = self._macs[purpose].copy()
        mac.update(b"address:" + payload)  # never the input of a link token's MAC (base64 text)
        return mac.digest()[:10]

    def _timestamp(self) -> bytes:
        """b".<the signing time>", encoded once per second rather than for each of a digest's thousands of tokens."""
        second = int(time.time())
        if self._signed_second[0] != second:
            self._signed_second = (second, b"." + base64_encode(int_to_bytes(second)))
        return self._signed_second[1]

    def read(self, purpose: Purpose, token: str) -> Link:
        """The link a token carries; whether it opens a row is `Link.opens`. Links signed before links carried
        a key hold the bare subscriber id."""
        max_age = self._confirm_max_age if purpose is Purpose.CONFIRM else None
        if not _canonical(token):
            raise InvalidToken("this link is not valid")
        try:
            value, signed_at = self._serializers[purpose].loads(token, max_age=max_age, return_timestamp=True)
        except SignatureExpired:
            raise ExpiredToken("this link has expired") from None
        except BadSignature:
            raise InvalidToken("this link is not valid") from None
        match value:
            case int(subscriber_id) if not isinstance(value, bool):
                return Link(subscriber_id, None, signed_at)
            case [int(subscriber_id), str(key)] if not isinstance(subscriber_id, bool):
                return Link(subscriber_id, key, signed_at)
        raise InvalidToken("this link is not valid")


def load_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, else one generated on first use and kept in {data_dir}/secret.key."""
    if configured:
        return configured
    path = data_dir / "secret.key"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    # Written whole to a private temp file, then linked into place: when two processes start at once,
    # one link wins and both read the same complete key.
    temp = data_dir / f".secret.key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    return path.read_text(encoding="ascii").strip()


# --- the signed links in mails and pages ----------------------------------------------------------------


def tokens_for(settings: Settings) -> Tokens:
    return Tokens(load_secret(settings.web.secret_key, settings.store.dir), settings.web.confirm_token_max_age)


def _link(settings: Settings, tokens: Tokens, purpose: Purpose, subscriber_id: int, link_key: str) -> str:
    return f"{settings.web.base_url}/{purpose.value}/{tokens.make(purpose, subscriber_id, link_key)}"


def confirm_url(settings: Settings, tokens: Tokens, subscriber_id: int, link_key: str) -> str:
    return _link(settings, tokens, Purpose.CONFIRM, subscriber_id, link_key)


def unsubscribe_url(settings: Settings, tokens: Tokens, subscriber_id: int, link_key: str) -> str:
    return _link(settings, tokens, Purpose.UNSUBSCRIBE, subscriber_id, link_key)


def preferences_url(settings: Settings, tokens: Tokens, subscriber_id: int, link_key: str) -> str:
    return _link(settings, tokens, Purpose.PREFERENCES, subscriber_id, link_key)


# --- the signed addresses in envelopes and List-Unsubscribe --------------------------------------------------
# Tokens are base64url with dots: all valid in a local part, and never holding the "+" that separates them.


def _tagged_address(base: str, tag: str) -> str:
    local, _, domain = base.rpartition("@")
    return f"{local}+{tag}@{domain}"


def bounce_sender(settings: Settings, tokens: Tokens, delivery_id: int) -> str:
    """The VERP envelope sender of one delivery (bounces+<token>@…); "" without a `mail.bounce_address`."""
    if not settings.mail.bounce_address:
        return ""
    return _tagged_address(settings.mail.bounce_address, tokens.address_tag(Purpose.BOUNCE, delivery_id))


def unsubscribe_mailto(settings: Settings, tokens: Tokens, subscriber_id: int) -> str:
    """unsubscribe+<token>@<bounce domain>, which only this subscriber's mails carry; "" without a bounce address."""
    if not settings.mail.bounce_address:
        return ""
    domain = settings.mail.bounce_address.rpartition("@")[2]
    return _tagged_address(f"unsubscribe@{domain}", tokens.address_tag(Purpose.MAILTO_UNSUBSCRIBE, subscriber_id))


def read_tagged_address(tokens: Tokens, address: str) -> tuple[Purpose, int] | None:
    """(BOUNCE, delivery id) or (MAILTO_UNSUBSCRIBE, subscriber id) from a signed address; None for any other.
    Tags of mails sent before address tags were case-proof (a base64 link token) are read too."""
    local = address.strip().strip("<>").rpartition("@")[0]
    _, plus, tag = local.partition("+")
    if not plus:
        return None
    for purpose in (Purpose.BOUNCE, Purpose.MAILTO_UNSUBSCRIBE):
        try:
            if _ADDRESS_TAG.fullmatch(tag):
                return purpose, tokens.read_address_tag(purpose, tag)
            return purpose, tokens.read(purpose, tag).subscriber_id
        except InvalidToken:
            continue
    return None

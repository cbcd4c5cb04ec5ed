"""RFC 5322 messages built from a precomputed skeleton, so one rendered mail is personalised cheaply per recipient.

The skeleton holds everything that is the same for every recipient, already encoded: the shared headers and
both bodies as quoted-printable segments split around the per-recipient placeholders. Personalising is then
string work only: a few headers, the placeholder values encoded on their own, one join (and a DKIM signature
when configured). Each segment ends with a soft line break, so a value always starts a fresh encoded line
and no line grows past the quoted-printable limit. A message whose lines are all CRLF and none starts with
'.' comes out as a `WireMessage`, which the SMTP client sends without scanning it again.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import html
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, quote
from urllib.parse import urlsplit

from feedsvc.config import Settings
from feedsvc.mail.dkim import DkimSigner

# Placeholders the edition templates put where per-recipient values go; plain tokens that survive HTML
# escaping and CSS inlining untouched.
UNSUBSCRIBE_URL = "__FEEDSVC_UNSUBSCRIBE_URL__"
PREFERENCES_URL = "__FEEDSVC_PREFERENCES_URL__"
_PLACEHOLDER = re.compile(f"({UNSUBSCRIBE_URL}|{PREFERENCES_URL})")

CRLF = b"\r\n"
_SOFT_BREAK = b"=\r\n"
_PREAMBLE = b"\r\nThis is a multipart message in MIME format.\r\n"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# local@domain without whitespace, brackets or the other characters that would need quoting.
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"@\\]+@[^\s<>()\[\],;:\"@\\]+")


class AddressError(ValueError):
    """An address that cannot go into an envelope or header as given."""


class WireMessage(bytes):
    """A message that SMTP DATA can carry as it is: CRLF line endings only, no line starting with '.', CRLF last.

    A skeleton checks its fixed parts once, so the SMTP client need not scan every personalised copy to
    normalise line endings and dot-stuff it (RFC 5321 4.5.2); any other bytes still get that treatment.
    """


def fits_smtp_data(part: bytes) -> bool:
    """Whether `part`, starting at the beginning of a line, has only CRLF line endings and no line starting with '.'."""
    crlf = part.count(b"\r\n")
    return part.count(b"\n") == crlf and part.count(b"\r") == crlf and not part.startswith(b".") and b"\n." not in part


def single_line(value: str) -> str:
    """A header value with every control character (CR, LF, tab …) folded to one space: no header injection."""
    return _CONTROL.sub(" ", value).strip()


def mail_address(value: str) -> str:
    """A plain addr-spec fit for SMTP envelopes and headers (IDN domains in their ASCII form)."""
    if _CONTROL.search(value) or not _ADDRESS.fullmatch(value):
        raise AddressError(f"{value!r} is not a usable e-mail address")
    local, _, domain = value.rpartition("@")
    if not local.isascii():
        raise AddressError(f"{value!r} has a non-ASCII local part, which needs SMTPUTF8 (not supported)")
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise AddressError(f"{value!r} has a domain that is not a valid international domain name") from None
    return f"{local}@{ascii_domain}"


def address_header(name: str, address: str) -> str:
    """`Name <address>` with the name quoted or RFC 2047 encoded as needed ("address" alone without a name)."""
    address = mail_address(address)
    name = single_line(name)
    if not name:
        return address
    if name.isascii():
        return f'"{quote(name)}" <{address}>'
    encoded = Header(name, "utf-8").encode(linesep="\r\n")
    return f"{encoded} <{address}>"


def subject_header(subject: str) -> str:
    subject = single_line(subject)
    if subject.isascii() and len(subject) < 900:
        return subject
    return Header(subject, "utf-8", header_name="Subject").encode(linesep="\r\n")


def list_id(settings: Settings) -> str:
    """`<blog.example.org.feedsvc>`-style List-Id from the site URL (path segments become dots)."""
    parts = urlsplit(settings.site.url)
    labels = [parts.hostname or "localhost", *(p for p in parts.path.split("/") if p), "feedsvc"]
    ident = ".".join(re.sub(r"[^A-Za-z0-9.-]", "-", label) for label in labels)
    return f"{subject_header(settings.site.title)} <{ident}>"


def sender_header(settings: Settings) -> str:
    return address_header(settings.mail.from_name or settings.site.title, settings.mail.from_address)


def message_id_domain(settings: Settings) -> str:
    return _domain_of(settings.mail.from_address)


@functools.lru_cache(maxsize=8)
def _domain_of(address: str) -> str:
    # Asked once per mail sent, always for the same configured address.
    return mail_address(address).rpartition("@")[2]


def message_id_for(settings: Settings, key: str) -> str:
    """A Message-ID derived from `key` (the delivery key), so a retried mail keeps its Message-ID."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"<{digest}@{message_id_domain(settings)}>"


def _qp(text: str) -> bytes:
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", CRLF)
    if encoded.startswith(b".") or b"\n." in encoded:
        encoded = _without_leading_dots(encoded)
    return encoded


_QP_LINE_MAX = 76  # RFC 2045 6.7, the soft break's "=" included


def _without_leading_dots(encoded: bytes) -> bytes:
    """Quoted-printable text whose lines never start with '.': it is written "=2E" there (as RFC 2049 section 3
    advises), so the mail goes into SMTP DATA as it is instead of every copy being scanned to dot-stuff it. A line
    made too long by the two more characters gets a soft break (never inside an =XX escape)."""
    lines: list[bytes] = []
    for line in encoded.split(CRLF):
        while line.startswith(b"."):
            line = b"=2E" + line[1:]
            if len(line) <= _QP_LINE_MAX:
                break
            cut = _QP_LINE_MAX - 1
            escape = line.find(b"=", cut - 2, cut)
            if escape != -1:
                cut = escape
            lines.append(line[:cut] + b"=")
            line = line[cut:]
        lines.append(line)
    return CRLF.join(lines)


def _segments(body: str) -> list[bytes | str]:
    """The body as encoded static segments (bytes) and placeholder names (str), alternating."""
    body = body.replace("\r\n", "\n")
    parts: list[bytes | str] = []
    for index, piece in enumerate(_PLACEHOLDER.split(body)):
        if index % 2:
            parts.append(piece)
        elif piece:
            encoded = _qp(piece)
            parts.append(encoded if encoded.endswith(CRLF) else encoded + _SOFT_BREAK)
    return parts


class MessageSkeleton:
    """One mail (subject + HTML + text) ready to be personalised for any number of recipients."""

    def __init__(
        self,
        settings: Settings,
        *,
        subject: str,
        html_body: str,
        text_body: str,
        is_list_mail: bool = True,
        dkim_signer: DkimSigner | None = None,
    ) -> None:
        self.envelope_sender = mail_address(settings.mail.from_address)
        self.is_list_mail = is_list_mail
        self.dkim_signer = dkim_signer
        self._mailto_unsubscribe = f"mailto:{self.envelope_sender}?subject=unsubscribe"
        boundary = f"=_feedsvc_{secrets.token_hex(12)}"  # "=_" can never occur in quoted-printable text
        shared = [
            f"From: {sender_header(settings)}",
            f"Subject: {subject_header(subject)}",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"',
        ]
        if settings.mail.reply_to:
            shared.append(f"Reply-To: {mail_address(settings.mail.reply_to)}")
        # Every mail here is sent by a program: auto-responders must not answer it (RFC 3834).
        shared.append("Auto-Submitted: auto-generated")
        if is_list_mail:
            shared.append(f"List-Id: {list_id(settings)}")
            shared.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
            # Bulk: vacation replies and the like stay away from the bounce address.
            shared.append("Precedence: bulk")
        self._shared_headers = ("\r\n".join(shared) + "\r\n").encode("ascii")
        part_head = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        self._text_head = f"\r\n--{boundary}\r\n{part_head.format('plain')}".encode("ascii")
        self._html_head = f"\r\n--{boundary}\r\n{part_head.format('html')}".encode("ascii")
        self._closing = f"\r\n--{boundary}--\r\n".encode("ascii")
        self._text = _segments(text_body)
        self._html = _segments(html_body)
        # Every fixed part starts a line (headers and segments end in CRLF or a soft break), so checking each
        # part once covers every line they hold; `build` checks the few per-recipient bytes itself.
        fixed = [self._shared_headers, _PREAMBLE, self._text_head, self._html_head, self._closing, *self._text, *self._html]
        self._date = (0, "")  # (second, its Date header value)
        self._fixed_parts_fit = all(fits_smtp_data(part) for part in fixed if isinstance(part, bytes))

    def _date_now(self) -> str:
        """The Date header value for now, formatted once per second rather than once per mail."""
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, format_datetime(datetime.fromtimestamp(second, UTC)))
        return self._date[1]

    def build(
        self,
        *,
        to_email: str,
        to_name: str,
        unsubscribe_url: str = "",
        preferences_url: str = "",
        message_id: str,
        date: datetime | None = None,
        unsubscribe_mailto: str = "",
        feedback_id: str = "",
    ) -> bytes:
        """The message for one recipient. `unsubscribe_mailto`: their signed mailto address (default: the
        sender's, with subject "unsubscribe"); `feedback_id`: Gmail's Feedback-ID (campaign:…:sender)."""
        values = {UNSUBSCRIBE_URL: single_line(unsubscribe_url), PREFERENCES_URL: single_line(preferences_url)}
        message_id = single_line(message_id)
        if not message_id.startswith("<"):
            message_id = f"<{message_id}>"
        headers = [
            f"To: {address_header(to_name, to_email)}",
            f"Date: {format_datetime(date) if date else self._date_now()}",
            f"Message-ID: {message_id}",
        ]
        if self.is_list_mail:
            mailto = f"mailto:{mail_address(unsubscribe_mailto)}" if unsubscribe_mailto else self._mailto_unsubscribe
            headers.append(f"List-Unsubscribe: <{values[UNSUBSCRIBE_URL]}>,\r\n <{mailto}>")
        if feedback_id:
            headers.append(f"Feedback-ID: {single_line(feedback_id)}")
        personal = ("\r\n".join(headers) + "\r\n").encode("utf-8")
        text_values = _encoded_values(values)
        escaped = {name: html.escape(value) for name, value in values.items()}
        # Signed links hold nothing HTML escapes: the text part's encoding serves both.
        html_values = text_values if escaped == values else _encoded_values(escaped)
        message = b"".join(
            [
                self._shared_headers,
                personal,
                _PREAMBLE,
                self._text_head,
                *_fill(self._text, text_values),
                self._html_head,
                *_fill(self._html, html_values),
                self._closing,
            ]
        )
        if self.dkim_signer:
            signed = self.dkim_signer.sign(message)
            personal += signed[: len(signed) - len(message)]  # the DKIM-Signature header put in front
            message = signed
        # The values fit by construction (_qp writes CRLF only and no line-leading '.'); the headers are checked.
        return WireMessage(message) if self._fixed_parts_fit and fits_smtp_data(personal) else message


def _encoded_values(values: Mapping[str, str]) -> dict[str, bytes]:
    """Each placeholder's value as a quoted-printable segment of its own."""
    return {name: _qp(value) + _SOFT_BREAK for name, value in values.items()}


def _fill(segments: list[bytes | str], values: Mapping[str, bytes]) -> list[bytes]:
    return [segment if isinstance(segment, bytes) else values[segment] for segment in segments]


def feedback_id(settings: Settings, edition_id: int) -> str:
    """Gmail's Feedback-ID (campaign:…:sender id): the edition, the site, then "feedsvc", which stays the same."""
    site = re.sub(r"[^A-Za-z0-9.-]", "-", urlsplit(settings.site.url).hostname or "localhost")
    return f"edition-{edition_id}:{site}:feedsvc"


def personalise(
    settings: Settings,
    *,
    subject: str,
    html: str,
    text: str,
    to_email: str,
    to_name: str,
    unsubscribe_url: str,
    preferences_url: str,
    message_id: str,
) -> bytes:
    """The complete RFC 5322 message of an edition for one subscriber."""
    skeleton = edition_skeleton(settings, subject, html, text)
    return skeleton.build(
        to_email=to_email,
        to_name=to_name,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        message_id=message_id,
    )


_skeletons: dict[tuple[int, str, str, str], MessageSkeleton] = {}


def edition_skeleton(settings: Settings, subject: str, html: str, text: str) -> MessageSkeleton:
    """The prepared message of an edition, built once and reused for every subscriber."""
    key = (id(settings), subject, html, text)
    skeleton = _skeletons.get(key)
    if skeleton is None:
        if len(_skeletons) >= 16:
            _skeletons.pop(next(iter(_skeletons)))
        skeleton = _skeletons[key] = MessageSkeleton(
            settings, subject=subject, html_body=html, text_body=text, dkim_signer=DkimSigner.from_settings(settings)
        )
    return skeleton

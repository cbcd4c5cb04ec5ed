"""Sending over SMTP: a pool of persistent connections behind one global rate limit.

`SmtpTransport.send` may be awaited from many tasks at once: each call borrows one connection from the pool
(at most `mail.connections` open), sends one message on it and gives it back. A connection carries up to
`mail.messages_per_connection` messages before it is closed and reopened. Any error that leaves the
connection in doubt (4xx, timeout, dropped connection) discards it; the next send opens a fresh one.

aiosmtplib opens each connection (greeting, EHLO, STARTTLS, AUTH); the transactions then run on a
`_Session` of our own over the same socket, because aiosmtplib waits for each reply before the next command
and re-scans every message twice with regular expressions. A session pipelines MAIL, RCPT and DATA in one
write when the server offers PIPELINING (RFC 2920), and the next mail's envelope behind the end of a message,
so a message costs one round trip instead of four. The connection goes back to the pool as soon as a message is
on the wire (`start`); the reply settles the message's future later.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlsplit

import aiosmtplib

from feedsvc.config import Settings
from feedsvc.mail.message import WireMessage
from feedsvc.mail.transport import BeforeData, Outgoing, SendError

# A server reply longer than this without its last line is not an SMTP server talking.
MAX_REPLY_BYTES = 64 * 1024
# Envelope addresses go into commands verbatim: nothing that could end or extend the command line.
_ENVELOPE_ADDRESS = re.compile(r"[!-~]+")
_BARE_LINE_ENDING = re.compile(rb"\r\n|\r|\n")
END_OF_DATA = b".\r\n"


@dataclass(frozen=True)
class SmtpEndpoint:
    """Where and how to connect, parsed from `mail.smtp_url` (smtp://user:pass@host:587 or smtps://host:465)."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"mail.smtp_url {url!r} must look like smtp://host:587 or smtps://host:465")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit_tls else 587),
            implicit_tls=implicit_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class RateLimiter:
    """Paces acquisitions to `rate` per second over every caller (0 = unlimited).

    A token bucket holding one token: each caller reserves the next free slot, so concurrent senders
    share the rate instead of each getting it.
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next_slot = 0.0

    async def acquire(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


# --- one connection's SMTP session ---------------------------------------------------------------------------


class SessionLost(Exception):
    """The connection dropped, or the server said something that is not SMTP: the session is over."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 300


class Refused(Exception):
    """The server refused one step of a transaction (`stage`: MAIL, RCPT, DATA or the message content).

    `session_lost`: the refusal also left the session in an unknown state, so the connection must go."""

    def __init__(self, stage: str, reply: Reply, *, session_lost: bool = False) -> None:
        super().__init__(f"{stage}: {reply.code} {reply.text}")
        self.stage = stage
        self.reply = reply
        self.session_lost = session_lost


class _ReplyReader(asyncio.Protocol):
    """Takes over a connection's incoming bytes, splits them into replies (several may arrive at once) and hands
    them out in order to the commands that expect them (`expect`): with pipelining, replies to several groups of
    commands may be awaited at once, each by its own task."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []  # the lines so far of a multi-line reply
        self._replies: deque[Reply] = deque()
        self._expected: deque[tuple[int, asyncio.Future[list[Reply]]]] = deque()  # (how many replies, for whom)
        self.lost: SessionLost | None = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
                self.lose(SessionLost(f"not an SMTP reply: {line[:80]!r}"))
                return
            self._lines.append(line[4:].decode("utf-8", "replace").strip())
            if line[3:4] != b"-":
                self._replies.append(Reply(int(line[:3]), "\n".join(self._lines)))
                self._lines = []
        del buffer[:start]
        if len(buffer) > MAX_REPLY_BYTES:
            self.lose(SessionLost("reply too long"))
        elif self._replies:
            self._hand_out()

    def eof_received(self) -> bool:
        self.lose(SessionLost("the server closed the connection"))
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lose(SessionLost(f"connection lost: {exc}" if exc else "connection lost"))

    @property
    def unsolicited(self) -> bool:
        """Whether replies wait that no command has asked for yet (between transactions: the server spoke unasked)."""
        return bool(self._replies) and not self._expected

    def expect(self, count: int) -> asyncio.Future[list[Reply]]:
        """The next `count` replies not handed out to an earlier `expect`, once they have all come."""
        future: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        if self.lost is not None:
            future.set_exception(self.lost)
        else:
            self._expected.append((count, future))
            self._hand_out()
        return future

    def _hand_out(self) -> None:
        replies, expected = self._replies, self._expected
        while expected and len(replies) >= expected[0][0]:
            count, future = expected.popleft()
            answer = [replies.popleft() for _ in range(count)]
            if not future.done():  # its reader gave up (a timeout): the session is being dropped
                future.set_result(answer)

    def lose(self, error: SessionLost) -> None:
        if self.lost is None:
            self.lost = error
        while self._expected:
            _, future = self._expected.popleft()
            if not future.done():
                future.set_exception(error)


class _Session:
    """SMTP transactions on a connection aiosmtplib opened and greeted (and secured and logged in).

    A transaction is started (`start`: the envelope, then the content) and its reply comes apart, as a future.
    With PIPELINING, the next transaction's envelope may follow a message's content before the server has
    answered it (RFC 2920 3.1: the content may be the first "command" of a group), so one round trip carries
    the reply to a message and the envelope's replies of the next: a message costs one round trip, not two.
    """

    def __init__(self, client: aiosmtplib.SMTP, timeout: float) -> None:
        # An asyncio.Transport in effect, whatever its class (uvloop's are not subclasses).
        transport = cast(asyncio.Transport, client.transport)
        self._transport = transport
        self._reader = _ReplyReader()
        # From here on the replies come to us; aiosmtplib's protocol has read everything it asked for.
        transport.set_protocol(self._reader)
        self._timeout = timeout
        self.pipelining = client.supports_extension("pipelining")
        self._size = client.supports_extension("size")
        self.started = 0  # transactions whose content was sent
        # The end of the last message's data, held back until the next write or the loop's next turn (see start).
        self._held = b""
        self._last_reply: asyncio.Future[list[Reply]] | None = None  # to the last message sent
        self._retired = False  # QUIT goes behind the last transaction

    @property
    def usable(self) -> bool:
        # A reply nobody asked for (a 421 before an idle server hangs up) would be taken for the next MAIL's.
        return (
            self._reader.lost is None
            and not self._retired
            and not self._reader.unsolicited
            and not self._transport.is_closing()
        )

    async def start(
        self, sender: str, recipient: str, message: bytes, before_data: BeforeData | None = None
    ) -> asyncio.Future[list[Reply]]:
        """The envelope, then the content: returns the future of the server's reply to the content, which fails
        with `SessionLost` if the session breaks or the reply does not come in time. Raises `Refused` for a
        refused envelope, `SessionLost`/`TimeoutError` for a broken session."""
        content = _data_block(message)
        size = b" SIZE=%d" % len(message) if self._size else b""
        commands = (
            b"MAIL FROM:<%s>%s\r\n" % (sender.encode("ascii"), size),
            b"RCPT TO:<%s>\r\n" % recipient.encode("ascii"),
            b"DATA\r\n",
        )
        last = self._last_reply
        if last is not None and not last.done() and not (self.pipelining and self._held):
            # Without PIPELINING every command waits for the reply before it (RFC 5321 4.1.1.4 and 2920), the last
            # message's too. With it, so does an envelope that cannot go out with the end of the last message (see
            # below). The reply's own timer bounds the wait; the outcome is its sender's.
            await asyncio.wait([last])
        try:
            if self.pipelining:
                self._write(b"".join(commands))
                replies = await self._read(3)
            else:
                replies = []
                for command in commands:
                    self._write(command)
                    [reply] = await self._read(1)
                    replies.append(reply)
                    if reply.code >= 400:
                        break
            _check_envelope(replies)
            if before_data is not None:
                await before_data()
            if not self.usable:  # dropped while the envelope was answered (a reply before it was a 421)
                raise self._reader.lost or SessionLost("connection dropped")
        except Refused:
            raise  # the server's own answer: the caller knows what state it left
        except BaseException:
            # Cancelled, or `before_data` failed, between DATA and the message: the server may take whatever is
            # sent next on this connection as the message's text. It must carry nothing more.
            self.abort()
            raise
        if self.pipelining:
            # The end of data goes out with what is written next in this turn of the loop (the next mail's envelope,
            # a QUIT), or alone at the next turn (`flush_soon`): the server reads them together and answers them in
            # one write. An envelope sent after the end of data went alone could reach the server after it answered
            # that; its replies would then be held by Nagle's algorithm (most servers keep it) until we acknowledge
            # the first, which a client with nothing to send delays by up to 40 ms. So such an envelope waits for
            # the reply, as without PIPELINING, and carries the acknowledgement.
            self._transport.write(content)
            self._held = END_OF_DATA
        else:
            self._transport.writelines((content, END_OF_DATA))
        self.started += 1
        replied = self._last_reply = self._reader.expect(1)
        if not replied.done():
            timer = asyncio.get_running_loop().call_later(self._timeout, self._time_out)
            replied.add_done_callback(lambda _: timer.cancel())
        return replied

    async def reset(self) -> None:
        """End a transaction whose envelope was refused, keeping the session for the next one."""
        self._write(b"RSET\r\n")
        [reply] = await self._read(1)
        if not reply.positive:
            raise SessionLost(f"RSET answered {reply.code} {reply.text}")

    def retire(self) -> None:
        """QUIT behind the last transaction: no more are started here, and the connection closes once the server
        has answered the transactions before it (the next mail takes a fresh connection meanwhile). Pipelined
        right behind the message, or without PIPELINING once its reply has come."""
        self._retired = True
        if self.pipelining or self._last_reply is None:
            self._quit_unanswered()
        else:
            self._last_reply.add_done_callback(lambda _: self._quit_unanswered())

    def _quit_unanswered(self) -> None:
        if not self._transport.is_closing():
            self._write(b"QUIT\r\n")
            self._reader.expect(1).add_done_callback(self._close_after_quit)

    async def quit(self) -> None:
        try:
            if self.usable:
                self._write(b"QUIT\r\n")
                await self._read(1)
        except (SessionLost, TimeoutError):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        self._transport.close()

    def _write(self, data: bytes) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        self._transport.write(data)

    def flush_soon(self) -> None:
        """Send what is held back at the loop's next turn, unless a write of this turn takes it along."""
        if self._held:
            asyncio.get_running_loop().call_soon(self._write_held)

    def _write_held(self) -> None:
        if self._held and not self._transport.is_closing():
            self._write(b"")

    def _time_out(self) -> None:
        self._reader.lose(SessionLost(f"no reply within {self._timeout:g} s (timed out)"))
        self.abort()

    def _close_after_quit(self, answered: asyncio.Future[list[Reply]]) -> None:
        if not answered.cancelled():
            answered.exception()  # a connection already lost: nothing more to say on it
        self.abort()

    async def _read(self, count: int) -> list[Reply]:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._reader.expect(count)
        except TimeoutError:
            # The replies still owed would be taken for later commands' answers: the session is over.
            self.abort()
            raise


def _check_envelope(replies: list[Reply]) -> None:
    """Raise for the first refused step of MAIL, RCPT, DATA (later steps fail only because of it)."""
    for stage, reply in zip(("MAIL", "RCPT", "DATA"), replies, strict=False):
        accepted = reply.code == 354 if stage == "DATA" else reply.positive
        if not accepted:
            # Pipelined DATA accepted after a refused MAIL/RCPT: the server now takes whatever comes as message
            # text, so the session cannot be brought back to a known state. The refusal still stands: a 550 to
            # the only recipient is a bounce whatever the server said to DATA.
            raise Refused(stage, reply, session_lost=replies[-1].code == 354)


def _data_block(message: bytes) -> bytes:
    """The message as sent after DATA: CRLF line endings, dot-stuffed (RFC 5321 4.5.2), ending in CRLF; the
    end of data (".\r\n", `END_OF_DATA`) follows it."""
    if not (isinstance(message, WireMessage) and message.endswith(b"\r\n")):
        crlf = message.count(b"\r\n")
        if message.count(b"\n") != crlf or message.count(b"\r") != crlf:  # counting is ~10x cheaper than the regex
            message = _BARE_LINE_ENDING.sub(b"\r\n", message)
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        if message.startswith(b"."):
            message = b"." + message
        message = message.replace(b"\r\n.", b"\r\n..")
    return message


# --- the pool ------------------------------------------------------------------------------------------------


class _Connection:
    """One pooled connection slot; `session` is None until first used or after it was discarded."""

    __slots__ = ("session",)

    def __init__(self) -> None:
        self.session: _Session | None = None


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        mail = settings.mail
        self.endpoint = SmtpEndpoint.parse(mail.smtp_url)
        self._timeout = mail.timeout
        self._ehlo_name = mail.ehlo_name or None  # None: aiosmtplib's default, this machine's name
        self._per_connection = mail.messages_per_connection
        self._limiter = RateLimiter(mail.rate_limit)
        self._idle: asyncio.LifoQueue[_Connection] = asyncio.LifoQueue()
        self._slots = [_Connection() for _ in range(mail.connections)]
        for slot in self._slots:
            self._idle.put_nowait(slot)

    async def send(self, item: Outgoing) -> None:
        await (await self.start(item))

    async def start(self, item: Outgoing, before_data: BeforeData | None = None) -> asyncio.Future[None]:
        sender = _envelope_address(item.sender, "sender", permanent=False)
        recipient = _envelope_address(item.recipient, "recipient", permanent=True)
        slot = await self._idle.get()
        try:
            await self._limiter.acquire()
            session, replied = await self._start_on(slot, sender, recipient, item.message, before_data)
        finally:
            # The message is on the wire: the connection can carry the next envelope while its reply is awaited.
            self._idle.put_nowait(slot)
        session.flush_soon()  # after the slot is back, so that a sender waiting for it writes first
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        replied.add_done_callback(functools.partial(self._accepted, session, accepted))
        return accepted

    def _accepted(self, session: _Session, accepted: asyncio.Future[None], replied: asyncio.Future[list[Reply]]) -> None:
        """Settle a message's outcome from the server's reply to it."""
        lost = replied.exception()
        if lost is not None:
            session.abort()
            error = SendError(f"SMTP connection to {self._where()} failed: {_describe(lost)}", permanent=False)
        else:
            [reply] = replied.result()
            if reply.positive:
                accepted.set_result(None)
                return
            code = reply.code
            if not 500 <= code < 600:
                session.abort()  # a 4xx (421 especially) may leave the session unusable: drop it rather than guess
            # The transaction is over whatever the reply (RFC 5321 4.1.1.4): after a 5xx the session goes on, no RSET.
            error = SendError(f"message refused: {code} {reply.text}".strip(), permanent=500 <= code < 600, code=code)
        accepted.set_exception(error)

    async def aclose(self) -> None:
        for slot in self._slots:
            await self._close(slot)

    async def _start_on(
        self, slot: _Connection, sender: str, recipient: str, message: bytes, before_data: BeforeData | None
    ) -> tuple[_Session, asyncio.Future[list[Reply]]]:
        """Start a transaction on the slot's session (opened first if need be); returns it and the future of the
        server's reply to the message."""
        while True:
            session = slot.session
            reused = session is not None and session.usable
            try:
                if session is None or not reused:
                    self._discard(slot)  # unusable: no transaction awaits a reply on it
                    session = slot.session = await self._connect_or_fail()
                replied = await session.start(sender, recipient, message, before_data)
            except Refused as exc:
                if not (reused and exc.reply.code == 421):
                    raise await self._refusal(slot, exc) from None
                self._discard(slot)
            except (SessionLost, OSError, TimeoutError) as exc:
                # Timeouts, refused or dropped connections: the connection state is unknown, start afresh.
                self._discard(slot)
                if not reused or isinstance(exc, TimeoutError):
                    raise SendError(f"SMTP connection to {self._where()} failed: {_describe(exc)}", permanent=False) from None
            else:
                if session.started >= self._per_connection:
                    session.retire()
                    slot.session = None
                return session, replied
            # A connection that had carried earlier mail closed (or said 421) before this envelope was answered: an
            # idle timeout, or a close announced behind the last message. Nothing of this message was sent, so it
            # goes out on a fresh connection now rather than at its retry.

    async def _refusal(self, slot: _Connection, refused: Refused) -> SendError:
        code, text = refused.reply.code, refused.reply.text
        # 5xx to RCPT, DATA or the message is about this recipient or message. A refused MAIL FROM is about
        # our sender address (the relay's configuration): never a reason to suppress a subscriber.
        permanent = 500 <= code < 600 and refused.stage != "MAIL"
        what = {"MAIL": "sender refused", "RCPT": "recipient refused"}.get(refused.stage, "message refused")
        if 500 <= code < 600 and slot.session is not None and not refused.session_lost:
            # The session itself is fine: end the failed transaction and keep the connection.
            try:
                await slot.session.reset()
            except (SessionLost, OSError, TimeoutError):
                self._discard(slot)
        else:
            # A 4xx (421 especially) may leave the session unusable: drop it rather than guess.
            self._discard(slot)
        return SendError(f"{what}: {code} {text}".strip(), permanent=permanent, code=code)

    async def _connect_or_fail(self) -> _Session:
        # Whatever goes wrong before a transaction (refused greeting, failed AUTH, TLS) is about the relay,
        # not the recipient: transient, so no subscriber is suppressed for a relay's misconfiguration.
        try:
            return await self._connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(f"cannot connect to SMTP server {self._where()}: {_describe(exc)}", permanent=False) from None

    async def _connect(self) -> _Session:
        endpoint = self.endpoint
        client = aiosmtplib.SMTP(
            hostname=endpoint.host,
            port=endpoint.port,
            username=endpoint.username,
            password=endpoint.password,
            timeout=self._timeout,
            local_hostname=self._ehlo_name,
            use_tls=endpoint.implicit_tls,
            # None: STARTTLS when the server offers it (smtp:// on 587); never twice over implicit TLS.
            start_tls=False if endpoint.implicit_tls else None,
        )
        await client.connect()
        try:
            # aiosmtplib greets with EHLO only once it first needs to; the session needs the extensions now.
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()  # a server without ESMTP: no PIPELINING, no SIZE
            return _Session(client, self._timeout)
        except BaseException:
            client.close()
            raise

    async def _close(self, slot: _Connection) -> None:
        session, slot.session = slot.session, None
        if session is not None:
            await session.quit()

    def _discard(self, slot: _Connection) -> None:
        session, slot.session = slot.session, None
        if session is not None:
            session.abort()

    def _where(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"


def _envelope_address(address: str, role: str, *, permanent: bool) -> str:
    if not _ENVELOPE_ADDRESS.fullmatch(address) or "<" in address or ">" in address:
        raise SendError(f"the {role} {address!r} cannot go into an SMTP envelope", permanent=permanent)
    return address


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

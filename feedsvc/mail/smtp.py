"""Sending over SMTP: a pool of persistent aiosmtplib connections behind one global rate limit.

`SmtpTransport.send` may be awaited from many tasks at once: each call borrows one connection from the pool
(at most `mail.connections` open), sends one message on it and gives it back. A connection carries up to
`mail.messages_per_connection` messages before it is closed and reopened. Any error that leaves the
connection in doubt (4xx, timeout, dropped connection) discards it; the next send opens a fresh one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiosmtplib

from feedsvc.config import Settings
from feedsvc.mail.transport import Outgoing, SendError


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


class _Connection:
    """One pooled connection slot; `client` is None until first used or after it was discarded."""

    __slots__ = ("client", "sent")

    def __init__(self) -> None:
        self.client: aiosmtplib.SMTP | None = None
        self.sent = 0


class SmtpTransport:
    def __init__(self, settings: Settings) -> None:
        mail = settings.mail
        self.endpoint = SmtpEndpoint.parse(mail.smtp_url)
        self._timeout = mail.timeout
        self._per_connection = mail.messages_per_connection
        self._limiter = RateLimiter(mail.rate_limit)
        self._idle: asyncio.LifoQueue[_Connection] = asyncio.LifoQueue()
        self._slots = [_Connection() for _ in range(mail.connections)]
        for slot in self._slots:
            self._idle.put_nowait(slot)

    async def send(self, item: Outgoing) -> None:
        slot = await self._idle.get()
        try:
            await self._limiter.acquire()
            await self._send_on(slot, item)
        finally:
            self._idle.put_nowait(slot)

    async def aclose(self) -> None:
        for slot in self._slots:
            await self._close(slot)

    async def _send_on(self, slot: _Connection, item: Outgoing) -> None:
        try:
            if slot.client is None or not slot.client.is_connected:
                slot.client = await self._connect_or_fail()
                slot.sent = 0
            await self._transaction(slot.client, item)
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise await self._reply_error(slot, exc.code, exc.message, "recipient refused") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise await self._reply_error(slot, exc.code, exc.message, "message refused") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Timeouts, refused or dropped connections: the connection state is unknown, start afresh.
            self._discard(slot)
            raise SendError(f"SMTP connection to {self._where()} failed: {_describe(exc)}", permanent=False) from None
        slot.sent += 1
        if slot.sent >= self._per_connection:
            await self._close(slot)

    @staticmethod
    async def _transaction(client: aiosmtplib.SMTP, item: Outgoing) -> None:
        # MAIL, RCPT, DATA one by one rather than sendmail(): sendmail re-parses both addresses and
        # re-normalises the whole message only to compute SIZE, a third of the CPU spent per message.
        # Our messages are CRLF throughout, so their length is their transmitted size.
        options = [f"SIZE={len(item.message)}"] if client.supports_extension("size") else []
        await client.mail(item.sender, options=options)
        await client.rcpt(item.recipient)
        await client.data(item.message)

    async def _reply_error(self, slot: _Connection, code: int, message: str, what: str) -> SendError:
        permanent = 500 <= code < 600
        if permanent and slot.client is not None:
            # The session itself is fine: end the failed transaction and keep the connection.
            try:
                await slot.client.rset()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                self._discard(slot)
        else:
            # A 4xx (421 especially) may leave the session unusable: drop it rather than guess.
            self._discard(slot)
        return SendError(f"{what}: {code} {message}".strip(), permanent=permanent, code=code)

    async def _connect_or_fail(self) -> aiosmtplib.SMTP:
        # Whatever goes wrong before a transaction (refused greeting, failed AUTH, TLS) is about the relay,
        # not the recipient: transient, so no subscriber is suppressed for a relay's misconfiguration.
        try:
            return await self._connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(f"cannot connect to SMTP server {self._where()}: {_describe(exc)}", permanent=False) from None

    async def _connect(self) -> aiosmtplib.SMTP:
        endpoint = self.endpoint
        client = aiosmtplib.SMTP(
            hostname=endpoint.host,
            port=endpoint.port,
            username=endpoint.username,
            password=endpoint.password,
            timeout=self._timeout,
            use_tls=endpoint.implicit_tls,
            # None: STARTTLS when the server offers it (smtp:// on 587); never twice over implicit TLS.
            start_tls=False if endpoint.implicit_tls else None,
        )
        await client.connect()
        return client

    async def _close(self, slot: _Connection) -> None:
        client, slot.client = slot.client, None
        if client is not None and client.is_connected:
            try:
                await client.quit(timeout=self._timeout)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()

    def _discard(self, slot: _Connection) -> None:
        client, slot.client = slot.client, None
        if client is not None:
            client.close()

    def _where(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

"""feedsvc's own receiving SMTP server (`inbound.smtp_listen`), for a bounce subdomain whose MX points here.

It takes mail only for the bounce domain (never relays), reads each message while the sending server waits,
and answers 250 only once the effect is stored; if the store fails it answers 451, so the sender keeps the
message and tries again later: nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.inbound import handle
from feedsvc.mail.message import AddressError, mail_address
from feedsvc.tokens import Tokens

log = logging.getLogger(__name__)

NAME = "smtp"


def parse_listen(value: str) -> tuple[str, int]:
    """("host", port) from `host:port` or `[v6]:port`."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"inbound.smtp_listen {value!r} must look like 0.0.0.0:25 or [::]:25")
    return host.strip("[]"), int(port)


class _Handler:
    def __init__(self, source: Source) -> None:
        self.source = source

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options) -> str:
        try:
            domain = mail_address(address).rpartition("@")[2].lower()
        except AddressError:
            return "553 5.1.3 not a valid address"
        if domain != self.source.domain:
            return "550 5.7.1 relaying denied: this server takes mail for its bounce domain only"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogateescape")
        source = self.source
        try:
            await asyncio.to_thread(handle, source.settings, source.engine, source.tokens, data, NAME, list(envelope.rcpt_tos))
        except Exception:
            log.exception("inbound: a message from %s could not be stored; the sender was asked to retry", session.peer)
            return "451 4.3.0 cannot store the message now, try again later"
        return "250 OK"


class Source:
    name = NAME

    def __init__(self, settings: Settings, engine: Engine, tokens: Tokens) -> None:
        self.settings = settings
        self.engine = engine
        self.tokens = tokens
        self.host, self.port = parse_listen(settings.inbound.smtp_listen)
        self.domain = (settings.mail.bounce_address or settings.mail.from_address).rpartition("@")[2].lower()
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        handler = _Handler(self)
        loop = asyncio.get_running_loop()
        inbound = self.settings.inbound
        self.server = await loop.create_server(
            lambda: SMTP(
                handler,
                hostname=self.settings.mail.ehlo_name or None,
                data_size_limit=inbound.max_message_bytes,
                decode_data=False,
                loop=loop,
            ),
            self.host,
            self.port,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("inbound: receiving SMTP on %s:%d for @%s", self.host, self.port, self.domain)

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

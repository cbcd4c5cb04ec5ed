"""Where finished messages go: a Maildir outbox (the embedded default) or an SMTP relay.

Every transport takes one message at a time and either accepts it or raises a `SendError` that says
whether trying again later can help (4xx, timeouts, dropped connections) or not (5xx for the recipient).
"""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from feedsvc.config import Settings


@dataclass(frozen=True, slots=True)
class Outgoing:
    sender: str  # envelope sender (MAIL FROM)
    recipient: str  # envelope recipient (RCPT TO)
    message: bytes  # the complete RFC 5322 message


BeforeData = Callable[[], Awaitable[None]]


class SendError(Exception):
    def __init__(self, reason: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.code = code


class Transport(Protocol):
    async def send(self, item: Outgoing) -> None:
        """Returns once the message is accepted; raises `SendError`."""
        ...

    async def start(self, item: Outgoing, before_data: BeforeData | None = None) -> asyncio.Future[None]:
        """Returns once the message is handed over (on the wire), with the future of its acceptance, which fails
        with `SendError`; may raise `SendError` itself. The caller can go on while the reply is awaited.
        `before_data` is awaited just before the message itself goes out (over SMTP: once the envelope is
        accepted, which may be after the relay has dealt with the message before it)."""
        ...

    async def aclose(self) -> None: ...


class MaildirTransport:
    """Delivers into a Maildir (tmp/ then rename into new/, so a reader never sees half a message)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)  # Maildir creates only its own folder
        self._maildir = mailbox.Maildir(path, create=True)

    async def send(self, item: Outgoing) -> None:
        await asyncio.to_thread(self._maildir.add, item.message)

    async def start(self, item: Outgoing, before_data: BeforeData | None = None) -> asyncio.Future[None]:
        if before_data is not None:
            await before_data()
        await self.send(item)
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        accepted.set_result(None)
        return accepted

    async def aclose(self) -> None:
        pass


def transport_from_settings(settings: Settings) -> Transport:
    """The Maildir outbox when no SMTP relay is configured (`mail.smtp_url` empty), else an SMTP pool."""
    if not settings.mail.smtp_url:
        return MaildirTransport(settings.store.outbox_dir)
    from feedsvc.mail.smtp import SmtpTransport  # smtp imports this module for Outgoing/SendError

    return SmtpTransport(settings)

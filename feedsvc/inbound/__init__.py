"""Inbound mail: bounces, complaints and mailto unsubscribes arriving by IMAP, in a Maildir, or at feedsvc's own
SMTP receiver. Each source is a module with a `Source` that `run`s until stopped; `SOURCES` names them, and
`enabled_sources` gives those the configuration turns on.

Every source follows one rule: a message is marked processed (moved, flagged, accepted with 250) only after
its effect is stored. A crash in between reads it again; its event key makes the second reading a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.inbound.parse import read_message
from feedsvc.mail_events import Outcome, apply
from feedsvc.tokens import Tokens

log = logging.getLogger(__name__)


class Source(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


class MailboxSource:
    """A source read by polling (Maildir, IMAP): `process_new` handles what arrived, every `inbound.poll_seconds`."""

    name = ""

    def __init__(self, settings: Settings, engine: Engine, tokens: Tokens) -> None:
        self.settings = settings
        self.engine = engine
        self.tokens = tokens

    def process_new(self) -> int:
        raise NotImplementedError

    def handle(self, raw: bytes) -> None:
        handle(self.settings, self.engine, self.tokens, raw, self.name)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("inbound: reading %s every %g s", self, self.settings.inbound.poll_seconds)
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.process_new)
            except Exception:
                log.exception("inbound: reading %s failed; trying again later", self)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.inbound.poll_seconds)


# Source name -> (module under feedsvc.inbound, whether the settings turn it on).
SOURCES: dict[str, tuple[str, Callable[[Settings], bool]]] = {
    "maildir": ("maildir", lambda settings: settings.inbound.maildir is not None),
    "imap": ("imap", lambda settings: bool(settings.inbound.imap_url)),
    "smtp": ("smtp_receiver", lambda settings: bool(settings.inbound.smtp_listen)),
}


def enabled_sources(settings: Settings, engine: Engine, tokens: Tokens) -> list[Source]:
    sources = []
    for module_name, enabled in SOURCES.values():
        if enabled(settings):
            module = importlib.import_module(f"feedsvc.inbound.{module_name}")
            sources.append(module.Source(settings, engine, tokens))
    return sources


def handle(
    settings: Settings,
    engine: Engine,
    tokens: Tokens,
    raw: bytes,
    source: str,
    envelope_recipients: Sequence[str] = (),
    now: datetime | None = None,
) -> list[Outcome]:
    """Read one message and store its effect; raises when the store fails (the message must stay unprocessed)."""
    reading = read_message(settings, tokens, raw, source, envelope_recipients)
    if not reading.reports:
        log.info("inbound %s message ignored: %s", source, reading.note)
    now = now or datetime.now(UTC)
    return [apply(settings, engine, report, now) for report in reading.reports]

"""A Maildir the site's MTA delivers the bounce address to (e.g. Postfix `home_mailbox = Maildir/`).

New messages wait in new/. Each is read, its effect stored, and only then renamed into cur/ with the
Seen flag (":2,S"), the Maildir way of marking it read; a rename is atomic, so a message is either still
new or processed. Messages already in cur/ are never looked at again.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.inbound import MailboxSource
from feedsvc.tokens import Tokens

log = logging.getLogger(__name__)

NAME = "maildir"


class Source(MailboxSource):
    name = NAME

    def __init__(self, settings: Settings, engine: Engine, tokens: Tokens) -> None:
        super().__init__(settings, engine, tokens)
        assert settings.inbound.maildir is not None
        self.path = settings.inbound.maildir
        for sub in ("new", "cur", "tmp"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def process_new(self) -> int:
        """Handle every message in new/ once; the number handled."""
        handled = 0
        new = self.path / "new"
        for entry in sorted(os.scandir(new), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            path = Path(entry.path)
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue  # another reader took it meanwhile
            if len(raw) > self.settings.inbound.max_message_bytes:
                log.warning("maildir message %s is larger than inbound.max_message_bytes: left unread", entry.name)
                continue
            self.handle(raw)
            # Only now, with the effect stored: into cur/ with the Seen flag.
            name = entry.name.split(":2,")[0]
            with contextlib.suppress(FileNotFoundError):
                path.rename(self.path / "cur" / f"{name}:2,S")
            handled += 1
        return handled

    def __str__(self) -> str:
        return f"the Maildir {self.path}"

"""A mailbox read over IMAP (`inbound.imap_url`): imaps://user:password@host:993/INBOX, or imap://… with STARTTLS.

The folder is polled every `inbound.poll_seconds` for unseen messages. Each is fetched without marking it
(BODY.PEEK), its effect stored, and only then moved to `inbound.imap_processed_folder` (or flagged \\Seen when
none is set). A crash in between leaves it unseen in place, to be read again: its event key makes that a no-op.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.inbound import MailboxSource
from feedsvc.tokens import Tokens

log = logging.getLogger(__name__)

NAME = "imap"


@dataclass(frozen=True)
class ImapEndpoint:
    host: str
    port: int
    implicit_tls: bool
    username: str
    password: str
    folder: str

    @classmethod
    def parse(cls, url: str) -> ImapEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname or not parts.username:
            raise ValueError(f"inbound.imap_url {url!r} must look like imaps://user:password@host:993/INBOX")
        implicit_tls = parts.scheme == "imaps"
        return cls(
            host=parts.hostname,
            port=parts.port or (993 if implicit_tls else 143),
            implicit_tls=implicit_tls,
            username=unquote(parts.username),
            password=unquote(parts.password or ""),
            folder=unquote(parts.path.strip("/")) or "INBOX",
        )


def _mailbox_name(name: str) -> str:
    """A folder name as an IMAP string (quoted: names may hold spaces)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Source(MailboxSource):
    name = NAME

    def __init__(self, settings: Settings, engine: Engine, tokens: Tokens) -> None:
        super().__init__(settings, engine, tokens)
        self.endpoint = ImapEndpoint.parse(settings.inbound.imap_url)
        ca_file = settings.inbound.imap_ca_file
        self.tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def _connect(self) -> imaplib.IMAP4:
        endpoint, timeout = self.endpoint, self.settings.mail.timeout
        client: imaplib.IMAP4
        if endpoint.implicit_tls:
            client = imaplib.IMAP4_SSL(endpoint.host, endpoint.port, ssl_context=self.tls, timeout=timeout)
        else:
            client = imaplib.IMAP4(endpoint.host, endpoint.port, timeout=timeout)
            # Never a password in clear text: without STARTTLS the server is refused.
            client.starttls(ssl_context=self.tls)
        client.login(endpoint.username, endpoint.password)
        return client

    def process_new(self) -> int:
        """Handle every unseen message of the folder once; the number handled."""
        client = self._connect()
        try:
            processed = self.settings.inbound.imap_processed_folder
            if processed:
                client.create(_mailbox_name(processed))  # "already exists" is a NO answer, not an error
            status, _ = client.select(_mailbox_name(self.endpoint.folder))
            if status != "OK":
                raise imaplib.IMAP4.error(f"cannot open the IMAP folder {self.endpoint.folder!r}")
            _, found = client.uid("SEARCH", "UNSEEN")
            uids = found[0].decode("ascii").split() if found and found[0] else []
            for uid in uids:
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next((part[1] for part in parts if isinstance(part, tuple)), None)
                if raw is None:
                    continue
                if len(raw) > self.settings.inbound.max_message_bytes:
                    log.warning("IMAP message %s is larger than inbound.max_message_bytes: left unread", uid)
                    continue
                self.handle(raw)
                self._mark_processed(client, uid, processed)
            return len(uids)
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def _mark_processed(self, client: imaplib.IMAP4, uid: str, folder: str) -> None:
        if not folder:
            client.uid("STORE", uid, "+FLAGS", "(\\Seen)")
            return
        if "MOVE" in client.capabilities:
            client.uid("MOVE", uid, _mailbox_name(folder))
            return
        # No MOVE (RFC 6851): copy, then delete the original (a crash between the two leaves a copy, never a loss).
        client.uid("COPY", uid, _mailbox_name(folder))
        client.uid("STORE", uid, "+FLAGS", "(\\Deleted \\Seen)")
        client.expunge()

    def __str__(self) -> str:
        endpoint = self.endpoint
        return f"IMAP {endpoint.username}@{endpoint.host}/{endpoint.folder}"

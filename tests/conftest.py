"""Fixtures shared by the whole suite: configs on temporary folders, a real SMTP server, both store backends."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from aiosmtpd.controller import Controller
from browser import axe_script, browser  # noqa: F401  (fixtures: a real Chromium and axe-core, see browser.py)
from sqlalchemy import Engine, create_engine, text
from support import free_port, wait_for  # noqa: F401  (re-exported: tests import them from conftest)

from feedsvc.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
# Real posts from the blogs feedsvc serves, when this clone sits in a workspace that has them beside it.
SEEDS = ROOT.parent / "shared" / "seeds"
EXAMPLE_POSTS = ROOT / "examples" / "posts"

# CI (.ci/run) sets this to the server on 127.0.0.1:5432; without it the PostgreSQL half is skipped, loudly.
POSTGRES_URL = os.environ.get("FEEDSVC_TEST_POSTGRES_URL", "")


@pytest.fixture
def seeds() -> Path:
    """The folder of real seed posts; tests that read them skip, saying why, in a lone clone."""
    if not SEEDS.is_dir():
        pytest.skip("real seed posts absent: no ../shared/seeds beside this clone")
    return SEEDS


# --- configuration ------------------------------------------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Write a feedsvc.toml into tmp_path (posts/, public/, subscribers/ beside it) and load it.

    Keyword arguments are sections to merge over the defaults, e.g. make_settings(feeds={"items": 5}).
    """

    def make(**sections: dict[str, Any]) -> Settings:
        config: dict[str, dict[str, Any]] = {
            "site": {
                "title": "Test Blog",
                "url": "https://blog.example.org",
                "language": "en",
                "timezone": "UTC",
                "author": "Test Author",
            },
            "posts": {"dir": "posts"},
            "feeds": {"output_dir": "public"},
            "store": {"dir": "subscribers"},
            "mail": {"from_address": "news@blog.example.org"},
            "web": {"secret_key": "test-secret-key-of-at-least-32-bytes", "admin_token": "test-admin-token-of-at-least-32-bytes"},
        }
        for name, values in sections.items():
            config.setdefault(name, {}).update(values)
        (tmp_path / "posts").mkdir(exist_ok=True)
        path = tmp_path / "feedsvc.toml"
        path.write_bytes(tomli_w.dumps(config).encode())
        return load_settings(path)

    return make


# --- a real SMTP server -------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


# A `fault` reply that drops the connection instead of answering.
DROP = "DROP"


@dataclass
class SmtpSink:
    """aiosmtpd handler that keeps every accepted message. `fault` may answer a RCPT/DATA with an error."""

    received: list[ReceivedMail] = field(default_factory=list)
    # fault(stage, envelope) -> None to accept, or an SMTP reply such as "451 4.3.0 try later",
    # or DROP to cut the connection without a reply.
    fault: Callable[[str, Any], str | None] | None = None
    # EHLO greetings seen: one per client connection (clients here do not use STARTTLS).
    sessions: int = 0
    # Advertise PIPELINING (RFC 2920) in the EHLO reply, as Postfix and most relays do; aiosmtpd does not by default
    # (it reads pipelined commands fine either way).
    pipelining: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    host: str = "127.0.0.1"
    port: int = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.fault("rcpt", address) if self.fault else None
        if reply == DROP:
            server.transport.abort()
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self.fault("data", envelope) if self.fault else None
        if reply == DROP:
            server.transport.abort()
        if reply:
            return reply
        with self.lock:
            self.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def messages_to(self, address: str) -> list[ReceivedMail]:
        with self.lock:
            return [mail for mail in self.received if address in mail.recipients]


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) on a free local port; plain SMTP, no auth."""
    sink = SmtpSink()
    sink.port = free_port()
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


# --- both store backends ------------------------------------------------------------------------------------


def _postgres_schema_url(schema: str) -> str:
    # Each test gets its own schema through the connection's search_path: isolated and cheap to drop.
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL, once for SQLite (a real file) and once for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    yield from _fresh_postgres_schema()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database URL only (for tests of several processes sharing one store)."""
    yield from _fresh_postgres_schema()


def _fresh_postgres_schema() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL half skipped: set FEEDSVC_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# --- posts and subscribers for the digest tests -----------------------------------------------------------------


def write_post(
    folder: Path,
    name: str,
    *,
    title: str,
    date: datetime,
    tags: Sequence[str] = (),
    draft: bool = False,
    slug: str | None = None,
    body: str = "Some words about it.",
) -> Path:
    """A Markdown post with YAML front matter, written as an editor would (`name` is the file name)."""
    lines = ["---", f"title: {json.dumps(title, ensure_ascii=False)}", f"date: {date.isoformat()}", f"tags: {json.dumps(list(tags), ensure_ascii=False)}"]
    lines += [f"draft: {str(draft).lower()}"] + ([f"slug: {slug}"] if slug else []) + ["---", "", body, ""]
    path = folder / name
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def add_subscribers(
    engine: Engine,
    emails: Sequence[str],
    *,
    frequency: str = "daily",
    tags: Sequence[str] = (),
    confirmed_at: datetime,
    status: str = "active",
) -> list[int]:
    """Insert confirmed subscribers straight into the store (as an import with consent would); their ids."""
    from feedsvc.store import subscribers

    with engine.begin() as connection:
        for address in emails:
            subscribers.insert_if_absent(
                connection,
                email=address,
                email_key=address.lower(),
                status=status,
                frequency=frequency,
                tags=list(tags),
                created_at=confirmed_at,
                confirmed_at=confirmed_at,
            )
        return [subscribers.find(connection, address.lower()).id for address in emails]  # type: ignore[union-attr]


def start_feedsvc(folder: Path, command: str, config: dict[str, Any]) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`feedsvc <command>` in a subprocess on a free port, with `config` written to `folder`/feedsvc.toml and its
    output in `folder`/<command>.log: (process, port, log path). The caller waits for it and stops it."""
    (folder / "posts").mkdir(exist_ok=True)
    path = folder / "feedsvc.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    port = free_port()
    log = folder / f"{command}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "feedsvc", command, "--config", str(path), "--port", str(port)],
            stdout=sink, stderr=subprocess.STDOUT, cwd=folder,
        )
    return process, port, log

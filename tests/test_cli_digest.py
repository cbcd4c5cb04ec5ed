"""`feedsvc digest preview|send` and `feedsvc deliveries` as real subprocesses, including a kill -9 mid-send."""

from __future__ import annotations

import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from conftest import add_subscribers, free_port, write_post
from sqlalchemy import select

from feedsvc.config import Settings
from feedsvc.digests import run_due
from feedsvc.posts import Collection
from feedsvc.store import open_engine
from feedsvc.store.schema import announcements, deliveries


def feedsvc(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feedsvc", *args, "--config", str(settings.config_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"COLUMNS": "200"},
    )


@pytest.fixture
def blog(make_settings):
    """A blog whose first run already happened (the archive is recorded), with one post published since."""

    def make(subscribers: int = 1, frequency: str = "instant", **sections) -> tuple[Settings, list[str]]:
        settings = make_settings(**sections)
        now = datetime.now(UTC)
        write_post(settings.posts.dir, "old.md", title="Old post", date=now - timedelta(days=30))
        engine = open_engine(settings.store.database_url)
        try:
            addresses = [f"reader{n}@example.org" for n in range(subscribers)]
            add_subscribers(engine, addresses, frequency=frequency, confirmed_at=now - timedelta(days=1))
            run_due(settings, engine, Collection(settings, cache_path=settings.store.dir / "test-cache").scan(), now)
        finally:
            engine.dispose()
        write_post(settings.posts.dir, "fresh.md", title="Kabar baru 🎉 Fresh news", date=now - timedelta(seconds=1))
        return settings, addresses

    return make


def announced_titles(settings: Settings) -> list[str]:
    engine = open_engine(settings.store.database_url)
    try:
        with engine.connect() as connection:
            return sorted(connection.execute(select(announcements.c.title)).scalars())
    finally:
        engine.dispose()


def test_preview_writes_the_next_digest_without_storing_or_sending(blog, tmp_path, smtp_server):
    settings, (address,) = blog(mail={"smtp_url": smtp_server.url})
    out = tmp_path / "preview"
    result = feedsvc(settings, "digest", "preview", "--subscriber", address.upper(), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "instant digest for reader0@example.org, 1 posts" in result.stdout

    message = email.message_from_bytes((out / "digest-preview.eml").read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == address
    assert message["Subject"] == "Kabar baru 🎉 Fresh news"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = (out / "digest-preview.html").read_text(encoding="utf-8")
    text = (out / "digest-preview.txt").read_text(encoding="utf-8")
    assert html == message.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert text == message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "Fresh news" in html and "Fresh news" in text and "Old post" not in text
    assert f"{settings.web.base_url}/unsubscribe/" in text
    # Nothing recorded, nothing sent.
    assert announced_titles(settings) == ["Old post"]
    assert smtp_server.received == []


def test_preview_without_news_shows_the_newest_posts(make_settings, tmp_path):
    settings = make_settings()
    write_post(settings.posts.dir, "only.md", title="Only post", date=datetime.now(UTC) - timedelta(days=1))
    result = feedsvc(settings, "digest", "preview", "--out", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    assert "nothing new" in result.stdout
    assert "Only post" in (tmp_path / "p" / "digest-preview.txt").read_text(encoding="utf-8")


def test_preview_for_an_unknown_subscriber_says_so(blog, tmp_path):
    settings, _ = blog()
    result = feedsvc(settings, "digest", "preview", "--subscriber", "nobody@example.org", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "no subscriber with the address nobody@example.org" in result.stderr
    assert not (tmp_path / "digest-preview.eml").exists()


def test_dry_run_sends_and_stores_nothing(blog, smtp_server):
    settings, _ = blog(subscribers=3, mail={"smtp_url": smtp_server.url})
    result = feedsvc(settings, "digest", "send", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would queue 3 × instant:" in result.stdout
    assert "nothing sent" in result.stdout
    assert smtp_server.received == []
    assert announced_titles(settings) == ["Old post"]

    # The real run then sends to each subscriber once, and `feedsvc deliveries` counts them.
    result = feedsvc(settings, "digest", "send")
    assert result.returncode == 0, result.stderr
    assert len(smtp_server.received) == 3
    counts = feedsvc(settings, "deliveries")
    assert counts.returncode == 0, counts.stderr
    rows = dict(re.findall(r"^\W*(\w+)\W+(\d+)\W*$", counts.stdout, re.MULTILINE))
    assert rows == {"queued": "0", "sending": "0", "sent": "3", "retry": "0", "failed": "0", "bounced": "0"}


def test_mails_given_up_during_an_outage_are_sent_after_retry_failed(blog, smtp_server):
    settings, _ = blog(subscribers=2, mail={"smtp_url": smtp_server.url, "max_attempts": 1})
    smtp_server.fault = lambda stage, arg: "421 4.3.2 relay down" if stage == "rcpt" else None
    assert feedsvc(settings, "digest", "send").returncode == 0
    assert smtp_server.received == []

    smtp_server.fault = None
    result = feedsvc(settings, "deliveries", "--retry-failed")
    assert result.returncode == 0, result.stderr
    assert "2 failed deliveries queued again" in result.stdout
    assert feedsvc(settings, "digest", "send").returncode == 0
    assert len(smtp_server.received) == 2


def not_sent(stderr: str) -> list[str]:
    """The reasons `digest send` logged for mails it did not send, as "N not sent: reason"."""
    return re.findall(r"deliveries: (\d+ not sent.*)$", stderr, re.MULTILINE)


def test_send_says_why_mails_were_not_sent(blog):
    """A relay that refuses connections: the summary's counts come with the reason, and the mails wait for their
    retry."""
    port = free_port()
    settings, _ = blog(subscribers=3, mail={"smtp_url": f"smtp://127.0.0.1:{port}"})
    result = feedsvc(settings, "digest", "send")
    assert result.returncode == 0, result.stderr
    assert "sent 0, to retry 3, failed 0, bounced 0" in result.stdout
    [line] = not_sent(result.stderr)
    assert line.startswith(f"3 not sent: cannot connect to SMTP server 127.0.0.1:{port}: "), line
    assert "Connection refused" in line, line


def test_send_names_each_refusal_the_commonest_first(blog, smtp_server):
    settings, addresses = blog(subscribers=4, mail={"smtp_url": smtp_server.url})
    refusals = {addresses[1]: "550 5.1.1 no such mailbox", addresses[2]: "550 5.1.1 no such mailbox",
                addresses[3]: "552 5.2.2 mailbox full"}
    smtp_server.fault = lambda stage, address: refusals.get(address) if stage == "rcpt" else None
    result = feedsvc(settings, "digest", "send")
    assert result.returncode == 0, result.stderr
    assert "sent 1, to retry 0, failed 0, bounced 3" in result.stdout
    assert not_sent(result.stderr) == [
        "2 not sent: recipient refused: 550 5.1.1 no such mailbox",
        "1 not sent: recipient refused: 552 5.2.2 mailbox full",
    ], result.stderr
    assert [mail.recipients for mail in smtp_server.received] == [[addresses[0]]]


@pytest.mark.slow
def test_a_killed_send_resumes_with_no_mail_lost_and_repeats_only_in_flight(blog, smtp_server):
    connections = 3
    # Short leases so the restart can take over the killed process's claims soon; small batches so that a
    # batch is sent well within its lease.
    mail = {"smtp_url": smtp_server.url, "connections": connections, "lease_seconds": 1.0, "batch_size": 20}
    settings, addresses = blog(subscribers=300, mail=mail)

    def slow(stage: str, _envelope) -> None:
        if stage == "data":
            time.sleep(0.01)  # the server takes a while per message, so the kill lands mid-run

    smtp_server.fault = slow
    command = [sys.executable, "-m", "feedsvc", "digest", "send", "--config", str(settings.config_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(smtp_server.received) < 100:
        assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the send never got going"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    process.stderr.close()  # type: ignore[union-attr]
    before_restart = len(smtp_server.received)
    assert before_restart < 300, "the kill came too late to test anything"

    time.sleep(1.2)  # the killed process's leases run out
    result = feedsvc(settings, "digest", "send")
    assert result.returncode == 0, result.stderr

    per_address = Counter(recipient for mail in smtp_server.received for recipient in mail.recipients)
    assert sorted(per_address) == sorted(addresses), "every subscriber got the digest"
    repeats = sum(count - 1 for count in per_address.values())
    assert repeats <= connections, per_address.most_common(5)
    assert "digest.sent" in result.stderr and "sent=300" in result.stderr
    engine = open_engine(settings.store.database_url)
    try:
        with engine.connect() as connection:
            states = Counter(connection.execute(select(deliveries.c.state)).scalars())
    finally:
        engine.dispose()
    assert states == {"sent": 300}


def test_send_while_a_killed_process_still_holds_the_queue_says_so_and_fails(blog, smtp_server):
    # The killed process's claims hold for a minute: the next send can send nothing, and must not say "sent 0" and
    # succeed while 40 mails wait (issue 9).
    mail = {"smtp_url": smtp_server.url, "connections": 2, "lease_seconds": 60, "batch_size": 50}
    settings, _ = blog(subscribers=40, mail=mail)
    smtp_server.fault = lambda stage, _envelope: time.sleep(0.05) if stage == "data" else None
    command = [sys.executable, "-m", "feedsvc", "digest", "send", "--config", str(settings.config_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(smtp_server.received) < 4:
        assert process.poll() is None and time.monotonic() < deadline, "the send never got going"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    time.sleep(0.5)  # the server finishes taking the mails that were in flight
    sent_before = len(smtp_server.received)
    assert sent_before < 40

    result = feedsvc(settings, "digest", "send")
    assert result.returncode == 1, result.stdout + result.stderr
    held = re.search(r"(\d+) mails remain queued, claimed by cli-\S+ until \S+", result.stderr)
    assert held, result.stderr
    assert sent_before <= 40 - int(held[1]) + settings.mail.connections  # the rest, less what was in flight
    assert len(smtp_server.received) == sent_before


# What `feedsvc run` does first on a SQLite store: take the single-instance guard, and keep it while it runs.
HOLD_THE_STORE = """
import sys, time
from feedsvc.store.leases import SqliteGuard
SqliteGuard(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_send_while_another_process_runs_on_the_sqlite_store_says_so_and_fails(blog, smtp_server):
    settings, _ = blog(subscribers=2, mail={"smtp_url": smtp_server.url})
    engine = open_engine(settings.store.database_url)
    try:  # the running service announced the fresh post and queued its mails
        run_due(settings, engine, Collection(settings).scan(), datetime.now(UTC))
    finally:
        engine.dispose()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_STORE, settings.store.database_url],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = feedsvc(settings, "digest", "send")
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"another feedsvc process (pid {holder.pid})" in result.stderr
    assert "2 mails queued" in result.stderr
    assert smtp_server.received == []
    assert feedsvc(settings, "digest", "send").returncode == 0  # once it is gone, the queue goes out
    assert len(smtp_server.received) == 2

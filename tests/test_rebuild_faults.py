"""`feedsvc run` when a rebuild cannot finish: a build stuck on I/O, a full output disk. Real subprocesses, real
HTTP, a real SMTP server, a real full filesystem (a small tmpfs; skipped where this process may not mount one)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import httpx
import pytest
from conftest import add_subscribers, write_post
from test_service import services, wait_for, write_config  # noqa: F401 - `services` is a fixture

from feedsvc.store import open_engine

CACHE = "posts-cache.pickle"


def events(log: str, name: str) -> list[dict]:
    return [
        record
        for line in log.splitlines()
        if line.startswith("{") and (record := json.loads(line))["event"] == name
    ]


def rss_titles(service) -> list[str] | None:
    """The titles in the served /rss.xml; None while there is none."""
    response = httpx.get(service.url("/rss.xml"), timeout=2)
    if response.status_code == 404:
        return None
    assert response.status_code == 200
    feed = feedparser.parse(response.content)
    assert not feed.bozo, "the served feed is always a complete document"
    return [entry.title for entry in feed.entries]


def block_the_posts_cache(tmp_path: Path) -> Path:
    """The posts cache as a FIFO nobody writes to: reading it blocks for ever, as a hung network mount does."""
    cache = tmp_path / "subscribers" / CACHE
    cache.parent.mkdir(exist_ok=True)
    os.mkfifo(cache)
    return cache


def test_a_stuck_build_is_stopped_at_its_deadline_while_http_answers_and_retried(tmp_path, services):  # noqa: F811
    config = write_config(tmp_path, scheduler={"debounce_ms": 50, "rebuild_timeout": 3})
    write_post(tmp_path / "posts", "hello.md", title="Hello", date=datetime.now(UTC) - timedelta(hours=1))
    cache = block_the_posts_cache(tmp_path)
    service = services(config)
    wait_for(lambda: events(service.output(), "leader.elected"), 15, "the first build to start")

    # While the first build hangs, the HTTP server answers (503: the first build is not over).
    latencies = []
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        started = time.monotonic()
        assert httpx.get(service.url("/healthz"), timeout=2).status_code == 503
        latencies.append(time.monotonic() - started)
        time.sleep(0.05)
    assert max(latencies) < 2, latencies

    failure = wait_for(lambda: events(service.output(), "rebuild.failed"), 15, "the build's deadline")[0]
    assert failure["step"] == "build" and "took longer than 3 s" in failure["error"], failure
    service.wait_healthy()

    cache.unlink()  # the mount answers again: the retry publishes without any post being saved
    wait_for(lambda: rss_titles(service) == ["Hello"], 20, "the retried build", interval=0.2)
    assert service.stop() == 0


def test_sigterm_during_a_stuck_build_exits_within_the_shutdown_timeout(tmp_path, services):  # noqa: F811
    config = write_config(tmp_path, scheduler={"shutdown_timeout": 2, "rebuild_timeout": 600})
    write_post(tmp_path / "posts", "hello.md", title="Hello", date=datetime.now(UTC) - timedelta(hours=1))
    block_the_posts_cache(tmp_path)
    service = services(config)
    wait_for(lambda: events(service.output(), "leader.elected"), 15, "the first build to start")
    builds = wait_for(lambda: [pid for pid in children(service.process.pid) if session(pid)], 15, "the build")
    time.sleep(0.5)

    signalled = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    try:
        status = service.process.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("SIGTERM ignored while a build was stuck")
    took = time.monotonic() - signalled
    assert status == 0, service.output()
    assert took < 2 + 1.5, f"exit took {took:.1f} s"
    assert not events(service.output(), "rebuild.failed"), "a build abandoned at shutdown is not a failure"
    # No build process is left behind (killed ones may take a moment to be reaped).
    wait_for(lambda: [session(pid) for pid in builds] == [[]], 5, "the build's processes to end")


def test_a_cold_build_of_thousands_of_posts_runs_and_sigterm_during_it_exits_in_time(tmp_path, services):  # noqa: F811
    """Enough posts for the build to share its parsing over several processes (from the build's own process)."""
    config = write_config(tmp_path, scheduler={"shutdown_timeout": 2})
    body = "A paragraph with *emphasis* and a [link](https://example.org). " * 40
    for number in range(2100):
        write_post(
            tmp_path / "posts",
            f"post-{number:04d}.md",
            title=f"Post {number}",
            date=datetime(2025, 1, 1, tzinfo=UTC),
            tags=[f"t{number % 30}"],
            body=body,
        )
    service = services(config)
    service.wait_healthy(timeout=120)
    assert len(rss_titles(service) or []) == 20
    assert not events(service.output(), "rebuild.failed")
    assert service.stop() == 0

    # Cold again (no parse cache, no feeds): SIGTERM lands in the middle of the build.
    (tmp_path / "subscribers" / CACHE).unlink()
    shutil.rmtree(tmp_path / "public")
    service = services(config)
    # The build's process leads a session of its own; the processes it parses with join it.
    builds = wait_for(
        lambda: [pid for pid in children(service.process.pid) if len(session(pid)) > 1], 30, "the parse"
    )
    signalled = time.monotonic()
    assert service.stop() == 0
    took = time.monotonic() - signalled
    assert not events(service.output(), "rebuild.done"), "SIGTERM must land mid-build"
    assert took < 2 + 1.5, f"exit took {took:.1f} s"
    # No process of the build is left behind (killed ones may take a moment to be reaped).
    wait_for(lambda: [session(pid) for pid in builds] == [[]], 5, "the build's processes to end")


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(child) for child in found.stdout.split()]


def session(sid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-s", str(sid)], capture_output=True, text=True, check=False)
    return [int(member) for member in found.stdout.split()]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 3 MiB tmpfs: writes past it fail with ENOSPC, as on a full disk."""
    mount_point = tmp_path / "public"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)]
    mounted = subprocess.run(command, capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of the filesystem holding `folder`."""
    filler = folder / "filler.bin"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while os.write(descriptor, b"\0" * 4096):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_keeps_the_last_feeds_still_mails_and_recovers_by_itself(
    tmp_path,
    services,  # noqa: F811
    smtp_server,
    small_disk,
):
    config = write_config(tmp_path, mail={"smtp_url": smtp_server.url})
    engine = open_engine(f"sqlite:///{tmp_path / 'subscribers' / 'feedsvc.db'}")
    add_subscribers(
        engine,
        ["reader@example.org"],
        frequency="instant",
        confirmed_at=datetime.now(UTC) - timedelta(hours=1),
    )
    engine.dispose()
    posts = tmp_path / "posts"
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    # About 50 KB of HTML, in the site feed and in three tag feeds, in three formats: about half the disk.
    big = write_post(
        posts, "big.md", title="Big", date=hour_ago, tags=["a", "b", "c"], body="Many words. " * 4000
    )
    service = services(config)
    service.wait_healthy()
    assert rss_titles(service) == ["Big"]

    # The disk fills up; a new post cannot be written into the feeds, but it is still mailed.
    filler = fill(small_disk)
    write_post(
        posts, "fresh.md", title="Fresh", date=datetime.now(UTC) - timedelta(minutes=1), tags=["fresh"]
    )
    failure = wait_for(lambda: events(service.output(), "rebuild.failed"), 10, "the failed write")[0]
    assert failure["step"] == "write" and "No space left on device" in failure["error"], failure
    wait_for(lambda: smtp_server.messages_to("reader@example.org"), 15, "the announcement", interval=0.1)
    assert "Fresh" in smtp_server.messages_to("reader@example.org")[0].message["Subject"]
    assert rss_titles(service) == ["Big"], "the last complete feed is still served"

    # Space comes back: the retry writes the feeds without any post being saved.
    filler.unlink()
    wait_for(
        lambda: rss_titles(service) == ["Fresh", "Big"], 40, "the feeds after space came back", interval=0.2
    )

    # Full again; removing the big post frees its tag feeds first, which makes room for the rest.
    fill(small_disk)
    big.unlink()
    wait_for(lambda: rss_titles(service) == ["Fresh"], 40, "the feeds without the removed post", interval=0.2)
    assert not (small_disk / "tags" / "a").exists()
    assert httpx.get(service.url("/tags/fresh/rss.xml"), timeout=2).status_code == 200
    assert len(smtp_server.received) == 1, "nothing was announced twice"
    assert service.stop() == 0


def test_feedsvc_build_on_a_full_disk_says_so_exits_1_and_leaves_the_feeds_whole(tmp_path, small_disk):
    config = write_config(tmp_path)
    write_post(tmp_path / "posts", "one.md", title="One", date=datetime(2025, 1, 1, tzinfo=UTC), tags=["x"])
    command = [sys.executable, "-m", "feedsvc", "build", "--config", str(config)]
    assert subprocess.run(command, cwd=tmp_path, capture_output=True, check=False).returncode == 0
    before = (small_disk / "rss.xml").read_bytes()

    fill(small_disk)
    write_post(tmp_path / "posts", "two.md", title="Two", date=datetime(2025, 1, 2, tzinfo=UTC), tags=["y"])
    built = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert built.returncode == 1
    assert "feeds not written" in built.stderr and "No space left on device" in built.stderr, built.stderr
    assert "Traceback" not in built.stderr
    assert (small_disk / "rss.xml").read_bytes() == before
    assert not list(small_disk.rglob("*.tmp")), "no partial file is left behind"

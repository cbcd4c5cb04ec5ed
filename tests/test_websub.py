"""WebSub pings against a real local HTTP server standing in for the hub, and the rebuild's outputs around them."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port, write_post

from feedsvc.outputs import EVERYTHING, Rebuild, run_outputs
from feedsvc.outputs.digests import DigestsOutput
from feedsvc.outputs.websub import HubPinger, feed_urls
from feedsvc.posts import Collection
from feedsvc.store import announcements, open_engine


@dataclass
class Hub:
    """Records every ping; answers each with the next status in `replies` (then 204)."""

    url: str = ""
    pings: list[dict[str, list[str]]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    replies: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def hub() -> Iterator[Hub]:
    state = Hub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.pings.append(urllib.parse.parse_qs(body.decode()))
                state.content_types.append(self.headers["Content-Type"])
                status = state.replies.pop(0) if state.replies else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hub"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_feed_urls_are_the_public_urls_of_changed_feed_files(make_settings):
    settings = make_settings()
    out = settings.feeds.output_dir
    written = [out / "rss.xml", out / "tags" / "go" / "atom.xml", out / "feed.json", out / "index.html"]
    assert feed_urls(settings, written) == [
        "https://blog.example.org/feed.json",
        "https://blog.example.org/rss.xml",
        "https://blog.example.org/tags/go/atom.xml",
    ]
    assert feed_urls(settings, [settings.posts.dir / "rss.xml"]) == []


def test_each_changed_feed_is_pinged_with_hub_mode_publish(hub):
    feeds = ["https://blog.example.org/rss.xml", "https://blog.example.org/atom.xml"]
    results = asyncio.run(HubPinger(hub.url).ping(feeds))
    assert results == dict.fromkeys(feeds, True)
    assert sorted(ping["hub.url"][0] for ping in hub.pings) == sorted(feeds)
    assert all(ping["hub.mode"] == ["publish"] for ping in hub.pings)
    assert set(hub.content_types) == {"application/x-www-form-urlencoded"}


def test_transient_hub_errors_are_retried_until_accepted(hub):
    hub.replies = [503, 429]
    accepted = asyncio.run(HubPinger(hub.url, backoff=0.05).ping_one("https://blog.example.org/rss.xml"))
    assert accepted is True
    assert len(hub.pings) == 3


def test_a_refusing_hub_is_not_asked_again(hub, caplog):
    hub.replies = [400]
    accepted = asyncio.run(HubPinger(hub.url, backoff=0.05).ping_one("https://blog.example.org/rss.xml"))
    assert accepted is False
    assert len(hub.pings) == 1
    assert "websub.refused" in caplog.text


def test_an_unreachable_hub_gives_up_after_the_configured_attempts(caplog):
    caplog.set_level(logging.INFO, "feedsvc.outputs.websub")
    pinger = HubPinger(f"http://127.0.0.1:{free_port()}/hub", attempts=3, backoff=0.02, timeout=1)
    assert asyncio.run(pinger.ping_one("https://blog.example.org/rss.xml")) is False
    assert caplog.text.count("websub.retry") == 2
    assert "websub.gave_up" in caplog.text


def test_feedsvc_build_pings_the_hub_for_the_feeds_it_changed(hub, make_settings):
    settings = make_settings(feeds={"websub_hub": hub.url})
    write_post(settings.posts.dir, "go.md", title="On Go", tags=["go"], date=datetime.now(UTC) - timedelta(hours=1))

    def build() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "feedsvc", "build", "--config", str(settings.config_path)],
            capture_output=True, text=True, timeout=60, check=False,
        )

    first = build()
    assert first.returncode == 0, first.stderr
    pinged = sorted(url for ping in hub.pings for url in ping["hub.url"])
    assert pinged == [
        f"https://blog.example.org/{path}"
        for path in ("atom.xml", "feed.json", "rss.xml", "tags/go/atom.xml", "tags/go/feed.json", "tags/go/rss.xml")
    ]
    assert {mode for ping in hub.pings for mode in ping["hub.mode"]} == {"publish"}
    assert "websub: 6" in first.stdout
    assert build().returncode == 0
    assert len(hub.pings) == 6  # nothing changed: nothing to tell the hub


class Failing:
    """An output that raises, as one whose store or service is down does."""

    name = "failing"
    reacts_to = "posts"
    detached = False

    def wanted(self, settings) -> bool:
        return True

    async def run(self, rebuild: Rebuild) -> int:
        raise ConnectionError("the other end is down")


def test_an_output_that_fails_does_not_keep_the_next_one_from_running(make_settings):
    settings = make_settings()
    write_post(settings.posts.dir, "one.md", title="One", date=datetime.now(UTC) - timedelta(hours=1))
    engine = open_engine(settings.store.database_url)
    try:
        rebuild = Rebuild(settings, engine, datetime.now(UTC), Collection(settings).scan())
        outcome = asyncio.run(run_outputs(rebuild, EVERYTHING, outputs=(Failing(), DigestsOutput())))
        assert [(failed.output, failed.error) for failed in outcome.failed] == [
            ("failing", "ConnectionError: the other end is down")
        ]
        assert outcome.done == {"digests": 0}
        with engine.connect() as connection:
            assert list(announcements.identities(connection)) == [rebuild.scan.posts[0].id]
    finally:
        engine.dispose()

"""The HTTP server's fast path for feeds (`feedsvc.web.server.feed_fast_path`) against the ASGI route it stands in
for, on the production uvicorn configuration (`server_config`) and a real socket, byte for byte."""

from __future__ import annotations

import logging
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import uvicorn
from conftest import EXAMPLE_POSTS, free_port

from feedsvc import feed_readers, feeds
from feedsvc.metrics import REGISTRY
from feedsvc.web import create_app
from feedsvc.web.server import server_config

pytest.importorskip("httptools")

DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")


@pytest.fixture
def served(make_settings, monkeypatch) -> Iterator[tuple[int, object]]:
    """`feedsvc serve`'s uvicorn configuration in a thread, with the example posts' feeds: (port, app)."""
    monkeypatch.setattr(feed_readers, "FLUSH_SECONDS", 0)  # the tally is written after every request
    port = free_port()
    settings = make_settings(web={"port": port})
    shutil.copytree(EXAMPLE_POSTS, settings.posts.dir, dirs_exist_ok=True)
    feeds.build(settings)
    app = create_app(settings)
    config = server_config(app, settings, host="127.0.0.1", port=port)
    assert any(cls.__name__.startswith("FeedFastPath") for cls in config.http.__mro__)  # type: ignore[union-attr]
    # As in `feedsvc serve`, no access log: pytest hangs its capture on every logger that does not propagate
    # (again in each test phase), which uvicorn would take for an access log, and an access log takes the app's way.
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "hasHandlers", lambda: False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield port, app
    server.should_exit = True
    thread.join(10)


def exchange(port: int, requests: list[bytes]) -> list[bytes]:
    """Send `requests` at once on one connection (pipelined) and read each whole answer, the date line blanked."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(b"".join(requests))
    received = b""
    answers = []
    with connection:
        for request in requests:
            while b"\r\n\r\n" not in received:
                received += _recv(connection)
            head, _, received = received.partition(b"\r\n\r\n")
            length = re.search(rb"\r\ncontent-length: (\d+)", head)
            status = int(head.split(b" ", 2)[1])
            size = 0 if request.startswith(b"HEAD") or status == 304 or length is None else int(length.group(1))
            while len(received) < size:
                received += _recv(connection)
            body, received = received[:size], received[size:]
            answers.append(DATE.sub(b"\r\ndate: -\r\n", head + b"\r\n\r\n" + body))
        closed = b"connection: close" in answers[-1]
        if closed:
            assert connection.recv(1) == b"", "the server closes after an answer saying so"
    return answers


def _recv(connection: socket.socket) -> bytes:
    data = connection.recv(65536)
    assert data, "the server closed the connection before answering"
    return data


def request(method: str, path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _etag(port: int, path: str, *headers: str) -> str:
    (answer,) = exchange(port, [request("GET", path, *headers)])
    return re.search(rb"\r\netag: ([^\r]+)", answer).group(1).decode()


# Each case twice: for the feed's own path (the fast path) and with an empty query, which the fast path leaves to
# the ASGI route (same path for the app: `/rss.xml?` is `/rss.xml` with no query).
CASES: list[tuple[str, Callable[[int], list[tuple[str, str, tuple[str, ...], str]]]]] = [
    ("plain GET", lambda port: [("GET", "/rss.xml", (), "1.1")]),
    ("gzip GET", lambda port: [("GET", "/atom.xml", ("Accept-Encoding: br, gzip;q=0.5",), "1.1")]),
    ("HEAD", lambda port: [("HEAD", "/feed.json", (), "1.1"), ("HEAD", "/rss.xml", ("Accept-Encoding: gzip",), "1.1")]),
    ("304 by ETag", lambda port: [("GET", "/rss.xml", (f"If-None-Match: W/{_etag(port, '/rss.xml')}",), "1.1")]),
    (
        "304 gzip by ETag",
        lambda port: [("GET", "/rss.xml", ("Accept-Encoding: gzip", f"If-None-Match: {_etag(port, '/rss.xml', 'Accept-Encoding: gzip')}"), "1.1")],
    ),
    ("304 by date", lambda port: [("GET", "/atom.xml", ("If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT",), "1.1")]),
    ("200 by old date", lambda port: [("GET", "/atom.xml", ("If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT",), "1.1")]),
    ("ETag that does not match", lambda port: [("GET", "/rss.xml", ('If-None-Match: "other"',), "1.1")]),
    (
        "pipelined, then Connection: close",
        lambda port: [("GET", "/rss.xml", (), "1.1"), ("HEAD", "/atom.xml", (), "1.1"), ("GET", "/feed.json", ("Connection: close",), "1.1")],
    ),
    ("HTTP/1.0", lambda port: [("GET", "/rss.xml", (), "1.0")]),
]


@pytest.mark.parametrize("case", [case for case, _ in CASES])
def test_the_fast_path_answers_byte_for_byte_as_the_asgi_route(served, case):
    port, _ = served
    plan = dict(CASES)[case](port)
    fast = exchange(port, [request(method, path, *headers, version=version) for method, path, headers, version in plan])
    routed = exchange(port, [request(method, path + "?", *headers, version=version) for method, path, headers, version in plan])
    assert fast == routed
    assert all(answer.startswith((b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 304 Not Modified\r\n")) for answer in fast)


def test_what_is_not_a_feed_read_goes_to_the_app(served):
    port, _ = served
    missing, refused, home = exchange(port, [
        request("GET", "/tags/no-such-tag/rss.xml"),
        request("POST", "/rss.xml", "Content-Length: 0"),
        request("GET", "/", "Connection: close"),
    ])
    assert missing.startswith(b"HTTP/1.1 404 ")
    assert refused.startswith(b"HTTP/1.1 405 ") and b"\r\nallow: GET, HEAD\r\n" in refused
    assert home.startswith(b"HTTP/1.1 200 OK\r\n") and b"csrf" in home.lower()
    # A feed read pipelined behind a page the app is answering waits its turn, in order.
    page, feed = exchange(port, [request("GET", "/healthz"), request("GET", "/rss.xml", "Connection: close")])
    assert page.startswith(b"HTTP/1.1 200 OK\r\n") and b'"status"' in page
    assert feed.startswith(b"HTTP/1.1 200 OK\r\n") and b"<rss" in feed


def test_fast_answers_are_counted_and_tallied_by_reader(served):
    port, app = served
    engine = app.state.web.engine  # type: ignore[attr-defined]
    labels = {"method": "GET", "route": "feed", "status": "200"}
    counted = REGISTRY.get_sample_value("feedsvc_http_requests_total", labels) or 0
    exchange(port, [
        request("GET", "/rss.xml", "User-Agent: Feedbin feed-id:7 - 42 subscribers"),
        request("GET", "/rss.xml", "User-Agent: plain-reader/1.0", "X-Forwarded-For: 192.0.2.7"),
        request("GET", "/rss.xml", "User-Agent: plain-reader/1.0", "X-Forwarded-For: 192.0.2.8", "Connection: close"),
    ])
    deadline = time.monotonic() + 10
    while True:
        audiences = {audience.feed: audience for audience in feed_readers.audiences(engine, datetime.now(UTC))}
        rss = audiences.get("/rss.xml")
        # Two addresses forwarded by the trusted local proxy are two readers; Feedbin states its own count.
        if rss is not None and rss.readers == [("Feedbin", 42)] and rss.direct == 2:
            break
        assert time.monotonic() < deadline, audiences
        time.sleep(0.05)
    assert REGISTRY.get_sample_value("feedsvc_http_requests_total", labels) == counted + 3


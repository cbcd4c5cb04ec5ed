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
from support import MemoryTransport

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
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        answers = exchange_on(connection, requests)
        closed = b"connection: close" in answers[-1]
        if closed:
            assert connection.recv(1) == b"", "the server closes after an answer saying so"
    return answers


def exchange_on(connection: socket.socket, requests: list[bytes]) -> list[bytes]:
    """`exchange` on an open connection."""
    connection.sendall(b"".join(requests))
    received = b""
    answers = []
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
    # Kept alive by llhttp, closed by uvicorn (HTTP/1.0): the version is asked for when such a header is there.
    ("HTTP/1.0, keep-alive asked", lambda port: [("GET", "/rss.xml", ("Connection: keep-alive",), "1.0")]),
    ("HTTP/1.0, Proxy-Connection", lambda port: [("HEAD", "/rss.xml", ("Proxy-Connection: keep-alive",), "1.0")]),
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



def test_fast_answers_are_in_the_metrics_scraped_right_after_them(served):
    port, _ = served
    line = re.compile(rb'\nfeedsvc_http_requests_total\{method="HEAD",route="feed",status="200"\} ([\d.]+)\n')

    def scraped() -> float:
        (answer,) = exchange(port, [request("GET", "/metrics", "Connection: close")])
        found = line.search(answer)
        return float(found.group(1)) if found else 0.0

    before = scraped()
    exchange(port, [request("HEAD", "/rss.xml"), request("HEAD", "/atom.xml", "Connection: close")])
    assert scraped() == before + 2


@pytest.fixture
def short_keep_alive(monkeypatch):
    from feedsvc.web import server

    monkeypatch.setattr(server, "KEEP_ALIVE_SECONDS", 1)


def test_keep_alive_closes_an_idle_connection_a_timeout_after_its_last_answer(short_keep_alive, served):
    """uvicorn's keep-alive timeout, with the check that stays pending across answers: a connection answered again
    a moment ago (by the fast path or by the app) is kept its whole timeout, and closed once that is over."""
    port, _ = served
    for first, last in [("/rss.xml", "/healthz"), ("/healthz", "/atom.xml")]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:

            def answered(path: str, connection: socket.socket = connection) -> None:
                connection.sendall(request("HEAD", path))
                received = b""
                while b"\r\n\r\n" not in received:
                    received += _recv(connection)
                assert received.startswith(b"HTTP/1.1 200 OK\r\n")

            answered(first)
            time.sleep(0.7)
            answered(last)  # the check armed at the first answer fires 0.3 s from now, and waits on
            last_answer = time.monotonic()
            connection.settimeout(3)
            assert connection.recv(1) == b"", last
            assert 0.9 <= time.monotonic() - last_answer <= 1.6, last


def test_keep_alive_never_closes_a_connection_while_a_request_comes_in(short_keep_alive, served):
    port, _ = served
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        (answer,) = exchange_on(connection, [request("HEAD", "/rss.xml")])
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        time.sleep(0.5)
        connection.sendall(b"HEAD /rss.xml HTTP/1.1\r\n")
        for _ in range(6):  # past the keep-alive timeout since the answer, the request's headers still coming
            time.sleep(0.2)
            connection.sendall(b"X-Trickle: a\r\n")
        connection.sendall(b"Host: x\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += _recv(connection)
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_request_the_app_answers_gets_the_scope_uvicorn_makes(tmp_path):
    """In-process, the same requests to uvicorn's httptools protocol and to the fast path's: every request that is
    not a plain feed read reaches the app with an equal scope and body, and the bytes written are the same."""
    import asyncio

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from feedsvc.web.feed_server import FeedFiles, FeedRoute
    from feedsvc.web.server import feed_fast_path

    (tmp_path / "rss.xml").write_text("<rss/>", encoding="utf-8")
    requests = [
        b"GET /rss.xml?page=2 HTTP/1.1\r\nHost: x\r\nUser-Agent: reader  \r\nX-Pad: a\t \r\n\r\n",
        b"GET /rss%2Exml HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /rss.xml HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
        b"HEAD /rss.xml HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET /rss.xml HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET /page HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        b"GET http://x/rss.xml HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.9\r\nX-Forwarded-Proto: https\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
    ]

    def run(protocol_class: type) -> tuple[list[object], list[bytes]]:
        seen: list[object] = []

        async def app(scope, receive, send) -> None:
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            seen.append((dict(scope), body))
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        async def drive() -> list[bytes]:
            config = uvicorn.Config(app, log_config=None, access_log=False, ws="none", root_path="/blog")
            config.load()
            written = []
            for data in requests:  # each on a connection of its own (the last one closes)
                state = ServerState()
                state.default_headers = [(b"date", b"Sat, 05 Dec 2026 22:00:00 GMT")]
                protocol = protocol_class(config=config, server_state=state, app_state={"shared": "state"})
                transport = MemoryTransport(keep=True)
                protocol.connection_made(transport)
                protocol.data_received(data)
                while protocol.cycle is not None and not protocol.cycle.response_complete:  # noqa: ASYNC110
                    await asyncio.sleep(0)
                protocol.connection_lost(None)
                written.append(b"".join(transport.written))
            return written

        return seen, asyncio.run(drive())

    fast = feed_fast_path(HttpToolsProtocol, FeedRoute(FeedFiles(tmp_path)))
    uvicorns, fasts = run(HttpToolsProtocol), run(fast)
    assert len(uvicorns[0]) == len(requests)
    assert fasts == uvicorns

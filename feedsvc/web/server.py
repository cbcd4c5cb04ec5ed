"""The HTTP server: uvicorn, with the limits a port open to the internet needs.

uvicorn closes a connection that stays silent after an answer, but not one that trickles its request headers
a byte at a time (slowloris): each such connection holds a file descriptor for ever, and about a thousand of
them exhaust the usual open-file limit, after which no one else gets in. Here every connection must finish
its request headers within `[web] header_timeout` of connecting (or of its previous answer), and the number
of open connections stays under `[web] max_connections`, below the open-file limit: a new connection past it
closes the one that has waited longest for its client (its headers, or its request body trickled the same way),
which is an attacker's, never a request being answered.

Feed files are most of the traffic. With httptools (the default), a GET or HEAD of a feed is answered inside
the protocol, from the parser's callbacks, with one write of the in-memory answer (`feed_fast_path`): uvicorn's
ASGI cycle around the same answer (a task, two `send` messages, the headers checked again) was most of the CPU
of a feed request (benchmarks/README.md, serving.py). The answer is the ASGI route's own (`feed_server.choose_answer`), written the way
uvicorn writes it; anything else — another path or method, a body, a pipelined request behind one the app is
still answering, an access log — goes to the app as before.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from feedsvc.config import Settings
from feedsvc.web.feed_server import FeedRoute, answer_for

# asyncio accepts up to `backlog` waiting connections in one turn of its loop, and a connection is seen
# (`connection_made`) only two turns later, so up to three bursts are open unseen; a connection closed to make
# room releases its descriptor one turn after that. The open-file limit must leave room for four bursts, so
# the burst is kept small (the kernel queues a few more; a client waits for the next turn, a millisecond).
ACCEPT_BURST = 64
# Besides the connections it answers, the process holds files of its own: the store, the watcher, the build
# child's pipes, logs, the feed files being sent, a tally flush. Its outgoing connections (SMTP, fediverse
# deliveries) are counted from their settings.
OWN_DESCRIPTORS = 64
# Seconds a connection may stay idle after an answer (uvicorn's own keep-alive timeout).
KEEP_ALIVE_SECONDS = 5


def connection_limit(settings: Settings) -> int:
    """`[web] max_connections`, or when 0, what the open-file limit leaves after the process's own."""
    if settings.web.max_connections:
        return settings.web.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    outgoing = settings.mail.connections + settings.fediverse.concurrency
    return max(soft - 4 * ACCEPT_BURST - OWN_DESCRIPTORS - outgoing, 32)


class PendingCheck:
    """A connection's deadline, `timeout` after `since`, kept by one pending timer: a timer made and cancelled per
    request was a tenth of the instructions of a feed request's fast path. A connection kept busy finds its check
    pending (`arm` only moves `since`); when the timer fires it waits for the rest if `since` moved on, ends if
    `since` is None (the next `arm` starts it again), and calls `expired` once the deadline has passed."""

    __slots__ = ("_expired", "_loop", "_timeout", "_timer", "since")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._timeout = timeout
        self._expired = expired
        self._timer: asyncio.TimerHandle | None = None
        self.since: float | None = None

    def arm(self) -> None:
        self.since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_later(self._timeout, self._fire)

    def cancel(self) -> None:
        self.since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self.since is None:
            return
        left = self.since + self._timeout - self._loop.time()
        if left > 0:
            self._timer = self._loop.call_later(left, self._fire)
        else:
            self._expired()


def guarded_protocol(base: type[Any], header_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol `base` with a deadline for request headers and a bound on open connections."""

    class GuardedHTTP(base):
        # The header deadline (`PendingCheck`): armed when the server starts waiting for this client (its headers,
        # or its body trickled the same way); its `since` is None while the request is being answered.
        _headers: PendingCheck

        @property
        def waiting_since(self) -> float | None:
            """Since when the server has been waiting for this client; None while its request is answered."""
            return self._headers.since

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._headers = PendingCheck(self.loop, header_timeout, self._headers_overdue)
            self._headers.arm()
            if len(self.connections) > max_connections:
                self._make_room()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._between_requests() and not self.cycle.more_body:
                self._headers.since = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._between_requests() and not self.transport.is_closing():
                self._headers.arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._headers.cancel()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _headers_overdue(self) -> None:
            # A request read or answered meanwhile is not cut short: its answer arms the next check.
            if self._between_requests() and not self.transport.is_closing():
                self.transport.close()

        def _make_room(self) -> None:
            waiting = [c for c in self.connections if c is not self and getattr(c, "waiting_since", None) is not None]
            oldest = min(waiting, key=lambda c: c.waiting_since, default=self)
            oldest.transport.close()
            oldest._headers.cancel()

    GuardedHTTP.__name__ = f"Guarded{base.__name__}"
    return GuardedHTTP


def feed_fast_path(base: type[Any], route: FeedRoute) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol `base` answering GET and HEAD of feed files itself (see the module doc)."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE

    files = route.files
    # The server's default headers (its `date`) as written, for the list it last made: it makes a new one each
    # second, so they are joined once a second instead of for every answer.
    defaults: list[Any] = [None, b""]

    class FeedFastPath(base):
        _answered = False  # the current request was answered here: the app never sees it
        # The keep-alive deadline (`PendingCheck`): armed at each answer, its `since` None from the next request's
        # first bytes. uvicorn makes a timer at each answer and cancels it at the next request's first bytes.
        _idle: PendingCheck | None = None

        def on_message_begin(self) -> None:
            # What uvicorn's on_message_begin resets, without its scope: that is made for a request the app answers
            # (`_to_app`). A feed read answered here needs none, and making it was a tenth of the instructions of one.
            self.url = b""
            self.expect_100_continue = False
            self.headers: list[tuple[bytes, bytes]] = []
            self._answered = False

        def on_headers_complete(self) -> None:
            if self.transport.is_closing():
                # Pipelined behind a `Connection: close` answered here: uvicorn never answers such a request
                # either (the closed connection's queue is never started).
                self._answered = True
            elif not self._answer_feed():
                self._to_app()

        def _to_app(self) -> None:
            # uvicorn's scope, made by its own on_message_begin, then its on_headers_complete: the app's request
            # is the one uvicorn alone makes, with the URL and headers received.
            url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()
            self.url, self.expect_100_continue = url, expect_100_continue
            self.headers = self.scope["headers"] = headers
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._answered:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if not self._answered:
                super().on_message_complete()

        def _answer_feed(self) -> bool:
            method = self.parser.get_method()
            if method not in (b"GET", b"HEAD") or self.access_log or self.expect_100_continue:
                return False
            # In order: behind a request the app is still answering, this one waits its turn there.
            if (self.cycle is not None and not self.cycle.response_complete) or self.pipeline:
                return False
            # The exact path only: a query, %-escapes or an absolute URL take the app's way.
            path = self.url.decode("latin-1")
            entry = files.get(path)
            if entry is None or self.parser.should_upgrade():
                return False
            # One pass over the headers for all that the answer and its count depend on.
            accept_encoding = if_none_match = if_modified_since = user_agent = None
            forwarded: list[bytes] = []
            connection = False
            for name, value in self.headers:
                if name == b"user-agent":
                    if user_agent is None:
                        user_agent = value
                elif name == b"accept-encoding":
                    accept_encoding = value
                elif name == b"if-none-match":
                    if_none_match = value
                elif name == b"if-modified-since":
                    if_modified_since = value
                elif name == b"x-forwarded-for":
                    forwarded.append(value)
                elif name in (b"content-length", b"transfer-encoding"):
                    return False
                elif name in (b"connection", b"proxy-connection"):
                    connection = True
            # uvicorn's `http_version != "1.0" and should_keep_alive()`. llhttp keeps an HTTP/1.0 request alive only
            # for a `keep-alive` token in one of these two headers, so without them the version need not be asked
            # for (httptools formats it as a string: 2,300 instructions, a twentieth of a 304).
            keep_alive = self.parser.should_keep_alive() and not (
                connection and self.parser.get_http_version() == "1.0"
            )
            answer = answer_for(entry, accept_encoding, if_none_match, if_modified_since)
            server_defaults = self.server_state.default_headers
            if server_defaults is not defaults[0]:
                defaults[:] = server_defaults, b"".join(b"%s: %s\r\n" % header for header in server_defaults)
            end = b"\r\n" if keep_alive else b"connection: close\r\n\r\n"
            head = b"".join((STATUS_LINE[answer.status], defaults[1], answer.header_lines, end))
            if method == b"GET" and answer.body:
                self.transport.writelines((head, answer.body))
            else:
                self.transport.write(head)
            self._answered = True
            if not keep_alive:
                self.transport.close()
            client = self.client[0] if self.client else ""
            if forwarded:
                client = self._forwarded_client(client, forwarded)
            route.answered("GET" if method == b"GET" else "HEAD", path, answer.status, client, user_agent or b"")
            self.on_response_complete()
            return True

        def _forwarded_client(self, client: str, forwarded: list[bytes]) -> str:
            # What uvicorn's proxy middleware makes of the scope's client behind a trusted proxy (the tally
            # counts readers by address).
            if isinstance(self.app, ProxyHeadersMiddleware) and self.client and client in self.app.trusted_hosts:
                host, _ = self.app.trusted_hosts.get_trusted_client_address(b", ".join(forwarded).decode("latin1"))
                if host:
                    return host
            return client

        # The closing is uvicorn's: after the same idle time since the last answer, never during a request.
        def _unset_keepalive_if_required(self) -> None:
            if self._idle is not None:
                self._idle.since = None  # bytes of a request came in (data_received)

        def on_response_complete(self) -> None:
            # uvicorn's, but the keep-alive check above.
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
            else:
                if self._idle is None:
                    self._idle = PendingCheck(self.loop, self.timeout_keep_alive, self.timeout_keep_alive_handler)
                self._idle.arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._idle is not None:
                self._idle.cancel()
            super().connection_lost(exc)

    FeedFastPath.__name__ = f"FeedFastPath{base.__name__}"
    return FeedFastPath


def server_config(app: ASGIApp, settings: Settings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of `feedsvc run` and `feedsvc serve`; `options` are further uvicorn.Config
    arguments (host, port, timeout_graceful_shutdown…)."""
    web = settings.web
    base: type[Any] = AutoHTTPProtocol
    route = getattr(getattr(app, "state", None), "feed_route", None)
    if route is not None and base.__name__ == "HttpToolsProtocol":
        base = feed_fast_path(base, route)
    return uvicorn.Config(
        app,
        http=guarded_protocol(base, web.header_timeout, connection_limit(settings)),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=ACCEPT_BURST,
        log_config=None,
        access_log=False,
        server_header=False,
        **options,
    )

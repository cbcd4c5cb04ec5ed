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
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from feedsvc.config import Settings
from feedsvc.web.feed_server import FeedRoute, choose_answer

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


def guarded_protocol(base: type[Any], header_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol `base` with a deadline for request headers and a bound on open connections."""

    class GuardedHTTP(base):
        # The pending check of the header deadline: one per connection at most, armed when the server starts
        # waiting for headers and none is pending. A timer made and cancelled per request was a tenth of the
        # instructions of a feed request's fast path; a connection kept busy now finds its check pending, and the
        # check moves on to the last answer's deadline when it fires.
        _deadline: asyncio.TimerHandle | None = None
        # Since when the server has been waiting for this client (its headers or its body); None while the
        # request is being answered.
        waiting_since: float | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._await_headers()
            if len(self.connections) > max_connections:
                self._make_room()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if not self._between_requests() and not self.cycle.more_body:
                self.waiting_since = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._between_requests() and not self.transport.is_closing():
                self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_deadline()
            self.waiting_since = None
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _await_headers(self) -> None:
            self.waiting_since = self.loop.time()
            if self._deadline is None:
                self._deadline = self.loop.call_later(header_timeout, self._check_deadline)

        def _cancel_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _check_deadline(self) -> None:
            self._deadline = None
            if not self._between_requests() or self.waiting_since is None or self.transport.is_closing():
                return  # the headers are in: a request is being read or answered; its answer arms the next check
            left = self.waiting_since + header_timeout - self.loop.time()
            if left > 0:  # requests were answered since this check was armed: the deadline moved on
                self._deadline = self.loop.call_later(left, self._check_deadline)
            else:
                self.transport.close()

        def _make_room(self) -> None:
            waiting = [c for c in self.connections if c is not self and getattr(c, "waiting_since", None) is not None]
            oldest = min(waiting, key=lambda c: c.waiting_since, default=self)
            oldest.transport.close()
            oldest.waiting_since = None

    GuardedHTTP.__name__ = f"Guarded{base.__name__}"
    return GuardedHTTP


def feed_fast_path(base: type[Any], route: FeedRoute) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol `base` answering GET and HEAD of feed files itself (see the module doc)."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE

    class FeedFastPath(base):
        _answered = False  # the current request was answered here: the app never sees it

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._answered = False

        def on_headers_complete(self) -> None:
            if self.transport.is_closing():
                # Pipelined behind a `Connection: close` answered here: uvicorn never answers such a request
                # either (the closed connection's queue is never started).
                self._answered = True
            elif not self._answer_feed():
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
            entry = route.files.get(self.url.decode("latin-1"))
            if entry is None or self.parser.should_upgrade():
                return False
            for name, _ in self.headers:
                if name in (b"content-length", b"transfer-encoding"):
                    return False
            http_version = self.parser.get_http_version()
            keep_alive = http_version != "1.0" and self.parser.should_keep_alive()
            answer = choose_answer(entry, self.headers)
            lines = [STATUS_LINE[answer.status]]
            for name, value in self.server_state.default_headers:
                lines += [name, b": ", value, b"\r\n"]
            lines.append(answer.header_lines)
            if not keep_alive:
                lines.append(b"connection: close\r\n")
            lines.append(b"\r\n")
            head = b"".join(lines)
            if method == b"GET" and answer.body:
                self.transport.writelines((head, answer.body))
            else:
                self.transport.write(head)
            self._answered = True
            if not keep_alive:
                self.transport.close()
            scope = self.scope
            scope["method"] = method.decode("ascii")
            scope["http_version"] = http_version
            scope["path"] = self.url.decode("latin-1")
            self._forwarded_client(scope)
            route.served(scope, answer.status)
            self.on_response_complete()
            return True

        def _forwarded_client(self, scope: dict[str, Any]) -> None:
            # What uvicorn's proxy middleware makes of the scope's client behind a trusted proxy (the tally
            # counts readers by address).
            forwarded = [value for name, value in scope["headers"] if name == b"x-forwarded-for"]
            if forwarded and isinstance(self.app, ProxyHeadersMiddleware):
                client = scope.get("client")
                if client and client[0] in self.app.trusted_hosts:
                    host, port = self.app.trusted_hosts.get_trusted_client_address(b", ".join(forwarded).decode("latin1"))
                    if host:
                        scope["client"] = (host, port)

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

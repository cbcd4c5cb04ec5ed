"""The HTTP server: uvicorn, with the limits a port open to the internet needs.

uvicorn closes a connection that stays silent after an answer, but not one that trickles its request headers
a byte at a time (slowloris): each such connection holds a file descriptor for ever, and about a thousand of
them exhaust the usual open-file limit, after which no one else gets in. Here every connection must finish
its request headers within `[web] header_timeout` of connecting (or of its previous answer), and the number
of open connections stays under `[web] max_connections`, below the open-file limit: a new connection past it
closes the one that has waited longest for its client (its headers, or its request body trickled the same way),
which is an attacker's, never a request being answered.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from feedsvc.config import Settings

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
            if not self._between_requests():
                self._cancel_deadline()
                if not self.cycle.more_body:
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
            self._cancel_deadline()
            self.waiting_since = self.loop.time()
            self._deadline = self.loop.call_later(header_timeout, self._too_slow)

        def _cancel_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self._between_requests() and not self.transport.is_closing():
                self.transport.close()

        def _make_room(self) -> None:
            waiting = [c for c in self.connections if c is not self and getattr(c, "waiting_since", None) is not None]
            oldest = min(waiting, key=lambda c: c.waiting_since, default=self)
            oldest.transport.close()
            oldest.waiting_since = None

    GuardedHTTP.__name__ = f"Guarded{base.__name__}"
    return GuardedHTTP


def server_config(app: ASGIApp, settings: Settings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of `feedsvc run` and `feedsvc serve`; `options` are further uvicorn.Config
    arguments (host, port, timeout_graceful_shutdown…)."""
    web = settings.web
    return uvicorn.Config(
        app,
        http=guarded_protocol(AutoHTTPProtocol, web.header_timeout, connection_limit(settings)),
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        backlog=ACCEPT_BURST,
        log_config=None,
        access_log=False,
        server_header=False,
        **options,
    )

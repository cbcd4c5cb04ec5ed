"""The HTTP server under a slowloris attack: a real `feedsvc serve` / `feedsvc run` subprocess under the common
1,024 open-file limit, 1,100 real sockets trickling request headers, and real requests beside them."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import free_port, start_feedsvc
from uvicorn.protocols.http.h11_impl import H11Protocol

from feedsvc.web import create_app
from feedsvc.web.server import guarded_protocol

OPEN_FILES = 1024
ATTACKERS = 1100
HEADER_TIMEOUT = 3.0


def _start(tmp_path: Path, command: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    config = {
        "site": {"title": "Slow Blog", "url": "https://blog.example.org"},
        "web": {"secret_key": "slow-secret-of-at-least-thirty-two-bytes", "header_timeout": HEADER_TIMEOUT},
        "log": {"format": "json"},
    }
    process, port, log = start_feedsvc(tmp_path, command, config)
    # The common default limit, set before the service gets to open anything much.
    resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, port, log
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"{command} not healthy:\n{log.read_text()}")


class Slowloris:
    """Keeps `count` connections sending one more header line every second, reconnecting those the server
    closes (as the attack tools do); counts the closes."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.sockets = [self._connect() for _ in range(count)]
        self.closed_by_server = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: blog.example.org\r\n")
            return sock
        except OSError:
            return None

    def _trickle(self) -> None:
        while not self.stop.wait(1.0):
            for index, sock in enumerate(self.sockets):
                if self.stop.is_set():
                    return
                try:
                    if sock is None:
                        raise OSError
                    sock.sendall(b"X-Trickle: a\r\n")
                except OSError:
                    if sock is not None:
                        sock.close()
                        self.closed_by_server += 1
                    self.sockets[index] = self._connect()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        for sock in self.sockets:
            if sock is not None:
                sock.close()


@pytest.mark.parametrize("command", ["serve", "run"])
def test_trickling_headers_do_not_lock_real_readers_out(tmp_path, command):
    process, port, log = _start(tmp_path, command)
    attack = Slowloris(port, ATTACKERS)
    try:
        attack.thread.start()
        outcomes: list[tuple[int | str, float]] = []
        for _ in range(10):
            started = time.monotonic()
            try:
                status: int | str = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
            except httpx.TransportError as exc:
                status = type(exc).__name__
            outcomes.append((status, time.monotonic() - started))
            time.sleep(0.5)
        # The attack ends first: while it goes on, the server may close the connection below earlier than its
        # header timeout, as the one waiting longest for its headers when it is full (what it does to attackers).
        attack.close()
        # A connection that keeps trickling is closed once its headers are late, whatever it sends meanwhile.
        slow = socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT + 5)
        slow.sendall(b"GET / HTTP/1.1\r\n")
        opened = time.monotonic()
        closed_after = None
        while time.monotonic() - opened < HEADER_TIMEOUT + 4:
            try:
                slow.sendall(b"X-Trickle: a\r\n")
                slow.settimeout(0.5)
                if slow.recv(1024) == b"":
                    closed_after = time.monotonic() - opened
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - opened
                break
        slow.close()
    finally:
        attack.close()
        process.terminate()
        process.wait(30)
    statuses = [status for status, _ in outcomes]
    print(
        f"\n{command}: {ATTACKERS} trickling sockets under RLIMIT_NOFILE={OPEN_FILES}: real requests "
        f"{statuses.count(200)}/10 answered 200, slowest {max(t for _, t in outcomes):.2f} s; "
        f"{attack.closed_by_server} attack connections closed by the server; a trickling connection was closed "
        f"after {closed_after} s (header_timeout {HEADER_TIMEOUT} s)"
    )
    assert statuses == [200] * 10, (outcomes, log.read_text()[-2000:])
    assert closed_after is not None and HEADER_TIMEOUT - 0.5 <= closed_after <= HEADER_TIMEOUT + 2
    assert attack.closed_by_server > 0
    assert "Too many open files" not in log.read_text()


@contextlib.contextmanager
def guarded_server(settings, protocol: str, header_timeout: float, max_connections: int) -> Iterator[int]:
    """The app on uvicorn in this process with the guarded `protocol` ("h11" or "httptools"); yields the port."""
    base = H11Protocol if protocol == "h11" else pytest.importorskip("uvicorn.protocols.http.httptools_impl").HttpToolsProtocol
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.web.port, log_config=None,
        http=guarded_protocol(base, header_timeout, max_connections),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield settings.web.port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.parametrize("protocol", ["h11", "httptools"])
def test_each_request_on_a_kept_alive_connection_gets_the_header_deadline_too(make_settings, protocol):
    """Both of uvicorn's HTTP implementations: the deadline holds for the first request and for the next one
    on a kept-alive connection, and never cuts a request whose headers have arrived."""
    with guarded_server(make_settings(web={"port": free_port()}), protocol, 1.0, 100) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}}"):
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        time.sleep(0.6)  # idle, then a second request, trickled
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        for _ in range(10):
            time.sleep(0.2)
            try:
                sock.sendall(b"X-Trickle: a\r\n")
            except OSError:
                break
        sock.settimeout(3)
        assert sock.recv(4096) == b""
        assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("protocol", ["h11", "httptools"])
def test_the_header_deadline_counts_from_the_last_answer_not_from_the_connection(make_settings, protocol):
    """A kept-alive connection answered a moment ago gets its whole header deadline for the next request, however
    long ago it connected (the check armed at the connection moves on), and is still closed once that is over."""
    with guarded_server(make_settings(web={"port": free_port()}), protocol, 1.0, 100) as port, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        connected = time.monotonic()

        def answered() -> None:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}}"):
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")

        answered()
        time.sleep(0.7)
        answered()  # 0.7 s after connecting: the next request's deadline ends 1.7 s after it
        last_answer = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        sock.settimeout(0.2)
        closed_at = None
        while closed_at is None and time.monotonic() - last_answer < 3:
            try:
                sock.sendall(b"X-Trickle: a\r\n")
                if sock.recv(4096) == b"":
                    closed_at = time.monotonic()
            except TimeoutError:
                continue
            except OSError:
                closed_at = time.monotonic()
        assert closed_at is not None, "a trickled request outlived its header deadline"
        assert closed_at - connected > 1.3, "the deadline was counted from the connection, not from the last answer"
        assert 0.9 <= closed_at - last_answer <= 1.8


@pytest.mark.parametrize("protocol", ["h11", "httptools"])
def test_trickled_request_bodies_make_room_too(make_settings, protocol):
    """Complete headers, then a body a byte at a time: at the connection limit these go first, not real requests."""
    settings = make_settings(web={"port": free_port(), "subscribe_rate_per_client": 1000})
    with guarded_server(settings, protocol, 30.0, 20) as port:
        attackers = []
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(
                b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            attackers.append(sock)
            time.sleep(0.01)
        try:
            statuses = [httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code for _ in range(5)]
        finally:
            for sock in attackers:
                sock.close()
    assert statuses == [200] * 5

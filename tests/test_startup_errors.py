"""Start-up failures are one line saying what to do, with exit status 1 (2 for the configuration), and a
traceback only with --debug: real subprocesses, a real unreachable port, a real PostgreSQL coming up late, a
data folder the service's user cannot write."""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from sqlalchemy.engine import make_url
from test_service import services, wait_for, write_config  # noqa: F401 (the `services` fixture)

from feedsvc.store.engine import StoreUnavailable, connect, create_store_engine


def _problem_lines(output: str) -> list[str]:
    """What the process printed besides its JSON log lines."""
    return [line for line in output.splitlines() if line.strip() and not line.startswith("{")]


def _run(*args: str, cwd: Path, user: tuple[int, int] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "feedsvc", *args]
    if user:
        command = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", *command]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def _unreachable_postgres_url() -> str:
    return f"postgresql+psycopg://feedsvc:a-db-password@127.0.0.1:{free_port()}/feedsvc"


def test_an_unreachable_store_is_one_line_after_the_bounded_wait(tmp_path):
    config = write_config(tmp_path, store={"url": _unreachable_postgres_url(), "connect_timeout": 1.5})
    started = time.monotonic()
    result = _run("run", "--config", str(config), "--port", str(free_port()), cwd=tmp_path)
    took = time.monotonic() - started
    assert result.returncode == 1
    assert 1.5 <= took < 15, f"waited {took:.1f} s"
    problems = _problem_lines(result.stderr)
    assert len(problems) == 1, result.stderr
    assert "cannot reach the store at postgresql+psycopg://feedsvc:***@127.0.0.1:" in problems[0]
    assert "after waiting 1.5 s ([store] connect_timeout)" in problems[0]
    assert "Connection refused" in problems[0] and "is the database running" in problems[0]
    assert "Traceback" not in result.stderr and "a-db-password" not in result.stderr
    # The waiting is logged, so an operator watching the logs sees why nothing happens yet.
    waiting = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(line["event"] == "store.waiting" for line in waiting)

    debug = _run("--debug", "db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_the_bounded_wait_for_the_store_lasts_the_whole_timeout():
    """The last pause is cut to what is left of `connect_timeout`, not skipped: "after waiting 1.5 s" is true (it
    gave up after 0.75 s, once the next doubled pause would have overshot)."""
    engine = create_store_engine(_unreachable_postgres_url())
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match=r"after waiting 1\.5 s"):
            connect(engine, 1.5)
    finally:
        engine.dispose()
    assert 1.5 <= time.monotonic() - started < 3


class _LateProxy:
    """A TCP port that forwards to PostgreSQL, opened only once `open()` is called (a server still starting)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, args=(listener,), daemon=True)
        self._thread.start()

    def _serve(self, listener: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is listener:
                    client, _ = listener.accept()
                    upstream = socket.create_connection(self.target)
                    peers[client], peers[upstream] = upstream, client
                    selector.register(client, selectors.EVENT_READ)
                    selector.register(upstream, selectors.EVENT_READ)
                    continue
                if sock.fileno() == -1:  # closed a moment ago with its peer, ready in the same select
                    continue
                data = sock.recv(65536)
                if data:
                    peers[sock].sendall(data)
                    continue
                other = peers.pop(sock)
                peers.pop(other, None)
                for closing in (sock, other):
                    selector.unregister(closing)
                    closing.close()
        listener.close()
        for sock in peers:
            sock.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)


@pytest.fixture
def late_proxy(postgres_url: str) -> Iterator[tuple[_LateProxy, str]]:
    url = make_url(postgres_url)
    proxy = _LateProxy((url.host or "127.0.0.1", url.port or 5432))
    yield proxy, url.set(port=proxy.port).render_as_string(hide_password=False)
    proxy.close()


@pytest.mark.postgres
def test_a_database_still_coming_up_is_waited_for(tmp_path, services, late_proxy):  # noqa: F811
    proxy, url = late_proxy
    config = write_config(tmp_path, store={"url": url, "connect_timeout": 30})
    service = services(config)
    wait_for(lambda: '"event": "store.waiting"' in service.output(), 20, "the service to wait for the database")
    time.sleep(1.0)  # a few more refused attempts
    assert service.process.poll() is None, service.output()
    proxy.open()
    service.wait_healthy(timeout=30)
    assert service.stop() == 0


@pytest.fixture
def readable_site() -> Iterator[Path]:
    """A site folder that any user may read (pytest's own temp folders are private to their owner)."""
    with tempfile.TemporaryDirectory(prefix="feedsvc-site-") as folder:
        site = Path(folder)
        site.chmod(0o755)
        yield site


def test_a_data_folder_the_service_cannot_write_is_one_line(readable_site):
    site = readable_site
    config = write_config(site)
    (site / "subscribers").mkdir()
    user: tuple[int, int] | None = None
    if os.geteuid() == 0:
        # root writes anywhere: run feedsvc as `nobody`, who can read the site but not write its data folder.
        user = (65534, 65534)
    else:
        (site / "subscribers").chmod(0o555)
    result = _run("run", "--config", str(config), "--port", str(free_port()), cwd=site, user=user)
    assert result.returncode == 1, result.stderr
    problems = _problem_lines(result.stderr)
    assert len(problems) == 1, result.stderr
    assert f"cannot use {site / 'subscribers'}" in problems[0] and "Permission denied" in problems[0]
    assert "give that user the folder" in problems[0]
    assert "Traceback" not in result.stderr

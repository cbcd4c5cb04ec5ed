"""Helpers shared by the tests and the benchmarks (which import it as `tests.support`): a free port, waiting
for a condition with a deadline that names what was awaited, `feedsvc` run as a user runs it, and an in-memory
transport to drive an HTTP protocol with."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """The first truthy result of `condition`, polled every `interval` seconds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_feedsvc(*arguments: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m feedsvc ARGUMENTS` in `cwd`, a process of its own as a user runs it: none of the test run's
    FEEDSVC_ variables, output captured as text, the exit status left to the caller to check."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDSVC_")}
    return subprocess.run(
        [sys.executable, "-m", "feedsvc", *arguments], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def built_example(home: Path) -> Path:
    """The bundled example copied to `home` and built there by `feedsvc build`; returns `home`."""
    shutil.copytree(ROOT / "examples", home)
    built = run_feedsvc("build", cwd=home)
    assert built.returncode == 0, built.stdout + built.stderr
    return home


class MemoryTransport:
    """What uvicorn's HTTP protocols need of an asyncio transport, in memory: what is written is kept in `written`
    when `keep` (else dropped: CPU of the protocol alone)."""

    def __init__(self, keep: bool = False) -> None:
        self.closing = False
        self.keep = keep
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        if self.keep:
            self.written.append(data)

    def writelines(self, data: list[bytes]) -> None:
        if self.keep:
            self.written.extend(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

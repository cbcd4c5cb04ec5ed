"""The admin API under Schemathesis, as an attacker or a careless script would use it: a real `feedsvc serve`
subprocess on SQLite and on PostgreSQL, the `schemathesis` command against its own API description, every
check, positive and negative data, a bounded number of examples per operation."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import start_feedsvc

TOKEN = "fuzz-admin-token-of-at-least-32-bytes"
# Enough to cover each operation's coverage phase and a fuzzing run within about 30 s a backend on a slow
# machine; a fixed seed, so that a failure in CI is the same failure on a laptop (`--seed` to replay).
EXAMPLES = 100
SEED = 16
# `DELETE /api/subscribers/{id}` unsubscribes and keeps the row as a suppression (erasing needs `forget=true`),
# so the subscriber is still there afterwards by design: that check does not apply.
EXCLUDED_CHECKS = "use_after_free"


@contextmanager
def running(tmp_path: Path, command: str, store_url: str = "") -> Iterator[str]:
    """`feedsvc <command>` in a subprocess on a free port; its base URL once /healthz answers."""
    config = {
        "site": {"title": "Fuzzed Blog", "url": "https://blog.example.org"},
        "web": {"secret_key": "fuzz-secret-of-at-least-thirty-two-bytes", "admin_token": TOKEN, "subscribe_rate_per_client": 1_000_000},
        "log": {"format": "json"},
    }
    if store_url:
        config["store"] = {"url": store_url}
    process, port, log = start_feedsvc(tmp_path, command, config)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(15)


def test_schemathesis_finds_nothing(tmp_path, store_url):
    with running(tmp_path, "serve", store_url) as url:
        started = time.monotonic()
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"), "run", f"{url}/api/openapi.json",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
                "--mode", "all",
                "--max-examples", str(EXAMPLES),
                "--seed", str(SEED),
                "--workers", "1",
            ],
            capture_output=True, text=True, cwd=tmp_path, timeout=240, check=False,
        )
        took = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    summary = result.stdout[result.stdout.index("API Operations:"):]
    assert "Selected: 7/7" in summary and "Tested: 7" in summary
    assert took < 120, f"the fuzzer took {took:.0f} s"


@pytest.mark.parametrize("command", ["serve", "run"])
def test_no_server_banner(tmp_path, command):
    with running(tmp_path, command) as url:
        answers = [httpx.get(f"{url}/"), httpx.get(f"{url}/nothing-here"), httpx.put(f"{url}/subscribe")]
    for answer in answers:
        assert "server" not in answer.headers, (answer.request.url, answer.headers)

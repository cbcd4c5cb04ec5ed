"""Fediverse peers for the tests: snac2 (a real ActivityPub server) and a local inbox server.

snac2 comes from `.ci/snac2-fetch` (the next Debian release's package unpacked into `.cache/snac2`), or from
FEEDSVC_TEST_SNAC naming a snac binary; without either, the tests that need it are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedsvc.fediverse.signatures import SignatureError, verify

ROOT = Path(__file__).resolve().parent.parent
SNAC_CACHE_BINARY = ROOT / ".cache" / "snac2" / "root" / "usr" / "bin" / "snac"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def snac_binary() -> Path | None:
    named = os.environ.get("FEEDSVC_TEST_SNAC")
    candidate = Path(named) if named else SNAC_CACHE_BINARY
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def wait_until(condition, timeout: float = 20.0, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


class Snac:
    """A snac2 instance on 127.0.0.1 over plain HTTP, with one user, `alice`."""

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary = binary
        self.base = folder / "snac"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = folder / "snac.log"

    @property
    def actor(self) -> str:
        return f"http://{self.host}/alice"

    def start(self) -> None:
        answers = f"127.0.0.1\n{self.port}\n{self.host}\n\nadmin@localhost\n"
        self._run("init", str(self.base), stdin=answers)
        config_path = self.base / "server.json"
        config = json.loads(config_path.read_text())
        # Plain HTTP on loopback (snac builds its URLs with this protocol); debug level 2 logs what it receives.
        config.update(protocol="http", dbglevel=2, queue_retry_minutes=1)
        config_path.write_text(json.dumps(config))
        self._run("adduser", str(self.base), "alice", stdin="alice\n")
        self.process = subprocess.Popen(
            [str(self.binary), "httpd", str(self.base)], stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT
        )
        wait_until(self._listening, 10, message="snac to listen")

    def _listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def _run(self, *args: str, stdin: str = "") -> str:
        result = subprocess.run([str(self.binary), *args], input=stdin.encode(), capture_output=True, timeout=60, check=False)
        output = (result.stdout + result.stderr).decode(errors="replace")
        assert result.returncode == 0, f"snac {args[0]} failed: {output}"
        return output

    def command(self, name: str, *args: str) -> str:
        return self._run(name, str(self.base), "alice", *args)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def objects(self) -> list[dict[str, Any]]:
        found = []
        for path in (self.base / "object").rglob("*.json"):
            try:
                found.append(json.loads(path.read_text()))
            except (ValueError, OSError):  # being written right now
                continue
        return found

    def object_with(self, object_id: str) -> dict[str, Any] | None:
        return next((item for item in self.objects() if item.get("id") == object_id), None)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class InboxServer:
    """Local remote actors and inboxes on one uvicorn server (in a thread).

    GET /actors/<name>: an actor document (all actors share one RSA key, `private_key`, with their own key ids).
    Names in `gone` answer 410 Gone, both their actor and their inbox (a deleted account).
    POST /inbox/<name>: verifies the request's signature with the blog's public key (`blog_key_pem`) and
    records the activity; answers `status_for(name)` (202 by default) after `delay` seconds.
    """

    blog_key_pem: str = ""
    delay: float = 0.0
    # Activity type -> seconds more before answering it (an Update that takes longer than the Delete after it).
    slow_types: dict[str, float] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    port: int = field(default_factory=free_port)
    private_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    received: list[tuple[str, str]] = field(default_factory=list)  # (inbox name, activity id)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def actor_url(self, name: str) -> str:
        return f"{self.url}/actors/{name}"

    def inbox_url(self, name: str) -> str:
        return f"{self.url}/inbox/{name}"

    @property
    def public_pem(self) -> str:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(name for name, _ in self.received)

    async def _actor(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name in self.gone:
            return Response(status_code=410)
        actor = self.actor_url(name)
        return JSONResponse({
            "@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
            "id": actor, "type": "Person", "preferredUsername": name, "inbox": self.inbox_url(name),
            "publicKey": {"id": f"{actor}#main-key", "owner": actor, "publicKeyPem": self.public_pem},
        }, media_type="application/activity+json")

    async def _inbox(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()

        async def blog_key(key_id: str, fresh: bool) -> str:
            return self.blog_key_pem

        try:
            await verify("POST", str(request.url), dict(request.headers), body, blog_key, max_age=300)
        except SignatureError as exc:
            with self.lock:
                self.refused.append(str(exc))
            return JSONResponse({"error": str(exc)}, status_code=401)
        delay = self.delay + self.slow_types.get(json.loads(body).get("type", ""), 0.0)
        if delay:
            await asyncio.sleep(delay)
        if name in self.gone:
            return Response(status_code=410)
        with self.lock:
            self.received.append((name, json.loads(body)["id"]))
        return Response(status_code=202)

    def __enter__(self) -> Self:
        app = Starlette(routes=[Route("/actors/{name}", self._actor), Route("/inbox/{name}", self._inbox, methods=["POST"])])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                     access_log=False, backlog=4096, limit_concurrency=None))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_until(lambda: self._server.started, 10, 0.01, "the inbox server to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)

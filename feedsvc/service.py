"""The long-running process: `feedsvc run` (HTTP + scheduler + deliveries) and `feedsvc worker` (deliveries).

Everything shares one asyncio event loop: uvicorn's server, the APScheduler jobs, the post watcher and the
delivery loop. SIGTERM/SIGINT start a graceful shutdown: no new work is taken, in-flight deliveries finish (or
are released for another process) within `scheduler.shutdown_timeout`, SMTP connections are closed, the leader
lease is handed back, and the process exits 0. A restart resumes from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import Iterator

import uvicorn

from feedsvc.config import Settings
from feedsvc.fediverse import keys
from feedsvc.fediverse.delivery import deliver
from feedsvc.inbound import enabled_sources
from feedsvc.logging import fields
from feedsvc.mail.deliverability import deliverability_warnings
from feedsvc.mail.delivery_loop import DeliveryLoop
from feedsvc.mail.transport import transport_from_settings
from feedsvc.scheduler import Jobs
from feedsvc.store import leases, open_engine
from feedsvc.web.app import create_app
from feedsvc.web.server import server_config

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service decides when the HTTP server stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CannotListen(Exception):
    """The HTTP address cannot be bound (the port is taken, the address is not this machine's)."""


def listen(host: str, port: int) -> socket.socket:
    """The HTTP socket, bound before anything else starts: a taken port is one clear line, not a traceback."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CannotListen(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (choose another with --port or [web] port)"
        ) from None
    return sock


def instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def request_stop(signame: str) -> None:
        if not stop.is_set():
            log.info("service.stopping", extra=fields(signal=signame))
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, sig.name)


async def run(settings: Settings, *, with_scheduler: bool = True, host: str | None = None, port: int | None = None) -> int:
    """Run until SIGTERM/SIGINT; the exit status. `with_scheduler=False` is `feedsvc worker` (no HTTP either)."""
    url = settings.store.database_url
    guard = leases.single_instance_guard(url)
    if guard:
        guard.acquire()  # raises StoreInUse, naming the other process, before anything else starts
    try:
        return await _serve(settings, with_scheduler=with_scheduler, host=host, port=port)
    finally:
        if guard:
            guard.release()


async def _serve(settings: Settings, *, with_scheduler: bool, host: str | None, port: int | None) -> int:
    host = host or settings.web.host
    sock = listen(host, settings.web.port if port is None else port) if with_scheduler else None
    engine = await asyncio.to_thread(open_engine, settings.store.database_url, connect_timeout=settings.store.connect_timeout)
    transport = transport_from_settings(settings)
    me = instance_id()
    stop = asyncio.Event()
    _stop_on_signals(stop)
    deliveries = DeliveryLoop(settings, engine, transport, worker_id=me)
    tasks = {asyncio.create_task(deliveries.run(stop), name="deliveries")}
    fediverse_deliveries = fediverse_loop(settings, engine, transport, me)
    if fediverse_deliveries:
        tasks.add(asyncio.create_task(fediverse_deliveries.run(stop), name="fediverse-deliveries"))
    jobs: Jobs | None = None
    server: _Server | None = None
    if with_scheduler:
        app = create_app(settings, engine=engine, transport=transport)
        jobs = Jobs(
            settings,
            engine,
            instance_id=me,
            deliveries=deliveries,
            on_feeds_written=app.state.web.feeds.refresh,
            wakes={"fediverse": fediverse_deliveries.wake} if fediverse_deliveries else None,
        )
        if fediverse_deliveries:
            app.state.fediverse.wake = fediverse_deliveries.wake
        app.state.health_checks.update(
            scheduler=jobs.scheduler_alive, watcher=jobs.watcher_alive, deliveries=deliveries.alive
        )
        server = _Server(server_config(app, settings, timeout_graceful_shutdown=5))
        assert sock is not None, "with the scheduler, the socket is bound before anything starts"
        tasks.add(asyncio.create_task(server.serve(sockets=[sock]), name="http"))
        tasks.add(asyncio.create_task(jobs.watch(stop), name="watch"))
        # Bounces, complaints and mailto unsubscribes: each report counts once, so every instance may read.
        for source in enabled_sources(settings, engine, app.state.web.tokens):
            tasks.add(asyncio.create_task(source.run(stop), name=f"inbound-{source.name}"))
        jobs.start()
    for warning in deliverability_warnings(settings):
        log.warning("mail.settings: %s", warning)
    log.info("service.started", extra=fields(instance=me, role="run" if with_scheduler else "worker"))

    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    for task in done - {stopped}:
        if stop.is_set() and not task.cancelled() and task.exception() is None:
            continue  # it saw the signal's stop in the same turn of the loop: a clean end, not a failure
        # A part ended on its own (e.g. the HTTP port was taken): stop the rest and report failure.
        status = 1
        log.error("service.part_ended", extra=fields(part=task.get_name(), error=_failure(task)))
    stop.set()

    timeout = settings.scheduler.shutdown_timeout
    deadline = asyncio.get_running_loop().time() + timeout
    if jobs:
        await jobs.stop()
    if server:
        server.should_exit = True
    _, late = await asyncio.wait(tasks, timeout=max(deadline - asyncio.get_running_loop().time(), 0.1))
    for task in late:
        log.warning("service.shutdown_timeout", extra=fields(part=task.get_name(), timeout_s=timeout))
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    await transport.aclose()
    await asyncio.to_thread(engine.dispose)
    log.info("service.stopped", extra=fields(instance=me, status=status))
    return status


def fediverse_loop(settings: Settings, engine, transport, worker_id: str) -> DeliveryLoop | None:
    """The loop POSTing queued activities to followers' inboxes (None when the fediverse is off)."""
    if not settings.fediverse.enabled:
        return None
    key_pair = keys.load_or_create(settings.store.dir)
    return DeliveryLoop(
        settings, engine, transport, worker_id,
        drain_pass=lambda stop: deliver(settings, engine, key_pair, worker_id=worker_id, stop=stop),
    )


def _failure(task: asyncio.Task[object]) -> str:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return repr(exc) if exc else "ended"


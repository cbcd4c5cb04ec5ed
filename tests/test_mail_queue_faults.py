"""Faults that must not repeat a mail (issue 9): a store that cannot take a write while the mail flows (SQLite
locked by another process, a PostgreSQL cluster restarted), a lease shorter than a send, a relay down while
people subscribe, a server that refuses the recipient but takes DATA. A real SMTP server counts the mails."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from conftest import SmtpSink, free_port
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from test_mail_queue import Clock, add_edition, add_subscribers, rows, run, statuses
from test_mail_smtp import ScriptedServer

from feedsvc.mail.delivery_loop import DeliveryLoop
from feedsvc.mail.queue import DrainReport, drain, utc_now
from feedsvc.mail.smtp import SmtpTransport
from feedsvc.store import deliveries as delivery_store
from feedsvc.store.engine import open_engine
from feedsvc.store.schema import deliveries


@dataclass
class SlowSink(SmtpSink):
    """The shared aiosmtpd handler, taking `delay` seconds per message without holding up other connections;
    `on_message(count)` runs (in the server's thread) as each message is accepted."""

    delay: float = 0.0
    on_message: Callable[[int], None] | None = None

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        reply = await super().handle_DATA(server, session, envelope)
        if self.on_message:
            self.on_message(len(self.received))
        return reply


@pytest.fixture
def slow_server() -> Iterator[SlowSink]:
    sink = SlowSink(pipelining=True)
    sink.port = free_port()
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def deliver_as_the_service_does(settings, engine, *, timeout: float, store_inline: bool = False) -> None:
    """Run the service's delivery loop (drain, and again every `drain_interval` after a failure) until every
    delivery is sent; `store_inline`: with the store calls on the loop's thread, as `feedsvc digest send` drains."""

    async def go() -> None:
        transport = SmtpTransport(settings)
        stop = asyncio.Event()

        def drain_pass(stop: asyncio.Event):
            return drain(settings, engine, transport, worker_id="service", stop=stop, store_inline=store_inline)

        loop = DeliveryLoop(settings, engine, transport, worker_id="service", drain_pass=drain_pass)
        task = asyncio.create_task(loop.run(stop))
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                try:
                    states = await asyncio.to_thread(lambda: {row["state"] for row in rows(engine).values()})
                except OperationalError:  # the store is down: wait for it as the service does
                    states = set()
                if states == {"sent"}:
                    break
        finally:
            stop.set()
            await task
            await transport.aclose()

    asyncio.run(go())


def copies_per_address(server: SmtpSink) -> Counter[str]:
    return Counter(recipient for mail in server.received for recipient in mail.recipients)


# --- a store that cannot take a write -------------------------------------------------------------------------

LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""

# Longer than the store's busy timeout (10 s): the drain's writes fail, they do not merely wait.
LOCK_SECONDS = 12.0


@pytest.mark.slow
@pytest.mark.parametrize("store_inline", [False, True], ids=["store in a thread", "store inline"])
def test_a_sqlite_store_locked_by_another_process_repeats_no_mail(make_settings, slow_server, tmp_path, store_inline):
    # Short leases, so that a delivery left `sending` by a failed write would be taken up again within the test.
    settings = make_settings(
        store={"url": f"sqlite:///{tmp_path / 'store.db'}"},
        mail={"smtp_url": slow_server.url, "connections": 3, "batch_size": 10, "lease_seconds": 2},
        scheduler={"drain_interval": 0.2},
    )
    engine = open_engine(settings.store.database_url)
    lockers: list[subprocess.Popen[str]] = []

    def lock_the_store(count: int) -> None:
        if count == 6 and not lockers:
            locker = subprocess.Popen(
                [sys.executable, "-c", LOCKER, str(tmp_path / "store.db"), str(LOCK_SECONDS)],
                stdout=subprocess.PIPE, text=True,
            )
            lockers.append(locker)
            assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"

    try:
        ids = add_subscribers(engine, 30)
        add_edition(settings, engine, "daily-1", ids)
        slow_server.delay = 0.1
        slow_server.on_message = lock_the_store
        started = time.monotonic()
        deliver_as_the_service_does(settings, engine, timeout=60, store_inline=store_inline)
        assert lockers and lockers[0].wait(5) == 0
        assert time.monotonic() - started > LOCK_SECONDS - 1, "the lock did not hold the queue up"
        assert copies_per_address(slow_server) == Counter(f"reader{n}@example.com" for n in range(30))
        assert {row["state"] for row in rows(engine).values()} == {"sent"}
    finally:
        for locker in lockers:
            locker.kill()
            locker.wait()
        engine.dispose()


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster of this test's own, which it may stop and start (never the shared one)."""

    data: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, "pg_ctl", "-D", str(self.data), "-w", *args], check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        self.pg_ctl("-l", str(self.data / "server.log"), "-o", options, "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        pytest.skip("PostgreSQL restart test skipped: initdb and pg_ctl are not on PATH")
    # initdb refuses to run as root: the cluster then belongs to the `postgres` system user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="feedsvc-pg-"))
    if as_user:
        shutil.chown(folder, "postgres")
    cluster = PrivatePostgres(folder / "data", free_port(), as_user)
    try:
        subprocess.run(
            [*as_user, "initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "--no-sync"],
            check=True, capture_output=True,
        )
        cluster.start()
        yield cluster
    finally:
        subprocess.run([*as_user, "pg_ctl", "-D", str(cluster.data), "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


OUTAGE_SECONDS = 4.0


class RestartAt:
    """As `on_message` of the SMTP server: once it has accepted message `count`, stop the private PostgreSQL
    server and start it again OUTAGE_SECONDS later, in a thread of its own (`join` waits for it)."""

    def __init__(self, cluster: PrivatePostgres, count: int) -> None:
        self.cluster, self.count = cluster, count
        self.thread: threading.Thread | None = None

    def __call__(self, accepted: int) -> None:
        if accepted == self.count and self.thread is None:
            self.thread = threading.Thread(target=self._restart)
            self.thread.start()

    def join(self) -> None:
        assert self.thread is not None, "the store was never restarted"
        self.thread.join()

    def _restart(self) -> None:
        self.cluster.stop()
        time.sleep(OUTAGE_SECONDS)
        self.cluster.start()


def sent_once_through_a_restart(settings, slow_server, private_postgres: PrivatePostgres, restart_at: int, send):
    """A digest to 30 subscribers sent by `send(engine)` while the private server stops once the SMTP server has
    accepted message `restart_at` and comes back OUTAGE_SECONDS later: each address gets one copy and every
    delivery ends `sent`. Returns what `send` returned."""
    engine = open_engine(settings.store.database_url)
    restart = RestartAt(private_postgres, restart_at)
    try:
        ids = add_subscribers(engine, 30)
        add_edition(settings, engine, "daily-1", ids)
        slow_server.delay = 0.1
        slow_server.on_message = restart
        started = time.monotonic()
        result = send(engine)
        restart.join()
        assert time.monotonic() - started > OUTAGE_SECONDS, "the restart did not hold the queue up"
        assert copies_per_address(slow_server) == Counter(f"reader{n}@example.com" for n in range(30))
        assert {row["state"] for row in rows(engine).values()} == {"sent"}
        return result
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_postgres_restart_mid_send_repeats_no_mail(make_settings, slow_server, private_postgres):
    settings = make_settings(
        store={"url": private_postgres.url},
        mail={"smtp_url": slow_server.url, "connections": 3, "batch_size": 10, "lease_seconds": 2},
        scheduler={"drain_interval": 0.2},
    )
    sent_once_through_a_restart(
        settings, slow_server, private_postgres, 6, lambda engine: deliver_as_the_service_does(settings, engine, timeout=60)
    )


@pytest.mark.slow
def test_one_drain_outlasts_a_postgres_restart_while_its_next_batch_is_claimed(make_settings, slow_server, private_postgres):
    """The next batch is claimed while this one is sent; a claim that meets the outage waits for the store, as
    the writes do, rather than ending the drain."""
    settings = make_settings(
        store={"url": private_postgres.url},
        mail={"smtp_url": slow_server.url, "connections": 3, "batch_size": 10},
    )
    # Restarted once the claim of the second batch is done: the third is claimed next. One drain on the wall clock,
    # not the service's loop.
    report = sent_once_through_a_restart(settings, slow_server, private_postgres, 2, lambda engine: run(settings, engine, utc_now))
    assert report == DrainReport(sent=30)


# --- leases shorter than a send -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_send_slower_than_the_lease_is_never_taken_over_by_another_worker(make_settings, slow_server, store_url):
    # Each message takes 2 s at the server, twice the lease: the lease must be renewed while the send is in flight,
    # or the other worker takes the mail over and sends it again (332 mails for 24 recipients before the fix).
    settings = make_settings(
        store={"url": store_url},
        mail={"smtp_url": slow_server.url, "connections": 2, "batch_size": 4, "lease_seconds": 1, "timeout": 10},
    )
    engine = open_engine(store_url)
    try:
        ids = add_subscribers(engine, 12)
        add_edition(settings, engine, "daily-1", ids)
        slow_server.delay = 2.0

        async def two_workers() -> list[DrainReport]:
            transports = [SmtpTransport(settings), SmtpTransport(settings)]
            try:
                return await asyncio.gather(
                    *(drain(settings, engine, t, worker_id=f"w{i}") for i, t in enumerate(transports))
                )
            finally:
                for transport in transports:
                    await transport.aclose()

        reports = asyncio.run(two_workers())
        assert copies_per_address(slow_server) == Counter(f"reader{n}@example.com" for n in range(12))
        assert sum(report.sent for report in reports) == 12
        assert {row["state"] for row in rows(engine).values()} == {"sent"}
    finally:
        engine.dispose()


# --- a refused recipient ----------------------------------------------------------------------------------------


def test_a_550_to_the_only_recipient_bounces_even_when_the_server_then_accepts_data(queue):
    settings, engine = queue
    ids = add_subscribers(engine, 2)
    add_edition(settings, engine, "daily-1", ids)
    server = ScriptedServer(pipelining=True, rcpt_reply=b"550 5.1.1 no such user", data_reply=b"354 go ahead")

    async def scenario() -> DrainReport:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        scripted = settings.model_copy(
            update={"mail": settings.mail.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{listener.sockets[0].getsockname()[1]}"})}
        )
        transport = SmtpTransport(scripted)
        try:
            return await drain(scripted, engine, transport, worker_id="w1", now=Clock())
        finally:
            await transport.aclose()
            listener.close()

    report = asyncio.run(scenario())
    assert report == DrainReport(bounced=2, reasons=Counter({"recipient refused: 550 5.1.1 no such user": 2}))
    assert {sid: status for sid, (status, _) in statuses(engine).items()} == dict.fromkeys(ids, "bounced")
    assert statuses(engine)[ids[0]][1] == "recipient refused: 550 5.1.1 no such user"
    assert {row["state"] for row in rows(engine).values()} == {"bounced"}


@pytest.fixture
def queue(make_settings, store_url):
    settings = make_settings(store={"url": store_url}, mail={"smtp_url": "smtp://127.0.0.1:25", "connections": 1})
    engine = open_engine(store_url)
    yield settings, engine
    engine.dispose()


# --- confirmation mails through the queue ----------------------------------------------------------------------

RELAY_OUTAGE_SECONDS = 6.0


@pytest.mark.slow
def test_confirmations_asked_for_while_the_relay_is_down_arrive_once_when_it_is_back(make_settings, tmp_path):
    smtp_port, web_port = free_port(), free_port()
    settings = make_settings(
        mail={"smtp_url": f"smtp://127.0.0.1:{smtp_port}", "retry_base_seconds": 0.5},
        web={"subscribe_rate_per_client": 1000, "public_url": f"http://127.0.0.1:{web_port}"},
        scheduler={"drain_interval": 0.3},
    )
    log = tmp_path / "run.log"
    with log.open("wb") as sink:
        service = subprocess.Popen(
            [sys.executable, "-m", "feedsvc", "run", "--config", str(settings.config_path), "--port", str(web_port)],
            stdout=sink, stderr=subprocess.STDOUT,
        )
    relay = SmtpSink()
    relay.port = smtp_port
    controller = Controller(relay, hostname=relay.host, port=smtp_port)
    try:
        _wait_until(lambda: _healthy(web_port), 30, f"the service to answer:\n{log.read_text()}")
        addresses = [f"person{n}@example.org" for n in range(8)]
        outage_started = time.monotonic()
        for address in addresses:
            answer = httpx.post(f"http://127.0.0.1:{web_port}/subscribe", json={"email": address}, timeout=10)
            assert answer.status_code == 202, answer.text
            assert "a confirmation link is on its way" in json.loads(answer.text)["message"]
        time.sleep(max(0.0, RELAY_OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        assert relay.received == []

        controller.start()  # the relay is back
        _wait_until(lambda: len(copies_per_address(relay)) == 8, 30, f"every confirmation:\n{log.read_text()}")
        time.sleep(1.0)  # room for a repeat to show up
        assert copies_per_address(relay) == Counter(addresses)
        assert all("/confirm" in mail.message.get_body(("plain",)).get_content() for mail in relay.received)  # type: ignore[union-attr]
        engine = open_engine(settings.store.database_url)
        try:
            with engine.connect() as connection:
                states = connection.execute(
                    select(deliveries.c.state, func.count()).where(deliveries.c.kind == "confirmation").group_by(deliveries.c.state)
                ).all()
        finally:
            engine.dispose()
        assert dict(states) == {"sent": 8}
    finally:
        service.terminate()
        service.wait(30)
        if controller.loop.is_running():
            controller.stop()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_each_request_queues_one_confirmation_for_its_subscriber_only(store_url):
    engine = open_engine(store_url)
    try:
        [subscriber_id] = add_subscribers(engine, 1)
        with engine.begin() as connection:
            for _ in range(2):
                delivery_store.queue_confirmation(connection, subscriber_id, Clock()())
        queued = list(rows_of(engine))
        assert [(row.kind, row.state, row.edition_id, row.subscriber_id) for row in queued] == [
            ("confirmation", "queued", None, subscriber_id)
        ] * 2
        assert len({row.key for row in queued}) == 2
    finally:
        engine.dispose()


def rows_of(engine):
    with engine.connect() as connection:
        return connection.execute(select(deliveries)).all()

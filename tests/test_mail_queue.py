"""Draining the delivery queue into a real SMTP server, on SQLite and PostgreSQL: exactly once, retries,
bounces and suppression, leases after a crash, stopping midway, two workers at once."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import DROP
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from feedsvc.mail.message import message_id_for
from feedsvc.mail.queue import DrainReport, drain
from feedsvc.mail.render import render_edition
from feedsvc.mail.smtp import SmtpTransport
from feedsvc.posts.model import Post
from feedsvc.store import deliveries as delivery_store
from feedsvc.store import editions as edition_store
from feedsvc.store import subscribers as subscriber_store
from feedsvc.store.engine import open_engine
from feedsvc.store.on_loop import LoopConnection
from feedsvc.store.schema import deliveries, subscribers
from feedsvc.tokens import Purpose, Tokens

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Clock:
    """The drain's `now`, moved forward by the test instead of waiting."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@pytest.fixture
def queue(make_settings, smtp_server, store_url):
    """Settings on the SMTP server, and an engine on a fresh store of the parametrized backend."""
    smtp_server.pipelining = True  # as real relays do: the drain runs on the pipelined path
    settings = make_settings(
        store={"url": store_url},
        mail={"smtp_url": smtp_server.url, "connections": 3, "batch_size": 7, "retry_base_seconds": 60},
    )
    engine = open_engine(store_url)
    yield settings, engine
    engine.dispose()


def add_subscribers(engine, count: int, *, prefix: str = "reader") -> list[int]:
    ids = []
    with engine.begin() as connection:
        for n in range(count):
            address = f"{prefix}{n}@example.com"
            subscriber_store.insert_if_absent(
                connection, email=address, email_key=address, name=f"Reader {n}", status="active",
                frequency="daily", created_at=START - timedelta(days=9), confirmed_at=START - timedelta(days=9),
            )
            ids.append(subscriber_store.find(connection, address).id)
    return ids


def add_edition(settings, engine, key: str, subscriber_ids: list[int], *, title: str = "Tulisan baru 🚀") -> int:
    post = Post(
        id=key, slug=key, title=title, date=START - timedelta(hours=2), updated=None,
        url=f"https://blog.example.org/{key}/", tags=(), summary_html="<p>Ringkasan.</p>", author="Budi",
        image=None, draft=False, source=Path(f"{key}.md"), content_html="<p>Isi tulisan.</p>",
    )
    edition = render_edition(settings, [post], "instant", START - timedelta(days=1), START)
    with engine.begin() as connection:
        edition_id = edition_store.insert_edition(
            connection, key=key, frequency="daily", period_start=START - timedelta(days=1), period_end=START,
            post_ids=[key], subject=edition.subject, html=edition.html, text=edition.text, created_at=START,
        )
        edition_store.insert_deliveries(
            connection,
            [
                {"key": f"{key}:{sid}", "edition_id": edition_id, "subscriber_id": sid, "state": "queued",
                 "attempts": 0, "next_attempt_at": START, "created_at": START, "last_error": ""}
                for sid in subscriber_ids
            ],
        )
    return edition_id


def rows(engine) -> dict[int, dict]:
    with engine.connect() as connection:
        return {row.subscriber_id: dict(row._mapping) for row in connection.execute(select(deliveries))}


def statuses(engine) -> dict[int, tuple[str, str]]:
    with engine.connect() as connection:
        result = connection.execute(select(subscribers.c.id, subscribers.c.status, subscribers.c.status_reason))
        return {sid: (status, reason) for sid, status, reason in result}


def run(settings, engine, clock, worker_id="w1", **kwargs) -> DrainReport:
    async def go() -> DrainReport:
        transport = SmtpTransport(settings)
        try:
            return await drain(settings, engine, transport, worker_id=worker_id, now=clock, **kwargs)
        finally:
            await transport.aclose()

    return asyncio.run(go())


def test_every_subscriber_gets_one_personalised_mail(queue, smtp_server):
    settings, engine = queue
    ids = add_subscribers(engine, 25)
    add_edition(settings, engine, "daily-1", ids)
    progress: list[tuple[int, int]] = []

    report = run(settings, engine, Clock(), on_progress=lambda done, total: progress.append((done, total)))

    assert report == DrainReport(sent=25)
    assert progress[-1] == (25, 25) and all(done <= total for done, total in progress)
    tokens = Tokens("test-secret-key-of-at-least-32-bytes", 3600)
    for n, subscriber_id in enumerate(ids):
        [mail] = smtp_server.messages_to(f"reader{n}@example.com")
        message = mail.message
        assert message["Subject"] == "Tulisan baru 🚀"
        assert message["To"].addresses[0].display_name == f"Reader {n}"
        assert message["Message-ID"] == message_id_for(settings, f"daily-1:{subscriber_id}")
        token = re.search(r"/unsubscribe/([^>]+)>", message["List-Unsubscribe"]).group(1)
        assert tokens.read(Purpose.UNSUBSCRIBE, token).subscriber_id == subscriber_id
        # Signed as itsdangerous itself signs (the fast `make` must not drift from the format links are read in).
        assert URLSafeTimedSerializer("test-secret-key-of-at-least-32-bytes", salt="feedsvc.unsubscribe").loads(token)[0] == subscriber_id
        assert "/preferences/" in message.get_body(("plain",)).get_content()
    states = rows(engine)
    assert {row["state"] for row in states.values()} == {"sent"}
    assert all(row["claimed_by"] is None and row["attempts"] == 1 and row["message_id"] for row in states.values())
    # When and as what each was sent, stored as every other query writes and compares times (on SQLite the wave's
    # statements run on the driver, with the column type's own processing).
    assert all(
        row["sent_at"] == START and row["message_id"] == message_id_for(settings, f"daily-1:{subscriber_id}")
        for subscriber_id, row in states.items()
    )
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).where(deliveries.c.sent_at == START)).scalar_one() == 25
    # Nothing is due any more: a second drain sends nothing.
    assert run(settings, engine, Clock()) == DrainReport()
    assert len(smtp_server.received) == 25


def test_faults_end_with_transients_delivered_once_and_hard_bounces_suppressed(queue, smtp_server):
    settings, engine = queue
    ids = add_subscribers(engine, 30)
    add_edition(settings, engine, "daily-1", ids)
    later_edition = add_edition(settings, engine, "daily-2", ids[:3])  # queued behind, for the bounced ones
    tries: Counter[str] = Counter()

    def fault(stage: str, arg) -> str | None:
        recipient = arg if stage == "rcpt" else arg.rcpt_tos[0]
        number = int(re.search(r"\d+", recipient).group())
        if stage == "rcpt" and number in (0, 1, 2):
            return f"550 5.1.1 <{recipient}>: no such user"
        if stage != "data":
            return None
        tries[recipient] += 1
        if number % 5 == 3 and tries[recipient] <= 2:
            return "451 4.3.0 try again later"
        if number % 5 == 4 and tries[recipient] == 1:
            return "421 4.7.0 too many connections"
        if number % 7 == 6 and tries[recipient] == 1:
            return DROP
        return None

    smtp_server.fault = fault
    clock = Clock()
    first = run(settings, engine, clock)
    assert first.bounced == 3 and first.retried > 0 and first.sent + first.retried + first.bounced == 30

    # Retries wait for their backoff: draining again at the same time sends nothing.
    assert run(settings, engine, clock) == DrainReport()
    retry_rows = [row for row in rows(engine).values() if row["state"] == "retry"]
    assert retry_rows and all(row["next_attempt_at"] > clock() for row in retry_rows)

    for _ in range(4):
        clock.advance(hours=1)
        run(settings, engine, clock)

    for n, _subscriber_id in enumerate(ids):
        received = smtp_server.messages_to(f"reader{n}@example.com")
        assert len(received) == (0 if n < 3 else 1), n
    with engine.connect() as connection:
        result = connection.execute(select(deliveries.c.edition_id, deliveries.c.subscriber_id, deliveries.c.state,
                                           deliveries.c.last_error))
        states = {(edition, sid): (state, error) for edition, sid, state, error in result}
    for sid in ids[:3]:
        assert statuses(engine)[sid][0] == "bounced"
        assert "550 5.1.1" in statuses(engine)[sid][1] and "no such user" in statuses(engine)[sid][1]
        assert states[(later_edition, sid)] == ("failed", delivery_store.SUPPRESSED)
    assert Counter(state for state, _ in states.values()) == {"sent": 27, "bounced": 3, "failed": 3}


def test_a_delivery_that_keeps_failing_ends_failed(queue, smtp_server):
    settings, engine = queue
    settings.mail.max_attempts = 3
    [sid] = add_subscribers(engine, 1)
    add_edition(settings, engine, "daily-1", [sid])
    smtp_server.fault = lambda stage, arg: "452 4.2.2 mailbox full" if stage == "rcpt" else None
    clock = Clock()
    reports = []
    for _ in range(4):
        reports.append(run(settings, engine, clock))
        clock.advance(hours=2)
    assert [r.retried for r in reports] == [1, 1, 0, 0] and reports[2].failed == 1
    row = rows(engine)[sid]
    assert (row["state"], row["attempts"]) == ("failed", 3) and "452 4.2.2 mailbox full" in row["last_error"]
    assert statuses(engine)[sid][0] == "active"  # a full mailbox is not a reason to suppress


def test_failed_deliveries_queued_again_are_sent_and_cancelled_ones_stay_failed(queue, smtp_server):
    settings, engine = queue
    settings.mail.max_attempts = 1
    ids = add_subscribers(engine, 3)
    add_edition(settings, engine, "daily-1", ids)
    with engine.begin() as connection:
        subscriber_store.change(connection, ids[2], status="unsubscribed")
    outage = True
    smtp_server.fault = lambda stage, arg: "421 4.3.2 relay down" if outage and stage == "rcpt" else None
    clock = Clock()
    assert run(settings, engine, clock) == DrainReport(
        failed=2, skipped=1, reasons=Counter({"recipient refused: 421 4.3.2 relay down": 2})
    )

    outage = False
    with engine.begin() as connection:
        assert delivery_store.requeue_failed(connection, clock()) == 2
        assert delivery_store.count_by_state(connection)["queued"] == 2
    assert run(settings, engine, clock) == DrainReport(sent=2)
    assert [len(smtp_server.messages_to(f"reader{n}@example.com")) for n in range(3)] == [1, 1, 0]
    assert rows(engine)[ids[2]]["state"] == "failed"


def test_subscribers_who_left_meanwhile_are_skipped(queue, smtp_server):
    settings, engine = queue
    ids = add_subscribers(engine, 4)
    add_edition(settings, engine, "daily-1", ids)
    with engine.begin() as connection:
        subscriber_store.change(connection, ids[1], status="unsubscribed")
    report = run(settings, engine, Clock())
    assert (report.sent, report.skipped) == (3, 1)
    assert smtp_server.messages_to("reader1@example.com") == []
    row = rows(engine)[ids[1]]
    assert (row["state"], row["last_error"]) == ("failed", delivery_store.INACTIVE)


def _wave_write_case(settings, engine) -> tuple[list[int], list[delivery_store.Claimed], list[delivery_store.Sent]]:
    """Five claimed deliveries: two sent (their outcomes to record), three to start, one of them to a subscriber
    who left meanwhile."""
    ids = add_subscribers(engine, 5)
    add_edition(settings, engine, "daily-1", ids)
    clock = Clock()
    with engine.begin() as connection:
        claimed = delivery_store.claim(connection, "w", now=clock(), lease_until=clock() + timedelta(minutes=5), limit=9)
        first, _ = delivery_store.start_sending(connection, "w", [claimed[0].id, claimed[1].id])
        subscriber_store.change(connection, ids[4], status="unsubscribed")
    assert [c.subscriber_id for c in claimed] == ids and claimed[0].email == "reader0@example.com"
    return ids, claimed, [delivery_store.Sent(delivery_id, f"<{delivery_id}@blog.example.org>") for delivery_id in first]


def _assert_wave_written(engine, ids: list[int], claimed: list[delivery_store.Claimed], written) -> None:
    assert written == ({claimed[2].id: 1, claimed[3].id: 1}, {claimed[4].id})
    after = rows(engine)
    assert [(after[sid]["state"], after[sid]["claimed_by"], after[sid]["message_id"]) for sid in ids[:2]] == [
        ("sent", None, f"<{claimed[0].id}@blog.example.org>"), ("sent", None, f"<{claimed[1].id}@blog.example.org>")
    ]
    assert [(after[sid]["state"], after[sid]["claimed_by"]) for sid in ids[2:]] == [
        ("sending", "w"), ("sending", "w"), ("failed", None)
    ]


def test_a_waves_write_records_the_last_wave_and_starts_the_next(queue):
    """The write per wave in a transaction on the engine's connection, as the drain runs it on SQLite (and on
    PostgreSQL when the outcomes hold a retry or a bounce)."""
    settings, engine = queue
    ids, claimed, sent = _wave_write_case(settings, engine)
    with engine.begin() as connection:
        written = delivery_store.record_and_start(
            connection, "w", sent=sent, start=[c.id for c in claimed[2:]], now=Clock()()
        )
    _assert_wave_written(engine, ids, claimed, written)


@pytest.mark.postgres
@pytest.mark.parametrize("outcomes", ["sent and started", "started only", "sent only"])
def test_on_postgresql_a_drain_writes_its_waves_from_the_event_loop(make_settings, postgres_url, outcomes):
    """The same write as the drain runs it on PostgreSQL: on psycopg's asyncio connection, where an `ids` list
    is one array parameter."""
    settings = make_settings(store={"url": postgres_url})
    engine = open_engine(postgres_url)
    try:
        ids, claimed, sent = _wave_write_case(settings, engine)
        start = [] if outcomes == "sent only" else [c.id for c in claimed[2:]]
        recorded = [] if outcomes == "started only" else sent

        async def write():
            connection = await LoopConnection.open(engine)
            try:
                return await delivery_store.record_and_start_on_loop(
                    connection, "w", sent=recorded, start=start, now=Clock()()
                )
            finally:
                await connection.close()

        written = asyncio.run(write())
        if outcomes == "sent and started":
            _assert_wave_written(engine, ids, claimed, written)
            return
        after = rows(engine)
        states = [(after[sid]["state"], after[sid]["claimed_by"]) for sid in ids]
        if outcomes == "started only":
            assert written == ({claimed[2].id: 1, claimed[3].id: 1}, {claimed[4].id})
            assert states == [("sending", "w")] * 4 + [("failed", None)]
        else:
            assert written == ({}, set())
            assert states == [("sent", None)] * 2 + [("queued", "w")] * 3
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_loop_connection_whose_server_went_away_says_so_as_the_engine_does(postgres_url):
    """A server that ends the session (a restart, an administrator) surfaces as SQLAlchemy's OperationalError, which
    the drain waits out with backoff, the same as on the engine's own connections."""
    engine = open_engine(postgres_url)

    async def write_after_the_session_ended():
        connection = await LoopConnection.open(engine)
        try:
            [(pid,)] = await connection.execute(select(func.pg_backend_pid()), {})
            with engine.connect() as admin:
                assert admin.execute(select(func.pg_terminate_backend(pid))).scalar() is True
            await delivery_store.record_and_start_on_loop(connection, "w", sent=[], start=[1], now=Clock()())
        finally:
            await connection.close()

    try:
        with pytest.raises(OperationalError):
            asyncio.run(write_after_the_session_ended())
    finally:
        engine.dispose()


def test_leases_of_a_dead_worker_are_taken_over_once_expired(queue, smtp_server):
    settings, engine = queue
    ids = add_subscribers(engine, 6)
    add_edition(settings, engine, "daily-1", ids)
    clock = Clock()
    # A worker claims everything, starts sending two, and dies (kill -9) before recording anything.
    with engine.begin() as connection:
        claimed = delivery_store.claim(connection, "dead", now=clock(), lease_until=clock() + timedelta(minutes=5),
                                       limit=100)
        in_flight, _ = delivery_store.start_sending(connection, "dead", [claimed[0].id, claimed[1].id])
    assert len(claimed) == 6 and len(in_flight) == 2

    assert run(settings, engine, clock) == DrainReport()  # still leased: nobody else may send them
    clock.advance(minutes=6)
    assert run(settings, engine, clock) == DrainReport(sent=6)
    assert all(len(smtp_server.messages_to(f"reader{n}@example.com")) == 1 for n in range(6))
    attempts = {sid: row["attempts"] for sid, row in rows(engine).items()}
    assert sorted(attempts.values()) == [1, 1, 1, 1, 2, 2]  # the two in flight count their lost attempt


def test_stop_finishes_in_flight_sends_and_releases_the_rest(queue, smtp_server):
    settings, engine = queue
    ids = add_subscribers(engine, 40)
    add_edition(settings, engine, "daily-1", ids)
    clock = Clock()

    async def stopped_early() -> DrainReport:
        stop = asyncio.Event()
        transport = SmtpTransport(settings)
        try:
            return await drain(settings, engine, transport, worker_id="w1", now=clock, stop=stop,
                               on_progress=lambda done, total: stop.set())
        finally:
            await transport.aclose()

    report = asyncio.run(stopped_early())
    assert 0 < report.sent < 40
    left = [row for row in rows(engine).values() if row["state"] != "sent"]
    assert len(left) == 40 - report.sent
    assert all(row["state"] == "queued" and row["claimed_by"] is None for row in left)
    assert run(settings, engine, clock) == DrainReport(sent=40 - report.sent)
    assert all(len(smtp_server.messages_to(f"reader{n}@example.com")) == 1 for n in range(40))


def test_two_workers_share_the_queue_without_sending_twice(queue, smtp_server):
    settings, engine = queue
    ids = add_subscribers(engine, 60)
    add_edition(settings, engine, "daily-1", ids)
    clock = Clock()

    async def both() -> list[DrainReport]:
        transports = [SmtpTransport(settings), SmtpTransport(settings)]
        try:
            return await asyncio.gather(
                *(drain(settings, engine, t, worker_id=f"w{i}", now=clock) for i, t in enumerate(transports))
            )
        finally:
            for transport in transports:
                await transport.aclose()

    reports = asyncio.run(both())
    assert sum(r.sent for r in reports) == 60
    assert sorted(m.recipients[0] for m in smtp_server.received) == sorted(f"reader{n}@example.com" for n in range(60))


DRAIN_PROCESS = """
import asyncio, sys
from datetime import datetime
from feedsvc.config import load_settings
from feedsvc.mail.queue import drain
from feedsvc.mail.smtp import SmtpTransport
from feedsvc.store.engine import open_engine
from feedsvc.store.on_loop import LoopConnection

settings = load_settings(sys.argv[1])
engine = open_engine(settings.store.database_url)
now = datetime.fromisoformat(sys.argv[2])
asyncio.run(drain(settings, engine, SmtpTransport(settings), worker_id="doomed", now=lambda: now))
"""


@pytest.mark.slow
def test_kill_9_mid_send_repeats_at_most_the_mails_in_flight(queue, smtp_server):
    settings, engine = queue
    ids = add_subscribers(engine, 300)
    add_edition(settings, engine, "daily-1", ids)

    def slow_server(stage: str, arg) -> None:
        if stage == "data":
            time.sleep(0.004)  # about 250 mails/s, so the kill lands in the middle of the queue

    smtp_server.fault = slow_server
    child = subprocess.Popen([sys.executable, "-c", DRAIN_PROCESS, str(settings.config_path), START.isoformat()])
    try:
        deadline = time.monotonic() + 30
        while len(smtp_server.received) < 60 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    before_kill = {sid: row["state"] for sid, row in rows(engine).items()}
    received_before = Counter(m.recipients[0] for m in smtp_server.received)
    assert 60 <= len(received_before) < 300
    sending = {sid for sid, state in before_kill.items() if state == "sending"}
    # With the senders (two per connection: one awaiting its reply, the next one's envelope), in their queue and
    # being marked: four waves at most, never a whole batch.
    assert 0 < len(sending) <= 4 * settings.mail.connections

    smtp_server.fault = None
    clock = Clock()
    clock.advance(seconds=settings.mail.lease_seconds + 1)
    run(settings, engine, clock, worker_id="restarted")

    copies = Counter(m.recipients[0] for m in smtp_server.received)
    assert set(copies) == {f"reader{n}@example.com" for n in range(300)}  # nobody lost
    repeated = {address for address, number in copies.items() if number > 1}
    assert all(number <= 2 for number in copies.values())
    # In flight (one message per connection whose text the server may have taken) plus accepted within the last
    # flush interval (a few at this pace).
    assert len(repeated) <= 2 * settings.mail.connections
    # Only a delivery left `sending` by the dead process may have been repeated.
    by_address = {f"reader{n}@example.com": sid for n, sid in enumerate(ids)}
    assert {by_address[address] for address in repeated} <= sending
    assert {row["state"] for row in rows(engine).values()} == {"sent"}


def test_an_unmailable_stored_address_is_suppressed_with_the_reason(queue, smtp_server):
    settings, engine = queue
    ids = add_subscribers(engine, 2)
    with engine.begin() as connection:
        subscriber_store.change(connection, ids[0], email="broken address@example.com")
    add_edition(settings, engine, "daily-1", ids)
    report = run(settings, engine, Clock())
    assert (report.sent, report.bounced) == (1, 1)
    status, reason = statuses(engine)[ids[0]]
    assert status == "bounced" and "'broken address@example.com' is not a usable e-mail address" in reason
    assert len(smtp_server.received) == 1


def test_a_batch_slower_than_its_lease_keeps_its_claims(make_settings, smtp_server, store_url):
    # Each mail takes 15 s of the test's clock, so the batch outlasts its 60 s lease several times over. While it
    # sends, another worker tries to claim: the drain renews its lease, so nothing it holds is ever taken over.
    settings = make_settings(
        store={"url": store_url},
        mail={"smtp_url": smtp_server.url, "connections": 3, "batch_size": 12, "lease_seconds": 60},
    )
    engine = open_engine(store_url)
    try:
        ids = add_subscribers(engine, 12)
        add_edition(settings, engine, "daily-1", ids)
        clock = Clock()
        taken_over: list[int] = []

        def slow_server(stage, _arg):
            if stage == "data":
                clock.advance(seconds=15)
                with engine.begin() as connection:
                    claimed = delivery_store.claim(
                        connection, "intruder", now=clock(), lease_until=clock() + timedelta(minutes=5), limit=100
                    )
                taken_over.extend(delivery.id for delivery in claimed)

        smtp_server.fault = slow_server
        assert run(settings, engine, clock) == DrainReport(sent=12)
        assert taken_over == []
        assert Counter(m.recipients[0] for m in smtp_server.received) == Counter(
            f"reader{n}@example.com" for n in range(12)
        )
    finally:
        engine.dispose()

"""Draining the delivery queue: claim due deliveries, personalise each edition per subscriber, send, record.

The pipeline, one drain per process at a time:

    claim a batch (lease) -> for each wave of `mail.connections` deliveries:
        personalise -> mark the wave `sending` (one transaction, also recording finished sends) -> hand to senders
    senders (`mail.connections` tasks) -> transport.send -> outcome buffered -> recorded (group commit)

Crash safety: a delivery turns `sending` only just before its own send, and a sender starts its next send
only once the outcome of its previous one is recorded. So each connection has at most one mail that the
server may have accepted without the store knowing, and a kill -9 repeats at most `mail.connections` mails.
Outcomes of all senders are written together (one transaction for whatever finished meanwhile), and every
store call runs in a worker thread, under one lock, so SMTP I/O never waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.mail.message import MessageSkeleton, message_id_for
from feedsvc.mail.render import edition_skeleton
from feedsvc.mail.transport import Outgoing, SendError, Transport
from feedsvc.metrics import DELIVERIES
from feedsvc.store import deliveries as store
from feedsvc.subscribers import preferences_url, unsubscribe_url
from feedsvc.tokens import Tokens, load_secret

log = logging.getLogger(__name__)

# Longest wait between two attempts, whatever the backoff says.
MAX_BACKOFF = timedelta(hours=12)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class DrainReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0  # the subscriber left (unsubscribed, bounced elsewhere) after the delivery was queued

    @property
    def done(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True, slots=True)
class _Job:
    delivery: store.Claimed
    item: Outgoing
    message_id: str


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Exponential backoff with jitter: base·2^(attempts-1), scaled by a random 50–100 %."""
    seconds = settings.mail.retry_base_seconds * 2 ** (attempts - 1) * random.uniform(0.5, 1.0)
    return min(timedelta(seconds=seconds), MAX_BACKOFF)


async def drain(
    settings: Settings,
    engine: Engine,
    transport: Transport,
    *,
    worker_id: str,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    now: Callable[[], datetime] = utc_now,
) -> DrainReport:
    """Send every delivery due now; return what became of them.

    Set `stop` to end early: sends already started finish and are recorded, unstarted claims are released.
    `on_progress(done, total)` is called as outcomes are recorded. `now` is the clock (tests move it).
    """
    run = _Drain(settings, engine, transport, worker_id, stop or asyncio.Event(), on_progress, now)
    report = await run.run()
    if report.done:
        log.info(
            "deliveries: %d sent, %d to retry, %d failed, %d bounced, %d skipped",
            report.sent, report.retried, report.failed, report.bounced, report.skipped,
        )
    return report


class _Drain:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        transport: Transport,
        worker_id: str,
        stop: asyncio.Event,
        on_progress: Callable[[int, int], None] | None,
        now: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.transport = transport
        self.worker_id = worker_id
        self.stop = stop
        self.on_progress = on_progress
        self.now = now
        self.tokens = Tokens(load_secret(settings.web.secret_key, settings.store.dir), settings.web.confirm_token_max_age)
        self.report = DrainReport()
        self.total = 0
        self.attempts: dict[int, int] = {}
        self.skeletons: dict[int, MessageSkeleton] = {}
        self.ready: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=settings.mail.connections)
        self.store_lock = asyncio.Lock()
        self.sent: list[store.Sent] = []
        self.retries: list[store.Retry] = []
        self.bounces: list[store.Bounce] = []
        # Group commit: outcomes are numbered as they finish; `recorded` is the last number written.
        self.finished = 0
        self.recorded = 0
        self.outcomes_changed = asyncio.Condition()
        self.wake_writer = asyncio.Event()
        self.senders_done = False
        self.write_error: BaseException | None = None

    async def run(self) -> DrainReport:
        self.total = await asyncio.to_thread(self._in_transaction, store.count_due, self.now())
        connections = self.settings.mail.connections
        senders = [asyncio.create_task(self._sender()) for _ in range(connections)]
        writer = asyncio.create_task(self._write_outcomes())
        try:
            await self._feed()
        finally:
            await self._stop(senders)
            # Not cancelled: a cancel could land after a write took the buffers, losing their count.
            self.senders_done = True
            self.wake_writer.set()
            await writer
            if self.write_error is not None:
                raise self.write_error
            await self._write(())
            async with self.store_lock:
                await asyncio.to_thread(self._in_transaction, store.release, self.worker_id)
        return self.report

    async def _stop(self, senders: list[asyncio.Task[None]]) -> None:
        """Let the senders finish the jobs handed to them, then end them (or see they ended on a store error)."""
        stops_left = len(senders)
        while stops_left and not all(sender.done() for sender in senders):
            try:
                self.ready.put_nowait(None)
                stops_left -= 1
            except asyncio.QueueFull:
                await asyncio.sleep(0.001)
        await asyncio.gather(*senders, return_exceptions=True)

    async def _feed(self) -> None:
        mail = self.settings.mail
        lease = timedelta(seconds=mail.lease_seconds + (mail.batch_size / mail.rate_limit if mail.rate_limit else 0))
        while not self.stop.is_set():
            now = self.now()
            async with self.store_lock:
                batch = await asyncio.to_thread(
                    self._in_transaction, store.claim, self.worker_id,
                    now=now, lease_until=now + lease, limit=mail.batch_size,
                )
            if not batch:
                return
            for wave in _chunks(batch, mail.connections):
                if self.stop.is_set():
                    return
                jobs = [await self._job(delivery) for delivery in wave]
                startable = await self._write([job.delivery.id for job in jobs])
                for job in jobs:
                    if job.delivery.id in startable:
                        await self.ready.put(job)

    async def _job(self, delivery: store.Claimed) -> _Job:
        skeleton = self.skeletons.get(delivery.edition_id)
        if skeleton is None:
            content = await asyncio.to_thread(self._in_transaction, store.edition_content, delivery.edition_id)
            skeleton = edition_skeleton(self.settings, content.subject, content.html, content.text)
            self.skeletons[delivery.edition_id] = skeleton
        message_id = message_id_for(self.settings, delivery.key)
        message = skeleton.build(
            to_email=delivery.email,
            to_name=delivery.name,
            unsubscribe_url=unsubscribe_url(self.settings, self.tokens, delivery.subscriber_id),
            preferences_url=preferences_url(self.settings, self.tokens, delivery.subscriber_id),
            message_id=message_id,
        )
        return _Job(delivery, Outgoing(skeleton.envelope_sender, delivery.email, message), message_id)

    async def _sender(self) -> None:
        while (job := await self.ready.get()) is not None:
            try:
                await self.transport.send(job.item)
            except SendError as exc:
                self._failed(job, exc)
            except Exception as exc:  # a transport bug or a full disk must not stop the other sends
                log.exception("sending delivery %d failed unexpectedly", job.delivery.id)
                self._failed(job, SendError(f"{type(exc).__name__}: {exc}", permanent=False))
            else:
                self.sent.append(store.Sent(job.delivery.id, job.message_id))
            await self._until_recorded()

    def _failed(self, job: _Job, error: SendError) -> None:
        delivery = job.delivery
        if error.permanent:
            self.bounces.append(store.Bounce(delivery.id, delivery.subscriber_id, error.reason))
            return
        attempts = self.attempts.get(delivery.id, 1)
        next_at = self.now() + backoff(self.settings, attempts) if attempts < self.settings.mail.max_attempts else None
        self.retries.append(store.Retry(delivery.id, error.reason, next_at))

    async def _until_recorded(self) -> None:
        """Wait until the outcome just buffered by this sender is in the store."""
        self.finished += 1
        mine = self.finished
        self.wake_writer.set()
        async with self.outcomes_changed:
            await self.outcomes_changed.wait_for(lambda: self.recorded >= mine or self.write_error is not None)
        if self.write_error is not None:
            raise self.write_error

    async def _write_outcomes(self) -> None:
        try:
            while not self.senders_done:
                await self.wake_writer.wait()
                self.wake_writer.clear()
                await self._write(())
        except BaseException as exc:
            # The store failed: stop the senders too (their outcomes cannot be recorded); run() re-raises.
            self.write_error = exc
            async with self.outcomes_changed:
                self.outcomes_changed.notify_all()

    async def _write(self, start: Sequence[int]) -> dict[int, int]:
        """Record the finished sends buffered so far and mark `start` sending, in one transaction."""
        async with self.store_lock:
            finished = self.finished
            sent, self.sent = self.sent, []
            retries, self.retries = self.retries, []
            bounces, self.bounces = self.bounces, []
            if sent or retries or bounces or start:
                startable, skipped = await asyncio.to_thread(
                    self._in_transaction, self._record_and_start, sent, retries, bounces, start, self.now()
                )
            else:
                startable, skipped = {}, set()
        async with self.outcomes_changed:
            self.recorded = finished
            self.outcomes_changed.notify_all()
        self.attempts.update(startable)
        for delivery_id in (*(s.id for s in sent), *(r.id for r in retries), *(b.id for b in bounces)):
            self.attempts.pop(delivery_id, None)
        self._count(sent, retries, bounces, len(skipped))
        return startable

    def _record_and_start(
        self,
        connection,
        sent: list[store.Sent],
        retries: list[store.Retry],
        bounces: list[store.Bounce],
        start: Sequence[int],
        now: datetime,
    ) -> tuple[dict[int, int], set[int]]:
        store.record(connection, self.worker_id, sent=sent, retries=retries, bounces=bounces, now=now)
        return store.start_sending(connection, self.worker_id, start)

    def _count(self, sent: list[store.Sent], retries: list[store.Retry], bounces: list[store.Bounce], skipped: int) -> None:
        failed = sum(1 for r in retries if r.next_attempt_at is None)
        report = self.report
        report.sent += len(sent)
        report.retried += len(retries) - failed
        report.failed += failed
        report.bounced += len(bounces)
        report.skipped += skipped
        for outcome, number in (("sent", len(sent)), ("retry", len(retries) - failed), ("failed", failed),
                                ("bounced", len(bounces))):
            if number:
                DELIVERIES.labels(outcome=outcome).inc(number)
        if self.on_progress and (sent or retries or bounces or skipped):
            self.on_progress(report.done, max(self.total, report.done))

    def _in_transaction(self, operation, *args, **kwargs):
        with self.engine.begin() as connection:
            return operation(connection, *args, **kwargs)


def _chunks(items: Sequence[store.Claimed], size: int) -> Iterator[Sequence[store.Claimed]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

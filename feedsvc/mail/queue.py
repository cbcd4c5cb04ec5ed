"""Draining the delivery queue: claim due deliveries, personalise each edition per subscriber, send, record.

The pipeline, one drain per process at a time:

    claim a batch (lease) -> for each wave of `mail.connections` deliveries:
        personalise -> mark the wave `sending` (one transaction, also recording finished sends) -> hand to senders
    senders (`mail.connections` tasks) -> transport.send -> outcome buffered -> written within FLUSH_INTERVAL

Crash safety: a delivery turns `sending` only just before its own send, and its outcome is written at most
FLUSH_INTERVAL after the server accepted it (sooner when a wave's worth is waiting, or with the next wave's
`sending` mark). So a kill -9 repeats only mails in flight or accepted in the last few milliseconds, all of
them rows left `sending`. Outcomes are written together, one transaction per flush, and every store call
runs in a worker thread, under one lock, so SMTP I/O never waits on it.
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
from feedsvc.mail.message import AddressError, MessageSkeleton, feedback_id, mail_address, message_id_for
from feedsvc.mail.render import edition_skeleton
from feedsvc.mail.transport import Outgoing, SendError, Transport
from feedsvc.metrics import DELIVERIES
from feedsvc.store import deliveries as store
from feedsvc.tokens import (
    Tokens,
    bounce_sender,
    load_secret,
    preferences_url,
    unsubscribe_mailto,
    unsubscribe_url,
)

log = logging.getLogger(__name__)

# Longest time an accepted mail's `sent` waits to be written (bounds what a crash can repeat).
FLUSH_INTERVAL = 0.005

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
        self.wake_writer = asyncio.Event()
        self.senders_done = False
        self.write_error: BaseException | None = None
        self.halted = asyncio.Event()  # our own reason to stop (the store failed); `stop` is the caller's
        mail = settings.mail
        self.lease = timedelta(seconds=mail.lease_seconds + (mail.batch_size / mail.rate_limit if mail.rate_limit else 0))
        self.renewed_at = now()

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
        """Let the senders finish the jobs handed to them, then end them."""
        for _ in senders:
            await self.ready.put(None)
        await asyncio.gather(*senders)

    async def _feed(self) -> None:
        mail = self.settings.mail
        while not self._stopping():
            now = self.now()
            async with self.store_lock:
                batch = await asyncio.to_thread(
                    self._in_transaction, store.claim, self.worker_id,
                    now=now, lease_until=now + self.lease, limit=mail.batch_size,
                )
                self.renewed_at = now
            if not batch:
                return
            for wave in _chunks(batch, mail.connections):
                if self._stopping():
                    return
                jobs = [job for delivery in wave if (job := await self._job(delivery))]
                startable = await self._write([job.delivery.id for job in jobs])
                for job in jobs:
                    if job.delivery.id in startable:
                        await self.ready.put(job)

    def _stopping(self) -> bool:
        return self.stop.is_set() or self.halted.is_set()

    async def _job(self, delivery: store.Claimed) -> _Job | None:
        """The personalised message of a delivery; None when its address cannot be mailed (a bounce)."""
        skeleton = self.skeletons.get(delivery.edition_id)
        if skeleton is None:
            content = await asyncio.to_thread(self._in_transaction, store.edition_content, delivery.edition_id)
            skeleton = edition_skeleton(self.settings, content.subject, content.html, content.text)
            self.skeletons[delivery.edition_id] = skeleton
        message_id = message_id_for(self.settings, delivery.key)
        try:
            message = skeleton.build(
                to_email=delivery.email,
                to_name=delivery.name,
                unsubscribe_url=unsubscribe_url(self.settings, self.tokens, delivery.subscriber_id, delivery.link_key),
                preferences_url=preferences_url(self.settings, self.tokens, delivery.subscriber_id, delivery.link_key),
                message_id=message_id,
                unsubscribe_mailto=unsubscribe_mailto(self.settings, self.tokens, delivery.subscriber_id),
                feedback_id=feedback_id(self.settings, delivery.edition_id),
            )
            recipient = mail_address(delivery.email)
        except AddressError as exc:
            self.bounces.append(store.Bounce(delivery.id, delivery.subscriber_id, str(exc)))
            return None
        # With a bounce address, each delivery has its own envelope sender, so a late bounce names it (VERP).
        sender = bounce_sender(self.settings, self.tokens, delivery.id) or skeleton.envelope_sender
        return _Job(delivery, Outgoing(sender, recipient, message), message_id)

    async def _sender(self) -> None:
        while (job := await self.ready.get()) is not None:
            if self._lease_is_stale():
                # A slow server: the batch's claims are renewed before this send, not only after it.
                await self._write(())
            try:
                await self.transport.send(job.item)
            except SendError as exc:
                self._failed(job, exc)
            except Exception as exc:  # a transport bug or a full disk must not stop the other sends
                log.exception("sending delivery %d failed unexpectedly", job.delivery.id)
                self._failed(job, SendError(f"{type(exc).__name__}: {exc}", permanent=False))
            else:
                self.sent.append(store.Sent(job.delivery.id, job.message_id))
            if len(self.sent) + len(self.retries) + len(self.bounces) >= self.settings.mail.connections:
                self.wake_writer.set()

    def _failed(self, job: _Job, error: SendError) -> None:
        delivery = job.delivery
        if error.permanent:
            self.bounces.append(store.Bounce(delivery.id, delivery.subscriber_id, error.reason))
            return
        attempts = self.attempts.get(delivery.id, 1)
        next_at = self.now() + backoff(self.settings, attempts) if attempts < self.settings.mail.max_attempts else None
        self.retries.append(store.Retry(delivery.id, error.reason, next_at))

    async def _write_outcomes(self) -> None:
        try:
            while not self.senders_done:
                try:
                    await asyncio.wait_for(self.wake_writer.wait(), FLUSH_INTERVAL)
                except TimeoutError:
                    pass
                self.wake_writer.clear()
                if self.sent or self.retries or self.bounces:
                    await self._write(())
        except Exception as exc:  # noqa: BLE001 - kept and re-raised by run()
            # The store failed: hand out nothing more; run() re-raises once the jobs in hand are done.
            self.write_error = exc
            self.halted.set()

    async def _write(self, start: Sequence[int]) -> dict[int, int]:
        """Record the finished sends buffered so far and mark `start` sending, in one transaction."""
        async with self.store_lock:
            sent, self.sent = self.sent, []
            retries, self.retries = self.retries, []
            bounces, self.bounces = self.bounces, []
            if sent or retries or bounces or start or self._lease_is_stale():
                startable, skipped = await asyncio.to_thread(
                    self._in_transaction, self._record_and_start, sent, retries, bounces, start, self.now()
                )
            else:
                startable, skipped = {}, set()
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
        # A batch held up by a slow or failing server keeps its claims: renewed well before they expire.
        if self._lease_is_stale(now):
            store.renew(connection, self.worker_id, now + self.lease)
            self.renewed_at = now
        return store.start_sending(connection, self.worker_id, start)

    def _lease_is_stale(self, now: datetime | None = None) -> bool:
        return (now or self.now()) - self.renewed_at > self.lease / 3

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

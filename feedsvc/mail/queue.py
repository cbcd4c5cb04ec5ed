"""Draining the delivery queue: claim due deliveries, personalise each edition per subscriber, send, record.

The pipeline, one drain per process at a time:

    claim a batch (lease; the next is claimed while this one is sent) -> for each wave of `mail.connections`:
        personalise -> mark the wave `sending` (one write, also recording finished sends) -> hand to senders
        (the mark and hand-over of one wave run while the next wave is personalised)
    senders (`mail.connections` tasks) -> transport.start -> (the reply comes) outcome buffered -> written soon
        after (below); a sender takes its next mail as soon as this one is on the wire, so over SMTP a connection
        carries the next envelope while the reply to the last message is awaited (`mail.smtp`)

Crash safety: a delivery turns `sending` only just before its own send; at most four waves are `sending` and not yet
sent: one on the wire awaiting its replies (of which only the messages sent whole, one per connection, may have
reached the server), one being started by the senders, one in their queue, one being marked. Its outcome is written
with the next wave's `sending` mark (the same transaction; on PostgreSQL the same statement), or by the writer once
it waited FLUSH_INTERVAL both from the server's acceptance and from the end of the last store write: at most one
store write plus FLUSH_INTERVAL after the server accepted it (a few milliseconds on SQLite, 5-15 ms on a PostgreSQL
server that commits in 2-5 ms). So a kill -9 repeats only mails in flight or accepted within that time, all of them
rows left `sending`. While the queue is being fed, that is one write per wave. Every store call runs under one lock
(on PostgreSQL, claims on a connection of their own do not), in a worker thread so SMTP I/O never waits on it (or,
for `feedsvc digest send` on SQLite, on the loop's own thread: see `drain`); on PostgreSQL a wave's write with no
failure among its outcomes is one statement sent from the loop itself, on an asyncio connection, which the loop does
not wait for (`_on_loop`).

A store that cannot take a write (SQLite locked by another process past its busy timeout, PostgreSQL restarting)
repeats nothing: the outcomes stay in memory and the write is retried with backoff until the store answers; the
sends in flight finish meanwhile and no new one starts. The batch's claims are renewed every third of the lease,
also while a send is in flight, so no other worker takes over a mail that is being sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from feedsvc import retry
from feedsvc.config import Settings
from feedsvc.mail.message import (
    AddressError,
    MessageSkeleton,
    edition_skeleton,
    feedback_id,
    mail_address,
    message_id_for,
)
from feedsvc.mail.transport import Outgoing, SendError, Transport
from feedsvc.metrics import DELIVERIES
from feedsvc.store import deliveries as store
from feedsvc.store.on_loop import LoopConnection
from feedsvc.tokens import (
    Tokens,
    bounce_sender,
    confirm_url,
    load_secret,
    preferences_url,
    unsubscribe_mailto,
    unsubscribe_url,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Longest time an accepted mail's `sent` waits to be written (bounds what a crash can repeat).
FLUSH_INTERVAL = 0.005

# Waits between two tries of a store write that failed (locked, unreachable): doubling from first to last.
STORE_RETRY_FIRST = 0.05
STORE_RETRY_LAST = 2.0


def utc_now() -> datetime:
    return datetime.now(UTC)


REASONS_LOGGED = 5  # distinct reasons for mails not sent, logged at the end of a drain


@dataclass
class DrainReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0  # the subscriber left (unsubscribed, bounced elsewhere) after the delivery was queued
    # Why the mails to retry, failed and bounced were not sent, as the relay or the connection said: reason -> mails.
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return self.sent + self.retried + self.failed + self.bounced + self.skipped


@dataclass(frozen=True, slots=True)
class _Job:
    delivery: store.Claimed
    item: Outgoing
    message_id: str


def backoff(settings: Settings, attempts: int) -> timedelta:
    return retry.backoff(settings.mail.retry_base_seconds, attempts)


async def drain(
    settings: Settings,
    engine: Engine,
    transport: Transport,
    *,
    worker_id: str,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    now: Callable[[], datetime] = utc_now,
    kind: str | None = None,
    store_inline: bool = False,
) -> DrainReport:
    """Send every delivery due now (only those of `kind`, when given); return what became of them.

    Set `stop` to end early: sends already started finish and are recorded, unstarted claims are released.
    `on_progress(done, total)` is called as outcomes are recorded. `now` is the clock (tests move it).
    `store_inline`: on SQLite, run the store calls on the event loop's own thread, for a process that does nothing
    but this drain (`feedsvc digest send`): each call then blocks the loop (a fraction of a millisecond; up to the
    busy timeout while another process holds the write lock), but on a busy machine the hand-off of every call
    to a worker thread and back waits for the scheduler twice, which starved the senders. Never in the service,
    whose loop also serves requests.
    """
    inline = store_inline and engine.dialect.name == "sqlite"
    run = _Drain(settings, engine, transport, worker_id, stop or asyncio.Event(), on_progress, now, kind, inline)
    report = await run.run()
    if report.done:
        log.info(
            "deliveries: %d sent, %d to retry, %d failed, %d bounced, %d skipped",
            report.sent, report.retried, report.failed, report.bounced, report.skipped,
        )
    _log_reasons(report.reasons)
    return report


def _log_reasons(reasons: Counter[str]) -> None:
    """Why mails were not sent (a relay that refuses connections, a refused recipient), the commonest first: the
    counts alone would not say what to fix. For `feedsvc digest send` and the service alike."""
    shown = reasons.most_common(REASONS_LOGGED)
    for reason, mails in shown:
        log.warning("deliveries: %d not sent: %s", mails, reason)
    if others := reasons.total() - sum(mails for _, mails in shown):
        log.warning("deliveries: %d not sent for other reasons", others)


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
        kind: str | None,
        store_inline: bool,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.transport = transport
        self.worker_id = worker_id
        self.stop = stop
        self.on_progress = on_progress
        self.now = now
        self.kind = kind
        self.store_inline = store_inline  # see drain()
        self.tokens = Tokens(load_secret(settings.web.secret_key, settings.store.dir), settings.web.confirm_token_max_age)
        self.report = DrainReport()
        self.total = 0
        self.attempts: dict[int, int] = {}
        self.editions: dict[int, tuple[MessageSkeleton, str]] = {}  # each edition's skeleton and Feedback-ID
        self.ready: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=settings.mail.connections)
        self.awaiting: set[asyncio.Future[None]] = set()  # sent, the server's reply still to come
        self.store_lock = asyncio.Lock()
        self.connections: dict[str, Connection] = {}  # see _on_connection
        self.loop_connection: LoopConnection | None = None  # see _on_loop
        # On PostgreSQL, the waves' writes run from the loop (_on_loop), and claims on a connection of their own in
        # autocommit mode, beside those writes (_claim).
        self.autocommits = engine.dialect.name == "postgresql"
        self.sent: list[store.Sent] = []
        self.retries: list[store.Retry] = []
        self.bounces: list[store.Bounce] = []
        self.wake_writer = asyncio.Event()  # set when an outcome arrives with none waiting before it
        self.unwritten_since: float | None = None  # the loop's time of the oldest outcome not written yet
        self.store_free_at = 0.0  # the loop's time when the last store write ended
        self.finished = asyncio.Event()  # the senders are done: the writer and the lease renewal end
        self.write_error: BaseException | None = None
        self.halted = asyncio.Event()  # our own reason to stop (the store failed); `stop` is the caller's
        mail = settings.mail
        self.lease = timedelta(seconds=mail.lease_seconds + (mail.batch_size / mail.rate_limit if mail.rate_limit else 0))
        self.renewed_at = now()

    async def run(self) -> DrainReport:
        try:
            return await self._run()
        finally:
            async with self.store_lock:
                await self._on_store(self._close_connections)
                await self._close_loop_connection()

    async def _run(self) -> DrainReport:
        self.total = await self._on_store(self._in_transaction, store.count_due, self.now())
        connections = self.settings.mail.connections
        senders = [asyncio.create_task(self._sender()) for _ in range(connections)]
        # Not cancelled at the end: a cancel could land after a write took the buffers, losing their count.
        writer = asyncio.create_task(self._keep_writing(self._write_outcomes()))
        renewal = asyncio.create_task(self._keep_writing(self._renew_leases()))
        try:
            await self._feed()
        finally:
            await self._stop(senders)
            self.finished.set()
            self.wake_writer.set()
            await asyncio.gather(writer, renewal)
            if self.write_error is not None:
                raise self.write_error
            await self._write(())
            async with self.store_lock:
                await self._on_store(self._in_transaction, store.release, self.worker_id)
        return self.report

    async def _stop(self, senders: list[asyncio.Task[None]]) -> None:
        """Let the senders finish the jobs handed to them, then end them, once every reply has come."""
        for _ in senders:
            await self.ready.put(None)
        await asyncio.gather(*senders)
        if self.awaiting:  # each recorded by _on_reply; a cancelled wait leaves them to come
            await asyncio.wait(set(self.awaiting))

    async def _feed(self) -> None:
        # A wave is marked `sending` and handed to the senders by a task of its own while the next wave is
        # personalised: on PostgreSQL a commit is milliseconds of waiting, which the personalising overlaps.
        # The next wave's mark starts only once the wave before it is in the senders' queue, so no more
        # deliveries are `sending` at once than when each wave waited for its own write.
        # The next batch is claimed while this one is sent: on PostgreSQL a claim of 200 rows takes milliseconds,
        # which the senders would otherwise spend idle.
        starting: asyncio.Task[None] | None = None
        claiming = asyncio.create_task(self._claim())
        try:
            while not self._stopping():
                batch = await claiming
                if not batch:
                    return
                claiming = asyncio.create_task(self._claim())
                for wave in _chunks(batch, self.settings.mail.connections):
                    if self._stopping():
                        return
                    jobs = [job for delivery in wave if (job := await self._job(delivery))]
                    if starting is not None:
                        await starting
                    starting = asyncio.create_task(self._start(jobs))
        finally:
            if starting is not None:
                await starting
            await self._settle(claiming)

    async def _claim(self) -> list[store.Claimed]:
        mail = self.settings.mail
        now = self.now()
        claim = functools.partial(
            store.claim, worker_id=self.worker_id, now=now, lease_until=now + self.lease, limit=mail.batch_size,
            kind=self.kind,
        )
        if self.autocommits:  # its own connection: no wait for a wave's write, nor a wave's for it
            batch = await self._until_stored(functools.partial(self._on_store, self._on_connection, "claims", claim))
        else:
            async with self.store_lock:
                batch = await self._until_stored(functools.partial(self._on_store, self._in_transaction, claim))
        self.renewed_at = now
        return batch

    @staticmethod
    async def _settle(claiming: asyncio.Task[list[store.Claimed]]) -> None:
        """Wait for a claim made ahead that the feed no longer needs (stopped, or failed): the drain releases
        its rows with the rest at the end."""
        try:
            await claiming
        except Exception as exc:  # the feed's own failure, if any, is the one raised
            log.warning("deliveries: claiming the next batch failed: %s", exc)

    async def _start(self, jobs: list[_Job]) -> None:
        """Mark the jobs `sending`, then give the senders those still ours to send."""
        startable = await self._write([job.delivery.id for job in jobs])
        for job in jobs:
            if job.delivery.id in startable:
                await self.ready.put(job)

    def _stopping(self) -> bool:
        return self.stop.is_set() or self.halted.is_set()

    async def _job(self, delivery: store.Claimed) -> _Job | None:
        """The personalised message of a delivery; None when its address cannot be mailed (a bounce)."""
        try:
            if delivery.edition_id is None:
                job = self._confirmation_job(delivery)
            else:
                job = await self._edition_job(delivery, delivery.edition_id)
        except AddressError as exc:
            self.bounces.append(store.Bounce(delivery.id, delivery.subscriber_id, str(exc)))
            return None
        # With a bounce address, each delivery has its own envelope sender, so a late bounce names it (VERP).
        sender = bounce_sender(self.settings, self.tokens, delivery.id)
        return replace(job, item=replace(job.item, sender=sender)) if sender else job

    async def _edition_job(self, delivery: store.Claimed, edition_id: int) -> _Job:
        edition = self.editions.get(edition_id)
        if edition is None:
            async with self.store_lock:
                content = await self._on_store(self._in_transaction, store.edition_content, edition_id)
            skeleton = edition_skeleton(self.settings, content.subject, content.html, content.text)
            edition = self.editions[edition_id] = (skeleton, feedback_id(self.settings, edition_id))
        skeleton, edition_feedback_id = edition
        message_id = message_id_for(self.settings, delivery.key)
        message = skeleton.build(
            to_email=delivery.email,
            to_name=delivery.name,
            unsubscribe_url=unsubscribe_url(self.settings, self.tokens, delivery.subscriber_id, delivery.link_key),
            preferences_url=preferences_url(self.settings, self.tokens, delivery.subscriber_id, delivery.link_key),
            message_id=message_id,
            unsubscribe_mailto=unsubscribe_mailto(self.settings, self.tokens, delivery.subscriber_id),
            feedback_id=edition_feedback_id,
        )
        return _Job(delivery, Outgoing(skeleton.envelope_sender, mail_address(delivery.email), message), message_id)

    def _confirmation_job(self, delivery: store.Claimed) -> _Job:
        # Rendered at each attempt: the link's signature is fresh, so a mail retried for a day still works.
        # Imported here: the templates, Babel, lxml and css-inline are start-up a digest send does not need.
        from feedsvc.mail.render import confirmation_message

        item = confirmation_message(
            self.settings,
            to_email=delivery.email,
            to_name=delivery.name,
            confirm_url=confirm_url(self.settings, self.tokens, delivery.subscriber_id, delivery.link_key),
        )
        headers = email.parser.BytesHeaderParser().parsebytes(item.message)
        return _Job(delivery, item, str(headers["Message-ID"] or ""))

    async def _sender(self) -> None:
        while (job := await self.ready.get()) is not None:
            try:
                accepted = await self.transport.start(job.item, self._renew_if_stale)
            except Exception as exc:
                self._record_outcome(job, exc)
                continue
            # The reply settles it when it comes: meanwhile this sender starts the next mail.
            self.awaiting.add(accepted)
            accepted.add_done_callback(functools.partial(self._on_reply, job))

    async def _renew_if_stale(self) -> None:
        if self._lease_is_stale():
            # A slow server: the batch's claims are renewed before this mail goes out, not only after it.
            await self._write(())

    def _on_reply(self, job: _Job, accepted: asyncio.Future[None]) -> None:
        self.awaiting.discard(accepted)
        if not accepted.cancelled():  # cancelled, the outcome is unknown: the row stays `sending`, as after a crash
            self._record_outcome(job, accepted.exception())

    def _record_outcome(self, job: _Job, error: BaseException | None) -> None:
        if error is None:
            self.sent.append(store.Sent(job.delivery.id, job.message_id))
        elif isinstance(error, SendError):
            self._failed(job, error)
        else:  # a transport bug or a full disk must not stop the other sends
            log.error("sending delivery %d failed unexpectedly", job.delivery.id, exc_info=error)
            self._failed(job, SendError(f"{type(error).__name__}: {error}", permanent=False))
        self._outcome_waits()

    def _outcome_waits(self) -> None:
        if self.unwritten_since is None:
            self.unwritten_since = asyncio.get_running_loop().time()
            self.wake_writer.set()

    def _failed(self, job: _Job, error: SendError) -> None:
        delivery = job.delivery
        if error.permanent:
            self.bounces.append(store.Bounce(delivery.id, delivery.subscriber_id, error.reason))
            return
        attempts = self.attempts.get(delivery.id, 1)
        next_at = self.now() + backoff(self.settings, attempts) if attempts < self.settings.mail.max_attempts else None
        self.retries.append(store.Retry(delivery.id, error.reason, next_at))

    async def _keep_writing(self, writing) -> None:
        try:
            await writing
        except Exception as exc:  # kept and re-raised by run()
            # The store failed for good: hand out nothing more; run() re-raises once the jobs in hand are done.
            self.write_error = exc
            self.halted.set()

    async def _write_outcomes(self) -> None:
        """Write outcomes that waited FLUSH_INTERVAL without a wave's write taking them along."""
        loop = asyncio.get_running_loop()
        while not self.finished.is_set():
            await self.wake_writer.wait()
            self.wake_writer.clear()
            while (since := self.unwritten_since) is not None and not self.finished.is_set():
                # While the queue is fed, a wave's mark follows each store write at once and takes the outcomes
                # along; a write of their own (a commit: milliseconds on PostgreSQL) would hold that mark up. So
                # they wait FLUSH_INTERVAL from the end of the store's last write, when that came later.
                delay = max(since, self.store_free_at) + FLUSH_INTERVAL - loop.time()
                if delay > 0 or self.store_lock.locked():
                    await asyncio.sleep(max(delay, FLUSH_INTERVAL))
                else:
                    await self._write(())

    async def _renew_leases(self) -> None:
        """Renew the claims every third of the lease by the wall clock, whatever the sends are doing: a send to a
        slow server may take longer than the lease, and must not be taken over (and sent again) meanwhile."""
        interval = self.lease.total_seconds() / 3
        while not self.finished.is_set():
            try:
                await asyncio.wait_for(self.finished.wait(), interval)
            except TimeoutError:
                await self._write((), renew=True)

    async def _write(self, start: Sequence[int], *, renew: bool = False) -> dict[int, int]:
        """Record the finished sends buffered so far and mark `start` sending, in one transaction."""
        async with self.store_lock:
            sent, self.sent = self.sent, []
            retries, self.retries = self.retries, []
            bounces, self.bounces = self.bounces, []
            self.unwritten_since = None
            if sent or retries or bounces or start or renew or self._lease_is_stale():
                write: Callable[[], Awaitable[tuple[dict[int, int], set[int]]]]
                if self.autocommits and not (retries or bounces or renew or self._lease_is_stale()):
                    write = functools.partial(self._on_loop, sent, start)
                else:
                    # In a transaction: a bounce's three UPDATEs (the delivery, its subscriber, their other mail) stand
                    # or fall together; a renewal of the claims comes every third of the lease.
                    write = functools.partial(
                        self._on_store, self._in_transaction, self._record_and_start, sent, retries, bounces, start, renew
                    )
                startable, skipped = await self._until_stored(write)
                self.store_free_at = asyncio.get_running_loop().time()
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
        renew: bool,
    ) -> tuple[dict[int, int], set[int]]:
        now = self.now()
        # A batch held up by a slow or failing server keeps its claims: renewed well before they expire.
        if renew or self._lease_is_stale(now):
            store.renew(connection, self.worker_id, now + self.lease)
            self.renewed_at = now
        return store.record_and_start(
            connection, self.worker_id, sent=sent, retries=retries, bounces=bounces, start=start, now=now
        )

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
        report.reasons.update(item.error for item in retries)
        report.reasons.update(item.error for item in bounces)
        for outcome, number in (("sent", len(sent)), ("retry", len(retries) - failed), ("failed", failed),
                                ("bounced", len(bounces))):
            if number:
                DELIVERIES.labels(outcome=outcome).inc(number)
        if self.on_progress and (sent or retries or bounces or skipped):
            self.on_progress(report.done, max(self.total, report.done))

    async def _until_stored(self, write: Callable[[], Awaitable[_T]]) -> _T:
        """Run a store call (`write()` makes it), trying again with backoff while the store is locked or unreachable.

        What it writes (outcomes of mails the server accepted) exists nowhere else: giving up would send them
        again. It gives up only when asked to stop and the store has failed for longer than the shutdown timeout.
        Claims go the same way: one made ahead while a batch is sent must not end the drain for an outage that is
        over before the batch is.
        """
        delay = STORE_RETRY_FIRST
        failing_since: float | None = None
        while True:
            try:
                result = await write()
            except (OperationalError, InterfaceError) as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    log.warning("deliveries: the store cannot take a write, retrying until it does: %s", exc.orig)
                if self.stop.is_set() and now - failing_since > self.settings.scheduler.shutdown_timeout:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_LAST)
                continue
            if failing_since is not None:
                log.warning("deliveries: the store took the write after %.1f s", time.monotonic() - failing_since)
            return result

    async def _on_loop(self, sent: list[store.Sent], start: Sequence[int]) -> tuple[dict[int, int], set[int]]:
        """A wave's write on PostgreSQL, from the event loop (`store.on_loop`): the loop personalises and sends
        while the server works, where a worker thread would wait for the interpreter lock after each answer."""
        if self.loop_connection is None:
            self.loop_connection = await LoopConnection.open(self.engine)
        try:
            return await store.record_and_start_on_loop(
                self.loop_connection, self.worker_id, sent=sent, start=start, now=self.now()
            )
        except BaseException:
            await self._close_loop_connection()  # the next try opens a fresh one
            raise

    async def _close_loop_connection(self) -> None:
        connection, self.loop_connection = self.loop_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):  # a connection already lost
                await connection.close()

    async def _on_store(self, call, *args, **kwargs):
        """A store call: in a worker thread, so SMTP I/O never waits on it; or on this thread when the drain was
        asked to (`store_inline`, SQLite only), where a hand-off to a thread and back costs more than the call."""
        if self.store_inline:
            return call(*args, **kwargs)
        return await asyncio.to_thread(call, *args, **kwargs)

    def _in_transaction(self, operation, *args, **kwargs):
        """`operation` in one transaction."""
        return self._on_connection("transactions", operation, *args, **kwargs)

    def _on_connection(self, name: str, operation, *args, **kwargs):
        """`operation` on the drain's own connection `name`, checked out once: a checkout per transaction costs
        PostgreSQL a ping round trip each time. "transactions" begins one around `operation`; "claims" (PostgreSQL
        only) is in autocommit mode, where each claim's statement is a whole write by itself. One call at a time on
        each: "claims" from `_claim`, "transactions" under `store_lock`. On PostgreSQL, "transactions" is checked
        out for each call instead: it serves the rare calls (the count at the start, an edition's content, a
        bounce, a renewal, the release at the end), and one held idle through a server restart would fail its
        next call where the pool's ping replaces it."""
        connection = self.connections.get(name)
        if connection is None:
            connection = self.engine.connect()
            if name != "transactions":
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            self.connections[name] = connection
        try:
            with connection.begin():  # in autocommit, neither BEGIN nor COMMIT reaches the server
                return operation(connection, *args, **kwargs)
        except BaseException:
            # Locked, lost, restarting: the next try starts from a fresh checkout (the pool pings it).
            self._close_connection(name)
            raise
        finally:
            if name == "transactions" and self.autocommits:
                self._close_connection(name)

    def _close_connections(self) -> None:
        for name in list(self.connections):
            self._close_connection(name)

    def _close_connection(self, name: str) -> None:
        connection = self.connections.pop(name, None)
        if connection is not None:
            with contextlib.suppress(Exception):  # a connection already lost: the pool has discarded it
                connection.close()


def _chunks(items: Sequence[store.Claimed], size: int) -> Iterator[Sequence[store.Claimed]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

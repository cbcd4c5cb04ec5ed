"""The jobs of a running service, wired on one APScheduler `AsyncIOScheduler`.

Leader jobs (one instance at a time, chosen by the `scheduler-leader` lease; always this process on SQLite):
- rebuild on post changes (the watcher) — scan, write the feeds, ping the WebSub hub, announce and create editions;
- the same rebuild at the exact publication time of the next future-dated post (a DateTrigger re-planned after
  every scan);
- the same rebuild at the daily and weekly digest times (CronTriggers in the site timezone; missed runs coalesce
  into one, however late).
Every instance drains the delivery queue: at once when editions were created, and every `drain_interval` for
retries. Scans and feed writing run in a worker thread so the HTTP server in the same loop stays responsive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from feedsvc import digests, feeds
from feedsvc.config import Settings
from feedsvc.fediverse.outbox import publish_to_followers
from feedsvc.logging import fields
from feedsvc.mail.queue import drain
from feedsvc.mail.transport import Transport
from feedsvc.posts import Collection
from feedsvc.store import leases
from feedsvc.watch import PostWatcher
from feedsvc.websub import HubPinger, feed_urls

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
# /healthz calls a loop (scheduler, watcher, drain) dead when it has not beaten for this long.
STALE_SECONDS = 10.0


def digest_triggers(settings: Settings) -> dict[str, CronTrigger]:
    """The daily and weekly digest times as cron triggers in the site's timezone (DST handled by the trigger)."""
    return {
        f"digest-{schedule.frequency}": CronTrigger(
            day_of_week=schedule.day_of_week,
            hour=schedule.hour,
            minute=schedule.minute,
            second=schedule.second,
            timezone=schedule.tz,
        )
        for schedule in digests.schedules(settings)
    }


class Heartbeat:
    def __init__(self) -> None:
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.last


class DeliveryLoop:
    """Drains the queue until stopped: when woken (new editions) and every `drain_interval` seconds."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        transport: Transport,
        worker_id: str,
        drain_pass: Callable[[asyncio.Event], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.transport = transport
        self.worker_id = worker_id
        # One pass over a queue: the mail queue's by default, the fediverse's for its own loop.
        self.drain_pass = drain_pass or (
            lambda stop: drain(self.settings, self.engine, self.transport, worker_id=self.worker_id, stop=stop)
        )
        self.running = False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def alive(self) -> bool:
        # A pass over a long queue takes as long as it takes; the loop is alive while it has not ended.
        return self.running

    async def run(self, stop: asyncio.Event) -> None:
        """`stop` makes the current pass finish its in-flight messages, release its claims and return."""
        interval = self.settings.scheduler.drain_interval
        self.running = True
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    # drain logs what it did; a failure (store down…) is logged and retried after the interval.
                    await self.drain_pass(stop)
                except Exception:
                    log.exception("deliveries.drain_failed", extra=fields(worker=self.worker_id))
                waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
                await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
        finally:
            self.running = False


class Jobs:
    """The leader's jobs plus the liveness checks /healthz reports."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        instance_id: str,
        deliveries: DeliveryLoop,
        on_feeds_written: Callable[[], None] | None = None,
        fediverse_deliveries: DeliveryLoop | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.instance_id = instance_id
        self.deliveries = deliveries
        self.fediverse_deliveries = fediverse_deliveries
        self.on_feeds_written = on_feeds_written
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.heartbeat = Heartbeat()
        self.watcher = PostWatcher(settings, self._on_posts_changed)
        self.collection = Collection(settings)
        self.writer = feeds.FeedWriter(settings)
        self.pinger = HubPinger(settings.feeds.websub_hub) if settings.feeds.websub_hub else None
        self.is_leader = False
        self._rebuild_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    # --- liveness -----------------------------------------------------------------------------------------

    def scheduler_alive(self) -> bool:
        return self.scheduler.running and self.heartbeat.age() < STALE_SECONDS

    def watcher_alive(self) -> bool:
        # Only the leader watches; a follower's watcher is idle by design and counts as healthy.
        return not self.is_leader or self.watcher.alive()

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        ttl = self.settings.scheduler.leader_ttl
        self.scheduler.add_job(self.heartbeat.beat, IntervalTrigger(seconds=HEARTBEAT_SECONDS), id="heartbeat")
        self.scheduler.add_job(self._renew_leadership, IntervalTrigger(seconds=ttl / 3), id="leader")
        for job_id, trigger in digest_triggers(self.settings).items():
            self.scheduler.add_job(self.rebuild, trigger, id=job_id, args=[job_id])
        self.scheduler.start()
        # First election and first build right away rather than one interval later.
        self.scheduler.add_job(self._renew_leadership, id="leader-now")

    async def stop(self) -> None:
        self.scheduler.shutdown(wait=False)
        # A rebuild in its worker thread cannot be interrupted; let it finish so files and rows stay whole.
        async with self._rebuild_lock:
            pass
        for task in list(self._background):
            task.cancel()
        if self.is_leader:
            await asyncio.to_thread(leases.release, self.engine, leases.LEADER, self.instance_id)
            self.is_leader = False

    async def _renew_leadership(self) -> None:
        now = datetime.now(UTC)
        try:
            leader = await asyncio.to_thread(
                leases.acquire,
                self.engine,
                leases.LEADER,
                self.instance_id,
                ttl=self.settings.scheduler.leader_ttl,
                now=now,
            )
        except Exception:
            log.exception("leader.renew_failed", extra=fields(instance=self.instance_id))
            leader = False
        if leader and not self.is_leader:
            log.info("leader.elected", extra=fields(instance=self.instance_id))
            self.is_leader = True
            # As its own job: a long first build must not hold up the next renewal of the lease.
            self.scheduler.add_job(self.rebuild, id="rebuild-elected", args=["elected"])
        elif not leader and self.is_leader:
            log.warning("leader.lost", extra=fields(instance=self.instance_id))
            self.is_leader = False

    # --- the leader's work --------------------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        await self.watcher.run(stop)

    async def _on_posts_changed(self, paths: set[Path]) -> None:
        if self.is_leader:
            await self.rebuild("posts-changed", changed=paths)

    async def rebuild(self, reason: str, changed: set[Path] | None = None) -> None:
        """Scan, write changed feeds, ping the hub, announce what is newly published, create due editions."""
        if not self.is_leader:
            return
        async with self._rebuild_lock:
            started = time.perf_counter()
            now = datetime.now(UTC)
            result = await asyncio.to_thread(feeds.build, self.settings, self.collection, self.writer, now, changed)
            written = list(result.report.written) + list(result.report.removed)
            if written and self.on_feeds_written:
                self.on_feeds_written()
            if written and self.pinger:
                self._in_background(self.pinger.ping(feed_urls(self.settings, written)))
            editions = await asyncio.to_thread(digests.run_due, self.settings, self.engine, result.scan, now)
            if editions:
                self.deliveries.wake()
            federated = await asyncio.to_thread(publish_to_followers, self.settings, self.engine, result.scan, now)
            if federated.any and self.fediverse_deliveries:
                self.fediverse_deliveries.wake()
            self._plan_publication(result.scan.next_publication(now))
            log.info(
                "rebuild.done",
                extra=fields(
                    reason=reason,
                    changed_files=len(changed) if changed is not None else None,
                    posts=len(result.scan.posts),
                    feeds_written=len(written),
                    problems=len(result.scan.problems),
                    editions=len(editions),
                    took_ms=round((time.perf_counter() - started) * 1000, 1),
                ),
            )

    def _plan_publication(self, when: datetime | None) -> None:
        """Wake exactly at the next future post's time (replacing any earlier plan)."""
        if when is None:
            if self.scheduler.get_job("publish"):
                self.scheduler.remove_job("publish")
            return
        self.scheduler.add_job(
            self.rebuild,
            DateTrigger(run_date=when),
            id="publish",
            args=["publication-due"],
            replace_existing=True,
        )

    def _in_background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

"""The jobs of a running service, wired on one APScheduler `AsyncIOScheduler`.

Leader jobs (one instance at a time, chosen by the `scheduler-leader` lease; always this process on SQLite):
- rebuild on post changes (the watcher) — scan and write the feeds, then the outputs (`feedsvc.outputs`: ping the
  WebSub hub, announce and create editions, …);
- the same rebuild at the exact publication time of the next future-dated post (a DateTrigger re-planned after
  every scan);
- the same rebuild at the times of the periodic cadences (`feedsvc.cadences`: daily, weekly, monthly, in the site
  timezone; missed runs coalesce into one, however late).
Every instance drains the delivery queue (`mail.delivery_loop`): at once when editions were created, and every
`drain_interval` for retries. Scans and feed writing run in a child process with a deadline (`build_process`), so
neither a slow build nor a stuck one holds up the HTTP server, the deliveries or a SIGTERM in the same loop.

Each step of a rebuild stands alone: feeds that cannot be written (a full disk) or a build that failed are one log
line and a retry later, with back-off, and never keep the posts that were scanned from being announced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from feedsvc.build_process import BuildFailed, BuildProcess
from feedsvc.cadences import Calendar, calendars
from feedsvc.config import Settings
from feedsvc.logging import fields
from feedsvc.mail.delivery_loop import DeliveryLoop
from feedsvc.metrics import FEED_BUILDS
from feedsvc.outputs import EVERYTHING, Rebuild, run_outputs
from feedsvc.posts import Scan
from feedsvc.store import leases
from feedsvc.watch import PostWatcher

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
# /healthz calls a loop (scheduler, watcher, drain) dead when it has not beaten for this long.
STALE_SECONDS = 10.0
# After a failed build or feeds not written, the rebuild is tried again after this long, doubling each time it
# fails again up to the maximum: a disk that has room again is noticed without any post being saved.
RETRY_FIRST_SECONDS = 2.0
RETRY_MAX_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class _Built:
    """What a build hands to its outputs."""

    started: float  # perf_counter when the rebuild began
    now: datetime  # the moment the posts were published at
    scan: Scan
    written: tuple[Path, ...]  # feed files written or removed
    build_seconds: float | None  # until the new feeds were served; None: the build failed
    failed: bool


@dataclass(slots=True)
class _Waiting:
    """Outputs waiting for the previous build's to end: those of the newest build, for what every build since wrote."""

    reason: str
    changed: set[Path] | None  # None: any file may have changed
    built: _Built
    done: asyncio.Future[None]

    def take(self, reason: str, changed: set[Path] | None, built: _Built) -> None:
        """A newer build's outputs instead: its scan and time, and the files both builds wrote (WebSub pings)."""
        written = tuple(dict.fromkeys((*self.built.written, *built.written)))
        self.built = replace(built, written=written, failed=self.built.failed or built.failed)
        self.reason = reason
        self.changed = None if self.changed is None or changed is None else self.changed | changed


class CalendarTrigger(BaseTrigger):
    """Fires at the runs of a cadence's calendar: the digests' periods and the scheduler's wake-ups come from the
    same definition of "when"."""

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        # After a run: the next one. At the start: the first at or after now.
        return self.calendar.next_run(previous_fire_time or now - timedelta(microseconds=1))

    def __str__(self) -> str:
        return f"calendar[{self.calendar.name}]"


def digest_triggers(settings: Settings) -> dict[str, CalendarTrigger]:
    """A trigger per periodic cadence, by job id."""
    return {f"digest-{calendar.name}": CalendarTrigger(calendar) for calendar in calendars(settings)}


class Heartbeat:
    def __init__(self) -> None:
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.last


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
        wakes: Mapping[str, Callable[[], None]] | None = None,
    ) -> None:
        """`wakes`: output name -> what to call when that output queued something (its delivery loop's wake)."""
        self.settings = settings
        self.engine = engine
        self.instance_id = instance_id
        self.on_feeds_written = on_feeds_written
        self.wakes = {"digests": deliveries.wake, **(wakes or {})}
        self.scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.heartbeat = Heartbeat()
        self.watcher = PostWatcher(settings, self._on_posts_changed)
        self.builds = BuildProcess(settings, settings.scheduler.rebuild_timeout)
        self.is_leader = False
        self.stopping = False
        self.ready = False  # the first build is over (whatever its outcome), or this instance does not lead
        self._failures = 0  # failed rebuilds in a row, for the retry back-off
        self._last_scan: Scan | None = None  # of the last build that gave one
        self._build_lock = asyncio.Lock()
        self._outputs_lock = asyncio.Lock()
        self._waiting: _Waiting | None = None  # outputs not started yet (see `rebuild`)
        self._background: set[asyncio.Task[Any]] = set()

    # --- liveness -----------------------------------------------------------------------------------------

    def scheduler_alive(self) -> bool:
        # Not before this instance's first build (or its first election lost): a healthy service serves its feeds.
        return self.ready and self.scheduler.running and self.heartbeat.age() < STALE_SECONDS

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
        self.builds.start()  # importing in the child while the election and the HTTP server start
        # First election and first build right away rather than one interval later.
        self.scheduler.add_job(self._renew_leadership, id="leader-now")

    async def stop(self) -> None:
        """Stop the jobs: a build under way is abandoned (its process killed; feed files are replaced whole), a
        store step under way gets up to `shutdown_timeout` to finish its transaction."""
        timeout = self.settings.scheduler.shutdown_timeout
        self.stopping = True
        self.scheduler.shutdown(wait=False)
        self.builds.kill()
        try:
            for lock in (self._build_lock, self._outputs_lock):
                await asyncio.wait_for(lock.acquire(), timeout)
                lock.release()
        except TimeoutError:
            log.warning("rebuild.shutdown_timeout", extra=fields(timeout_s=timeout))
        for task in list(self._background):
            task.cancel()
        if self._waiting is not None and not self._waiting.done.done():
            self._waiting.done.set_result(None)  # its task may be cancelled before it ever ran
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
        if not leader:
            self.ready = True

    # --- the leader's work --------------------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        await self.watcher.run(stop)

    async def _on_posts_changed(self, paths: set[Path]) -> None:
        if self.is_leader:
            # The watcher's next burst waits for this build, not for its outputs (see `rebuild`).
            await self.rebuild("posts-changed", changed=paths, wait_for_outputs=False)

    async def rebuild(self, reason: str, changed: set[Path] | None = None, *, wait_for_outputs: bool = True) -> None:
        """Scan and write changed feeds, then run every output (`feedsvc.outputs`).

        One build at a time, and the outputs of one build at a time, in the order of the builds; but a build need
        not wait for the previous build's outputs (reading what is new among 50,000 posts takes longer than a
        one-edit build, and a locked store can hold them for seconds), so a save made meanwhile is in the feeds as
        soon as its own build is done. Outputs that have not started yet are those of the newest build only, so
        saves faster than the outputs never pile up a queue of them. Without `wait_for_outputs` this returns once
        the feeds are written and the outputs go on in the background."""
        if not self.is_leader or self.stopping:
            return
        try:
            async with self._build_lock:
                built = await self._build(reason, changed)
        except BaseException:
            self.ready = True
            raise
        if built is None:
            self.ready = True
            return
        if self._waiting is not None:
            self._waiting.take(reason, changed, built)
            done = self._waiting.done
        else:
            done = asyncio.get_running_loop().create_future()
            self._waiting = _Waiting(reason, changed, built, done)
            self._in_background(self._outputs_in_turn())
        if wait_for_outputs:
            await asyncio.shield(done)

    async def _outputs_in_turn(self) -> None:
        waiting = self._waiting  # newer builds' outputs merge into it (`_Waiting.take`) until it starts
        assert waiting is not None
        try:
            async with self._outputs_lock:
                self._waiting = None  # from now on a newer build's outputs wait anew
                if not self.stopping:
                    await self._run_outputs(waiting.reason, waiting.changed, waiting.built)
        except Exception:  # run_outputs reports the outputs' failures itself: this is a bug, in one line
            log.exception("rebuild.outputs_failed", extra=fields(reason=waiting.reason))
        finally:
            self.ready = True
            if not waiting.done.done():
                waiting.done.set_result(None)

    async def _build(self, reason: str, changed: set[Path] | None) -> _Built | None:
        """The feeds' build in the child; None when it failed and there is no earlier scan to go on with."""
        started = time.perf_counter()
        now = datetime.now(UTC)
        try:
            result = await self.builds.build(now, changed)
        except BuildFailed as exc:
            if self.stopping:  # at shutdown the build is abandoned on purpose
                return None
            FEED_BUILDS.labels("failed").inc()
            self._failed(reason, "build", str(exc), changed)
            if self._last_scan is None:
                return None
            # Posts of the last scan still become due and digests still go out while builds fail.
            return _Built(started, now, self._last_scan, (), None, failed=True)
        self._last_scan = result.scan
        written = (*result.report.written, *result.report.removed)
        if written and self.on_feeds_written:
            self.on_feeds_written()
        failed = result.report.error is not None
        FEED_BUILDS.labels("failed" if failed else "ok").inc()
        if failed:
            # The feeds not written keep their last complete version; announcing does not depend on them.
            self._failed(reason, "write", result.report.error or "", changed)
        return _Built(started, now, result.scan, written, time.perf_counter() - started, failed)

    async def _run_outputs(self, reason: str, changed: set[Path] | None, built: _Built) -> None:
        scan = built.scan
        rebuild = Rebuild(self.settings, self.engine, built.now, scan, written=built.written)
        outcome = await run_outputs(rebuild, EVERYTHING, detach=self._in_background)
        failed = built.failed
        for failure in outcome.failed:
            failed = True
            self._failed(reason, failure.output, failure.error, changed)
        for name, count in outcome.done.items():
            if count and name in self.wakes:
                self.wakes[name]()
        self._plan_publication(scan.next_publication(built.now))
        if not failed:
            self._failures = 0
        log.info(
            "rebuild.done",
            extra=fields(
                reason=reason,
                changed_files=len(changed) if changed is not None else None,
                posts=len(scan.posts),
                feeds_written=len(built.written),
                problems=len(scan.problems),
                editions=len(rebuild.editions),
                build_ms=round(built.build_seconds * 1000, 1) if built.build_seconds is not None else None,
                took_ms=round((time.perf_counter() - built.started) * 1000, 1),
            ),
        )

    def _failed(self, reason: str, step: str, error: str, changed: set[Path] | None) -> None:
        """One line saying what failed, and a complete rebuild planned after the back-off delay."""
        delay = min(RETRY_FIRST_SECONDS * 2**self._failures, RETRY_MAX_SECONDS)
        self._failures += 1
        log.error(
            "rebuild.failed",
            extra=fields(
                reason=reason,
                step=step,
                error=error,
                changed_files=len(changed) if changed is not None else None,
                retry_in_s=delay,
            ),
        )
        self.scheduler.add_job(
            self.rebuild,
            DateTrigger(run_date=datetime.now(UTC) + timedelta(seconds=delay)),
            id="rebuild-retry",
            args=["retry"],
            replace_existing=True,
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

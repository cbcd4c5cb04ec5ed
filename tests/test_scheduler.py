"""The scheduler's jobs in-process: triggers, leadership, rebuilds and the publication wake-up, on real files."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import feedparser
import pytest
from conftest import write_post
from test_store_leases import holder_of

from feedsvc.mail.delivery_loop import DeliveryLoop
from feedsvc.mail.transport import transport_from_settings
from feedsvc.scheduler import Jobs, digest_triggers
from feedsvc.store import leases, open_engine


def test_digest_triggers_fire_at_local_time_across_dst(make_settings):
    settings = make_settings(
        site={"timezone": "Europe/Berlin"},
        digest={"daily_time": "08:00:00", "weekly_day": "fri", "weekly_time": "18:30:15"},
    )
    triggers = digest_triggers(settings)
    berlin = ZoneInfo("Europe/Berlin")
    # The night of 29 March 2026 the clocks jump from 02:00 to 03:00: 08:00 local is 07:00 UTC, then 06:00 UTC.
    before = datetime(2026, 3, 28, 9, 0, tzinfo=berlin)
    first = triggers["digest-daily"].get_next_fire_time(None, before)
    second = triggers["digest-daily"].get_next_fire_time(first, first + timedelta(seconds=1))
    assert first.astimezone(UTC) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert second.astimezone(UTC) == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert (first.astimezone(berlin).hour, second.astimezone(berlin).hour) == (8, 8)
    weekly = triggers["digest-weekly"].get_next_fire_time(None, before)
    assert weekly.astimezone(berlin).replace(tzinfo=None) == datetime(2026, 4, 3, 18, 30, 15)


def test_a_dst_free_zone_keeps_the_same_utc_time(make_settings):
    settings = make_settings(site={"timezone": "Asia/Jakarta"}, digest={"daily_time": "08:00:00"})
    trigger = digest_triggers(settings)["digest-daily"]
    moment = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    fires = []
    for _ in range(3):
        moment = trigger.get_next_fire_time(None, moment + timedelta(seconds=1))
        fires.append(moment.astimezone(UTC))
    assert [fire.hour for fire in fires] == [1, 1, 1]  # 08:00 WIB = 01:00 UTC, every day


class Harness:
    """Jobs on real settings and a real SQLite store, inside a running event loop."""

    def __init__(self, settings, instance: str = "test-instance") -> None:
        self.settings = settings
        self.engine = open_engine(settings.store.database_url)
        self.transport = transport_from_settings(settings)
        self.deliveries = DeliveryLoop(settings, self.engine, self.transport, worker_id=instance)
        self.refreshed = 0
        self.jobs = Jobs(settings, self.engine, instance_id=instance, deliveries=self.deliveries,
                         on_feeds_written=self._refreshed)

    def _refreshed(self) -> None:
        self.refreshed += 1

    async def until(self, condition, within: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "condition not reached"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.jobs.stop()
        await self.transport.aclose()
        self.engine.dispose()


def _titles(settings) -> list[str]:
    feed = feedparser.parse((settings.feeds.output_dir / "rss.xml").read_bytes())
    return [entry.title for entry in feed.entries]


def test_the_elected_leader_builds_and_plans_the_next_publication(make_settings):
    settings = make_settings(scheduler={"leader_ttl": 3})
    now = datetime.now(UTC)
    write_post(settings.posts.dir, "old.md", title="Already out", date=now - timedelta(days=1))
    due = now + timedelta(hours=5)
    write_post(settings.posts.dir, "later.md", title="Comes later", date=due)

    async def scenario() -> None:
        harness = Harness(settings)
        harness.jobs.start()
        await harness.until(lambda: harness.jobs.scheduler.get_job("publish") is not None)
        assert harness.jobs.is_leader and harness.jobs.scheduler_alive()
        assert _titles(settings) == ["Already out"]
        assert harness.refreshed == 1
        planned = harness.jobs.scheduler.get_job("publish").next_run_time
        assert abs(planned - due) < timedelta(seconds=1)
        daily = harness.jobs.scheduler.get_job("digest-daily")
        assert (daily.coalesce, daily.misfire_grace_time) == (True, None)  # down for days: one catch-up run
        await harness.close()

    asyncio.run(scenario())


def test_a_post_whose_time_comes_is_published_by_the_wake_up(make_settings):
    settings = make_settings()
    due = datetime.now(UTC) + timedelta(seconds=1.5)
    write_post(settings.posts.dir, "soon.md", title="Due in a moment", date=due)

    async def scenario() -> None:
        harness = Harness(settings)
        harness.jobs.start()
        await harness.until(lambda: (settings.feeds.output_dir / "rss.xml").exists())
        assert _titles(settings) == []
        await harness.until(lambda: _titles(settings) == ["Due in a moment"], within=4)
        assert datetime.now(UTC) >= due
        assert harness.jobs.scheduler.get_job("publish") is None  # nothing further to wait for
        await harness.close()

    asyncio.run(scenario())


def test_only_one_instance_leads_and_a_stopped_leader_hands_over(make_settings):
    settings = make_settings(scheduler={"leader_ttl": 3})
    write_post(settings.posts.dir, "post.md", title="A post", date=datetime.now(UTC) - timedelta(hours=1))

    async def scenario() -> None:
        first, second = Harness(settings, "first"), Harness(settings, "second")
        first.jobs.start()
        await first.until(lambda: first.jobs.is_leader)
        second.jobs.start()
        await asyncio.sleep(0.5)
        assert not second.jobs.is_leader
        # A follower ignores rebuild requests: only the leader writes feeds and creates editions.
        await second.jobs.rebuild("posts-changed")
        assert second.refreshed == 0
        await first.close()
        assert holder_of(second.engine, leases.LEADER, now=datetime.now(UTC)) is None
        await second.until(lambda: second.jobs.is_leader, within=3)  # at its next renewal (ttl / 3)
        await second.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("mode", ["events", "poll"])
def test_a_saved_post_rebuilds_through_the_watcher(make_settings, mode):
    settings = make_settings(scheduler={"watch": mode, "poll_interval": 0.2, "debounce_ms": 50})

    async def scenario() -> None:
        harness = Harness(settings)
        harness.jobs.start()
        stop = asyncio.Event()
        watching = asyncio.create_task(harness.jobs.watch(stop))
        await harness.until(lambda: (settings.feeds.output_dir / "rss.xml").exists())
        await asyncio.sleep(0.3)
        write_post(settings.posts.dir, "new.md", title="Written just now", date=datetime.now(UTC))
        await harness.until(lambda: _titles(settings) == ["Written just now"], within=2)
        assert harness.jobs.watcher_alive()
        stop.set()
        await watching
        await harness.close()

    asyncio.run(scenario())


def _announced(database) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [title for (title,) in connection.execute("SELECT title FROM announcements ORDER BY title")]


async def _hold_store_lock(database, seconds: float) -> asyncio.subprocess.Process:
    """Another process holding the SQLite store's write lock for `seconds` (past the busy timeout if long)."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        (
            "import sqlite3, sys, time; connection = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "connection.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(float(sys.argv[2]))"
        ),
        str(database),
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None and await holder.stdout.readline() == b"locked\n"
    return holder


def _one_post_out(make_settings, **sections) -> tuple:
    """Settings with one post published a day ago, and the path of their SQLite store."""
    settings = make_settings(**sections)
    write_post(settings.posts.dir, "old.md", title="Already out", date=datetime.now(UTC) - timedelta(days=1))
    return settings, settings.store.dir / "feedsvc.db"


async def _leading(settings, database) -> Harness:
    """Jobs started, elected, and done with their first build: the post is announced."""
    harness = Harness(settings)
    harness.jobs.start()
    await harness.until(lambda: _announced(database) == ["Already out"])
    return harness


def test_a_store_that_cannot_record_announcements_does_not_stop_publishing_and_is_retried(make_settings):
    settings, database = _one_post_out(make_settings)

    async def scenario() -> None:
        harness = await _leading(settings, database)
        # Another process holds the store's write lock past the busy timeout (10 s).
        holder = await _hold_store_lock(database, seconds=12)
        write_post(settings.posts.dir, "new.md", title="Fresh", date=datetime.now(UTC) - timedelta(minutes=1))
        rebuilding = asyncio.ensure_future(harness.jobs.rebuild("posts-changed"))
        # The feeds do not wait for the store.
        await harness.until(lambda: _titles(settings) == ["Fresh", "Already out"], within=5)
        await rebuilding
        assert harness.jobs.scheduler.get_job("rebuild-retry") is not None
        # Once the lock is gone, the planned retry announces the post without any file being saved.
        await holder.wait()
        await harness.until(lambda: _announced(database) == ["Already out", "Fresh"], within=10)
        await harness.close()

    asyncio.run(scenario())


def test_saves_are_served_while_the_outputs_of_an_earlier_build_wait_for_the_store(make_settings):
    settings, database = _one_post_out(make_settings, scheduler={"debounce_ms": 50})

    async def scenario() -> None:
        harness = await _leading(settings, database)
        stop = asyncio.Event()
        watching = asyncio.create_task(harness.jobs.watch(stop))
        # Another process holds the store's write lock for 6 s: the announcing output waits for it.
        holder = await _hold_store_lock(database, seconds=6)
        await asyncio.sleep(0.3)
        write_post(settings.posts.dir, "first.md", title="First", date=datetime.now(UTC) - timedelta(minutes=2))
        await harness.until(lambda: _titles(settings) == ["First", "Already out"], within=3)
        # The first save's outputs are still waiting for the store; the second save is served all the same.
        write_post(settings.posts.dir, "second.md", title="Second", date=datetime.now(UTC) - timedelta(minutes=1))
        await harness.until(lambda: _titles(settings) == ["Second", "First", "Already out"], within=3)
        assert holder.returncode is None and _announced(database) == ["Already out"]
        # Once the lock is gone both are announced, whether by their own outputs or by a planned retry.
        await holder.wait()
        await harness.until(lambda: _announced(database) == ["Already out", "First", "Second"], within=15)
        stop.set()
        await watching
        await harness.close()

    asyncio.run(scenario())


def test_outputs_waiting_behind_a_locked_store_are_those_of_the_newest_build_only(make_settings, caplog):
    settings, database = _one_post_out(make_settings)

    async def scenario() -> None:
        harness = await _leading(settings, database)
        holder = await _hold_store_lock(database, seconds=4)
        caplog.set_level("INFO", logger="feedsvc.scheduler")
        caplog.clear()
        for number in range(5):  # saves much faster than outputs that wait for the store
            path = write_post(
                settings.posts.dir, f"p{number}.md", title=f"P{number}", date=datetime.now(UTC) - timedelta(minutes=1)
            )
            await harness.jobs.rebuild("posts-changed", changed={path}, wait_for_outputs=False)
            assert _titles(settings)[0] == f"P{number}"  # served at once
        # The first build's outputs wait for the store; the other four builds' merged into one waiting run.
        assert len(harness.jobs._background) <= 2
        await holder.wait()
        await harness.until(lambda: _announced(database) == ["Already out", "P0", "P1", "P2", "P3", "P4"], within=15)
        await harness.until(lambda: not harness.jobs._background)
        done = [record for record in caplog.records if record.msg == "rebuild.done"]
        assert len(done) == 2
        assert done[-1].feedsvc_fields["feeds_written"] >= 3  # what the merged builds wrote, for WebSub's pings
        await harness.close()

    asyncio.run(scenario())


def test_while_builds_fail_a_post_that_comes_due_is_still_announced(make_settings):
    settings = make_settings(scheduler={"rebuild_timeout": 3})
    now = datetime.now(UTC)
    write_post(settings.posts.dir, "old.md", title="Already out", date=now - timedelta(days=1))
    write_post(settings.posts.dir, "soon.md", title="Due in a moment", date=now + timedelta(seconds=6))
    database = settings.store.dir / "feedsvc.db"

    async def scenario() -> None:
        harness = Harness(settings)
        harness.jobs.start()
        await harness.until(lambda: _announced(database) == ["Already out"])
        # The build process is killed (as by the OOM killer) and the next one hangs on the parse cache (as on a
        # hung network mount): every build from now on fails.
        cache = settings.store.dir / "posts-cache.pickle"
        cache.unlink()
        os.mkfifo(cache)
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
        await harness.until(lambda: _announced(database) == ["Already out", "Due in a moment"], within=15)
        assert _titles(settings) == ["Already out"]  # the feeds wait for a build that works
        await harness.close()

    asyncio.run(scenario())

"""The post watcher on a real folder: real file-system events (and real polling), real timings."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from feedsvc.watch import PostWatcher, is_post_change

EXTENSIONS = [".md", ".markdown", ".txt"]


@pytest.mark.parametrize(
    ("relative", "relevant"),
    [
        ("post.md", True),
        ("2024/post.TXT", True),
        ("notes.markdown", True),
        ("archive", True),  # a folder moved or removed
        ("image.png", False),
        (".post.md.swp", False),
        ("post.md~", False),
        (".#post.md", False),
        ("#post.md#", False),
        ("4913", False),
        ("post.md.tmp", False),
        (".git/objects/ab", False),
        ("drafts/.hidden.md", False),
    ],
)
def test_which_changes_count(relative, relevant):
    assert is_post_change(Path(relative), EXTENSIONS) is relevant


Batches = list[tuple[float, set[Path]]]


async def _watching(
    settings, action: Callable[[Path], Awaitable[None]], *, settle: float = 1.0
) -> tuple[Batches, float, PostWatcher]:
    """Run a watcher, perform `action` on the post folder, wait `settle` s; the batches it reported."""
    batches: Batches = []

    async def record(paths: set[Path]) -> None:
        batches.append((time.monotonic(), paths))

    watcher = PostWatcher(settings, record)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    await asyncio.sleep(0.3 if settings.scheduler.watch == "events" else 1.2 * settings.scheduler.poll_interval)
    started = time.monotonic()
    await action(settings.posts.dir)
    await asyncio.sleep(settle)
    stop.set()
    await asyncio.wait_for(task, 5)
    return batches, started, watcher


def test_a_saved_post_is_reported_within_a_second(make_settings):
    settings = make_settings(scheduler={"debounce_ms": 100})

    async def save(folder: Path) -> None:
        (folder / "new.md").write_text("---\ntitle: New\n---\nbody\n", encoding="utf-8")

    batches, started, _ = asyncio.run(_watching(settings, save))
    assert len(batches) == 1
    reported_at, paths = batches[0]
    assert paths == {settings.posts.dir.resolve() / "new.md"}
    assert reported_at - started < 1.0


def test_a_burst_of_writes_is_one_callback(make_settings):
    settings = make_settings(scheduler={"debounce_ms": 150})

    async def burst(folder: Path) -> None:
        for index in range(10):
            (folder / f"post-{index % 3}.md").write_text(f"---\ntitle: T{index}\n---\n", encoding="utf-8")
            await asyncio.sleep(0.02)

    batches, _, _ = asyncio.run(_watching(settings, burst))
    assert len(batches) == 1
    assert {path.name for path in batches[0][1]} == {"post-0.md", "post-1.md", "post-2.md"}


def test_an_editors_atomic_save_reports_the_post_not_its_temp_files(make_settings):
    settings = make_settings()
    (settings.posts.dir / "post.md").write_text("---\ntitle: Old\n---\n", encoding="utf-8")

    async def vim_like_save(folder: Path) -> None:
        (folder / "4913").write_text("")  # vim's probe
        (folder / "4913").unlink()
        os.replace(folder / "post.md", folder / "post.md~")  # backup
        (folder / ".post.md.swp").write_bytes(b"\0" * 64)
        temporary = folder / ".post.md.tmp"
        temporary.write_text("---\ntitle: New\n---\n", encoding="utf-8")
        os.replace(temporary, folder / "post.md")
        (folder / "post.md~").unlink()

    batches, _, _ = asyncio.run(_watching(settings, vim_like_save))
    assert len(batches) == 1
    assert {path.name for path in batches[0][1]} == {"post.md"}


def test_a_post_rewritten_in_place_is_reported_without_waiting_out_the_quiet_time(make_settings):
    settings = make_settings(scheduler={"debounce_ms": 1000})
    post = settings.posts.dir / "post.md"
    post.write_text("---\ntitle: Old\n---\n", encoding="utf-8")

    async def save_in_place(folder: Path) -> None:
        (folder / "post.md").write_text("---\ntitle: New\n---\n", encoding="utf-8")

    batches, started, _ = asyncio.run(_watching(settings, save_in_place, settle=1.5))
    assert [{path.name for path in paths} for _, paths in batches] == [{"post.md"}]
    # One watchfiles step and the scheduler's delays, far from the 1,000 ms quiet time.
    assert batches[0][0] - started < 0.5


def test_a_post_emptied_midway_through_its_save_waits_for_the_write(make_settings):
    settings = make_settings(scheduler={"debounce_ms": 400})
    post = settings.posts.dir / "post.md"
    post.write_text("---\ntitle: Old\n---\n", encoding="utf-8")

    async def truncate_then_write(folder: Path) -> None:
        with (folder / "post.md").open("r+b") as file:
            file.truncate(0)
            file.flush()
            await asyncio.sleep(0.15)  # an editor stalled between its truncate and its write
            file.write(b"---\ntitle: New\n---\n")

    batches, started, _ = asyncio.run(_watching(settings, truncate_then_write, settle=1.5))
    # One rebuild, of the written post: the empty file alone was not reported.
    assert [{path.name for path in paths} for _, paths in batches] == [{"post.md"}]
    assert batches[0][0] - started >= 0.15 + 0.4 - 0.05


def test_a_post_renamed_away_midway_through_its_save_waits_for_its_return(make_settings):
    settings = make_settings(scheduler={"debounce_ms": 400})
    (settings.posts.dir / "post.md").write_text("---\ntitle: Old\n---\n", encoding="utf-8")

    async def stalled_backup_save(folder: Path) -> None:
        os.replace(folder / "post.md", folder / "post.md~")
        await asyncio.sleep(0.15)  # the post is missing meanwhile
        (folder / "post.md").write_text("---\ntitle: New\n---\n", encoding="utf-8")

    batches, _, _ = asyncio.run(_watching(settings, stalled_backup_save, settle=1.5))
    assert [{path.name for path in paths} for _, paths in batches] == [{"post.md"}]


def test_temp_files_alone_trigger_nothing(make_settings):
    settings = make_settings()

    async def scratch(folder: Path) -> None:
        (folder / ".draft.md.swp").write_bytes(b"x")
        (folder / "draft.md~").write_text("x")
        (folder / "picture.png").write_bytes(b"\x89PNG")
        (folder / ".git").mkdir()
        (folder / ".git" / "HEAD").write_text("ref: x")

    batches, _, watcher = asyncio.run(_watching(settings, scratch))
    assert batches == []
    assert watcher.alive()  # woke up on its heartbeat although nothing happened


def test_polling_mode_sees_changes_on_filesystems_without_events(make_settings):
    settings = make_settings(scheduler={"watch": "poll", "poll_interval": 0.2, "debounce_ms": 50})

    async def save(folder: Path) -> None:
        (folder / "polled.md").write_text("---\ntitle: Polled\n---\n", encoding="utf-8")

    batches, started, _ = asyncio.run(_watching(settings, save))
    assert [{path.name for path in paths} for _, paths in batches] == [{"polled.md"}]
    assert batches[0][0] - started < 1.0


def test_a_failing_callback_is_logged_and_watching_goes_on(make_settings, caplog):
    settings = make_settings(scheduler={"debounce_ms": 50})
    calls: list[set[Path]] = []

    async def flaky(paths: set[Path]) -> None:
        calls.append(paths)
        if len(calls) == 1:
            raise RuntimeError("build exploded")

    async def scenario() -> None:
        watcher = PostWatcher(settings, flaky)
        stop = asyncio.Event()
        task = asyncio.create_task(watcher.run(stop))
        await asyncio.sleep(0.3)
        (settings.posts.dir / "a.md").write_text("a")
        await asyncio.sleep(0.6)
        (settings.posts.dir / "b.md").write_text("b")
        await asyncio.sleep(0.6)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert [{path.name for path in paths} for paths in calls] == [{"a.md"}, {"b.md"}]
    assert "watch.rebuild_failed" in caplog.text and "build exploded" in caplog.text

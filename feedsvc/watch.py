"""Watching the post folder: one debounced callback per burst of saves.

watchfiles reports file-system events (inotify and friends) or, with `scheduler.watch = "poll"`, polls
(network filesystems often deliver no events). An editor's save is several events — a temp file written, the
old file renamed to a backup, the temp renamed over the original — so changes are grouped until the folder has
been quiet for `scheduler.debounce_ms`, and editors' temp and backup files never trigger a rebuild on their own.

watchfiles yields a batch once a whole `step` passed with no new change, checking every `step`: with the quiet
time as its step, a save was reported 1 to 2 quiet times after it (68 ms median at 50 ms). Its step is short here
and the rest of the quiet time is waited for on this side, so a save is reported one quiet time after it, plus
at most one short step.

The quiet time is there for saves made of several events. A burst that only rewrote existing posts in place,
each left a non-empty file (most editors' save, `>`, a sync tool writing over the file), is one event per file
and is complete as it is: it is reported after one short step, without waiting out the rest. A post that appeared,
vanished or is empty (a rename in the middle of an atomic save, a truncate not yet followed by its write) waits
the whole quiet time, so the save's other half joins it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NamedTuple

import watchfiles

from feedsvc.config import Settings
from feedsvc.logging import fields
from feedsvc.posts import is_ignored_name

log = logging.getLogger(__name__)

# A burst of writes is grouped at most this long, so a file written continuously still rebuilds in time.
_MAX_GROUP_MS = 600
# With no change, the watcher still wakes this often to prove it is alive (see `heartbeat_age`).
_HEARTBEAT_MS = 1000
# watchfiles' step: how long a change waits for the next check, at most (see the module doc).
_STEP_MS = 10

OnChange = Callable[[set[Path]], Awaitable[None]]


class _Batch(NamedTuple):
    paths: set[Path]
    in_place: bool  # every change a modification of a file that existed (see the module doc)


def is_post_change(relative: Path, extensions: list[str]) -> bool:
    """Whether a change (path relative to the post folder) can affect the collection: a post file, or a
    folder (moved or removed). Hidden folders (.git) and editors' scratch files never do."""
    if any(is_ignored_name(part) for part in relative.parts):
        return False
    suffix = relative.suffix.lower()
    return suffix in extensions or suffix == ""


class PostWatcher:
    """Calls `on_change(paths)` after each quiet burst of changes under `settings.posts.dir`."""

    def __init__(self, settings: Settings, on_change: OnChange) -> None:
        self.folder = settings.posts.dir.resolve()
        self.extensions = [ext.lower() for ext in settings.posts.extensions]
        self.polling = settings.scheduler.watch == "poll"
        self.poll_delay_ms = int(settings.scheduler.poll_interval * 1000)
        self.quiet_ms = max(settings.scheduler.debounce_ms, 1)
        self.on_change = on_change
        self.last_beat = time.monotonic()

    def heartbeat_age(self) -> float:
        """Seconds since the watcher last woke up; large means it is stuck or dead."""
        return time.monotonic() - self.last_beat

    def alive(self) -> bool:
        tolerance = 5.0 + (self.poll_delay_ms / 1000 if self.polling else 0)
        return self.heartbeat_age() < tolerance

    def _relevant(self, change: watchfiles.Change, path: str) -> bool:
        try:
            relative = Path(path).relative_to(self.folder)
        except ValueError:
            return False
        # The folder itself "changes" (its mtime) whenever a file in it does; polling reports that too.
        return relative != Path(".") and is_post_change(relative, self.extensions)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set. A failing callback is logged; watching goes on."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log.info(
            "watch.started", extra=fields(folder=str(self.folder), mode="poll" if self.polling else "events")
        )
        batches: asyncio.Queue[_Batch | None] = asyncio.Queue()  # None: watching ended
        reading = asyncio.create_task(self._read(stop, batches), name="watch-read")
        try:
            while (paths := await self._quiet_burst(batches)) is not None:
                try:
                    await self.on_change(paths)
                except Exception:
                    log.exception("watch.rebuild_failed", extra=fields(files=len(paths)))
        finally:
            if not reading.done():
                reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading  # a failure of watchfiles itself is this task's failure
        log.info("watch.stopped")

    async def _read(self, stop: asyncio.Event, batches: asyncio.Queue[_Batch | None]) -> None:
        """Queue each batch watchfiles reports (it keeps reading while a rebuild runs)."""
        try:
            async for changes in watchfiles.awatch(
                self.folder,
                watch_filter=self._relevant,
                step=min(self.quiet_ms, _STEP_MS),
                debounce=max(self.quiet_ms, _MAX_GROUP_MS),
                stop_event=stop,
                rust_timeout=_HEARTBEAT_MS,
                yield_on_timeout=True,
                force_polling=self.polling,
                poll_delay_ms=self.poll_delay_ms,
                ignore_permission_denied=True,
            ):
                self.last_beat = time.monotonic()
                if changes:
                    in_place = all(change == watchfiles.Change.modified for change, _ in changes)
                    batches.put_nowait(_Batch({Path(path) for _, path in changes}, in_place))
        finally:
            batches.put_nowait(None)

    async def _quiet_burst(self, batches: asyncio.Queue[_Batch | None]) -> set[Path] | None:
        """The paths of the next burst: batches until none came for the rest of the quiet time (watchfiles
        waited one step of it), or for at most `_MAX_GROUP_MS`; at once when the first batch is complete as it is
        (see the module doc). None once watching ended."""
        first = await batches.get()
        if first is None:
            return None
        paths = first.paths
        if first.in_place and _complete(paths):
            return paths
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _MAX_GROUP_MS / 1000
        rest = max(self.quiet_ms - _STEP_MS, 0) / 1000
        while (wait := min(rest, give_up - loop.time())) > 0:
            try:
                more = await asyncio.wait_for(batches.get(), wait)
            except TimeoutError:
                break
            if more is None:
                batches.put_nowait(None)  # the end comes after this burst
                break
            paths |= more.paths
        return paths


def _complete(paths: set[Path]) -> bool:
    """Whether every path is a non-empty regular file now: a rewrite in place that has been written."""
    for path in paths:
        try:
            info = path.lstat()
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            return False
    return True

"""Watching the post folder: one debounced callback per burst of saves.

watchfiles reports file-system events (inotify and friends) or, with `scheduler.watch = "poll"`, polls
(network filesystems often deliver no events). An editor's save is several events — a temp file written, the
old file renamed to a backup, the temp renamed over the original — so changes are grouped until the folder has
been quiet for `scheduler.debounce_ms`, and editors' temp and backup files never trigger a rebuild on their own.

watchfiles yields a batch once a whole `step` passed with no new change, checking every `step`: with the quiet
time as its step, a save was reported 1 to 2 quiet times after it (68 ms median at 50 ms). Its step is short here
and the rest of the quiet time is waited for on this side, so a save is reported one quiet time after it, plus
at most one short step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

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
        log.info("watch.started", extra=fields(folder=str(self.folder), mode="poll" if self.polling else "events"))
        batches: asyncio.Queue[set[Path] | None] = asyncio.Queue()  # None: watching ended
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

    async def _read(self, stop: asyncio.Event, batches: asyncio.Queue[set[Path] | None]) -> None:
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
                    batches.put_nowait({Path(path) for _, path in changes})
        finally:
            batches.put_nowait(None)

    async def _quiet_burst(self, batches: asyncio.Queue[set[Path] | None]) -> set[Path] | None:
        """The paths of the next burst: batches until none came for the rest of the quiet time (watchfiles
        waited one step of it), or for at most `_MAX_GROUP_MS`; None once watching ended."""
        paths = await batches.get()
        if paths is None:
            return None
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
            paths |= more
        return paths

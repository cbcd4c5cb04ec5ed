"""The service's feed builds, in a process of their own and with a deadline.

A build reads files anyone with write access to the posts folder controls and writes many: in the service's own
process it competes with the event loop (HTTP, deliveries, signals) for the interpreter, and a build stuck on a
pathological file can be neither interrupted nor abandoned (a thread cannot be killed, and the interpreter waits
for it before exiting). In a child process it is killed at its deadline or at shutdown, and the next build starts
a new child, which reads the parse cache on disk. Feed files are replaced atomically, so a kill leaves every feed
whole: the old version or the new one.

The child keeps its `Collection` and `FeedWriter` between builds, so each build only redoes what changed. Its
reply carries only how the scan's posts differ from the previous reply's, and only the posts the service does not
hold yet (`_dump`, `_load`): a whole 10,000-post scan took 100-200 ms to pickle and as long to unpickle on the
service's event loop, for every edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import pickle
import signal
from array import array
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from feedsvc import feeds
from feedsvc.config import Settings
from feedsvc.posts import Collection
from feedsvc.posts.model import Post, replaced_places

# Spawn, not fork: the service runs threads (the store's, uvicorn's), and a forked child could inherit a lock
# that no thread of its own will ever release.
_CONTEXT = multiprocessing.get_context("spawn")
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


class BuildFailed(Exception):
    """The build did not give a result: its deadline passed, it raised, or its process died."""


class BuildProcess:
    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self._posts: list[Post] = []  # the posts of the child's last reply (see `_dump`)
        # While a build waits for the child: the loop, the pipe's descriptor it watches, and the future it awaits.
        self._waiting: tuple[asyncio.AbstractEventLoop, int, asyncio.Future[None]] | None = None

    def start(self) -> Connection:
        """The pipe to a running child, started now if there is none (it takes a moment to import)."""
        if self._process is not None and self._process.is_alive() and self._connection is not None:
            return self._connection
        self.kill()
        ours, theirs = _CONTEXT.Pipe()
        # Not a daemon: a daemon may not start processes, and a cold build shares its parsing over several.
        process = _CONTEXT.Process(
            target=_serve, args=(self.settings, theirs, os.getpid()), name="feedsvc-build"
        )
        process.start()
        theirs.close()
        self._process, self._connection, self._posts = process, ours, []
        return ours

    async def build(self, now: datetime, changed: set[Path] | None) -> feeds.BuildResult:
        """`feeds.build` in the child. BuildFailed when it takes longer than the timeout (the child is killed),
        when the child dies or raises, or when `kill()` is called meanwhile."""
        connection = self.start()
        loop = asyncio.get_running_loop()
        replied = loop.create_future()
        loop.add_reader(connection.fileno(), _resolve, replied)
        self._waiting = (loop, connection.fileno(), replied)
        try:
            connection.send((now, changed))
            await asyncio.wait_for(replied, self.timeout)
            if self._connection is not connection:
                raise BuildFailed("stopped")
            # Readable: a reply, or the end of the pipe when the child died.
            outcome = _load(connection.recv_bytes(), self._posts, now)
        except TimeoutError:
            self.kill()
            raise BuildFailed(f"took longer than {self.timeout:g} s: stopped") from None
        except (EOFError, OSError):
            code = self._exit_code()
            self.kill()
            raise BuildFailed(f"the build process ended (exit code {code})") from None
        except BaseException:
            self.kill()  # cancelled (shutdown): the child must not go on writing
            raise
        finally:
            self._unwatch()
        if isinstance(outcome, str):
            self.kill()  # what the child holds may be half updated: the next build starts from the cache
            raise BuildFailed(outcome)
        return outcome

    def kill(self) -> None:
        """Stop the child at once, whatever it is doing; a build waiting for it fails (a later one starts a new
        child)."""
        self._unwatch()
        if self._process is not None:
            # The child's own session: with it go the processes a cold build shares its parsing with.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid or 0, signal.SIGKILL)
            self._process.kill()  # killed before it had its own session
            self._process.join()
            self._process.close()
            self._process = None
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _unwatch(self) -> None:
        if self._waiting is not None:
            loop, descriptor, replied = self._waiting
            self._waiting = None
            loop.remove_reader(descriptor)
            _resolve(replied)

    def _exit_code(self) -> int | None:
        if self._process is None:
            return None
        self._process.join(1)  # the pipe closes a moment before the process is reaped
        return self._process.exitcode


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _serve(settings: Settings, connection: Connection, parent: int) -> None:
    """The child: one build per request until the service closes its end of the pipe."""
    # A session of its own, so that a kill reaches the processes it starts too; Ctrl-C (sent to the terminal's
    # process group) then no longer reaches it either: the service decides when its builds stop.
    os.setsid()
    _die_with_parent()
    if os.getppid() != parent:  # the service died while this process was starting
        return
    collection = Collection(settings)
    writer = feeds.FeedWriter(settings, rewrites=True)
    sent: list[Post] = []  # the posts of the last reply
    while True:
        try:
            now, changed = connection.recv()
        except EOFError:
            return
        try:
            outcome: feeds.BuildResult | str = feeds.build(settings, collection, writer, now, changed)
        except Exception as exc:  # a bug, not a bad post (those are problems in the scan): one line
            outcome = f"{type(exc).__name__}: {exc}"[:500]
        try:
            connection.send_bytes(_dump(outcome, sent))
        except OSError:  # the service is gone
            return


# How the scan's posts differ from the previous reply's: None and the places holding another version of their
# post (the same posts in the same places, `replaced_places`), or the place of each post in the previous reply
# (-1: not in it) and the posts not in it.
_Change = tuple[Sequence[int] | None, dict[int, Post]]


def _dump(outcome: feeds.BuildResult | str, sent: list[Post]) -> bytes:
    """The child's reply: the outcome without its lists of posts, and how the scan's posts differ from those of
    the previous reply (`sent`, which becomes them). Only posts the service does not hold are pickled. In the
    common rebuild, a few posts edited in place, the places that changed are found by comparing objects in C:
    sending the whole list, even as tokens, cost the child 9 ms and the service 5 ms at 10,000 posts (28 and 14
    ms at 50,000). The published posts are not sent: they are `scan.published(now)`, which the service asks
    for itself."""
    if not isinstance(outcome, feeds.BuildResult):
        return pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
    posts = outcome.scan.posts
    change: _Change
    places = replaced_places(sent, posts)
    if places is not None:
        change = (None, {place: posts[place] for place in places})
    else:  # posts came, went or moved: every post is placed
        previous = {id(post): place for place, post in enumerate(sent)}
        order = array("q", [previous.get(id(post), -1) for post in posts])
        change = (order, {place: post for place, post in enumerate(posts) if order[place] < 0})
    bare = replace(outcome, scan=replace(outcome.scan, posts=[]), published=[])
    reply = pickle.dumps((bare, change), pickle.HIGHEST_PROTOCOL)
    sent[:] = posts
    return reply


def _load(reply: bytes, posts: list[Post], now: datetime) -> feeds.BuildResult | str:
    """The outcome of the child's reply to a build at `now`; `posts` (the previous reply's) become its scan's."""
    loaded = pickle.loads(reply)
    if isinstance(loaded, str):
        return loaded
    bare, (order, changed) = loaded
    if order is None:
        scan_posts = list(posts)
        for place, post in changed.items():
            scan_posts[place] = post
    else:
        scan_posts = [posts[known] if known >= 0 else changed[place] for place, known in enumerate(order)]
    posts[:] = scan_posts
    scan = replace(bare.scan, posts=scan_posts)
    return replace(bare, scan=scan, published=scan.published(now))


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this process when the service dies (even by SIGKILL), so no orphan build
    goes on writing feeds beside the next service's. Elsewhere the orphan ends at its next reply."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass

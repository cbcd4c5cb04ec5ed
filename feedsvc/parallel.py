"""Sharing CPU-bound work over forked processes: the cold parse and render of a large collection.

Fork, not spawn: a child starts at once with the parent's modules and data, so nothing is imported again or
pickled on the way in (only the results come back). Used only while the process runs no other thread, since
forking a threaded process (the service) can leave a child holding a lock that no one will release. The parent
works on a share itself rather than wait: one process less to start, and its share's results are neither
pickled nor unpickled (with 2 CPUs, half of the 10,000 parsed posts of a cold build). Each child is a plain
forked `multiprocessing` process that finds its share in what it inherited and sends its result back through a
pipe: a process pool's threads (its manager and its queue's feeder) would need the GIL that this process's own
share holds to hand a child its work, and start it several milliseconds late in every phase.

The cyclic garbage collector is off meanwhile, in the parent and in the children. What the shares make is kept
(posts, rendered items, feeds) and holds no reference cycles, so each of the collector's full passes over it
freed nothing: at 50,000 posts, five passes over the growing heap took 0.45 s in the parent alone, and in a
child they would also copy the inherited pages they touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_PROCESSES = 4
_PIPE_BYTES = 1 << 20  # Linux's default cap (/proc/sys/fs/pipe-max-size)

# The work a forked child does: inherited through fork, never pickled.
_job: tuple[Callable[[list[Any]], Any], Sequence[Any]] | None = None


def fork_map(function: Callable[[T], R], items: Sequence[T], *, min_items: int, own_share: float = 1.0) -> list[R]:
    """`[function(item) for item in items]`, shared over the CPUs when there are at least `min_items` items
    (below that, starting processes costs more than it saves); `own_share` as for `fork_chunks`."""
    return fork_map_shares(partial(_map, function), items, min_items=min_items, own_share=own_share)


def fork_map_shares(
    function: Callable[[list[T]], list[R]], items: Sequence[T], *, min_items: int, own_share: float = 1.0
) -> list[R]:
    """`fork_map` for a function that takes a whole share of the items and gives one result for each, in order:
    for work that is cheaper done for several items together."""
    chunks = fork_chunks(function, items, min_items=min_items, own_share=own_share)
    if len(chunks) == 1:
        return chunks[0]
    results: list[Any] = [None] * len(items)
    for indices, values in zip(_shares(len(items), len(chunks), own_share), chunks, strict=True):
        for index, value in zip(indices, values, strict=True):
            results[index] = value
    return results


def fork_chunks(
    function: Callable[[list[T]], R],
    items: Sequence[T],
    *,
    min_items: int,
    own_share: float = 1.0,
    pieces: int = 1,
) -> list[R]:
    """`function` of each share of `items`, one share per CPU (the first in this process, each other one in a
    forked process) when there are at least `min_items` items, else one share of them all. Share k of n holds
    items k, k + n, k + 2n...: neighbours, often alike (a folder of long posts), are spread over the processes
    rather than all given to one. `own_share`: the size of this process's share against another's, below 1
    when taking in the other shares' results is a large part of the work (it is this process's alone).

    `pieces`: each share is worked on in that many consecutive pieces, one result per piece (share by share,
    piece by piece). A child sends each piece's result as soon as it is made, and this process takes in those
    that arrived between its own pieces: only the children's last pieces are left to take in once the work is
    done, instead of all of it (at 50,000 posts, 0.6 s of unpickling on one core while the other waited)."""
    workers = min(os.cpu_count() or 1, MAX_PROCESSES, len(items))
    if len(items) < min_items or workers < 2 or threading.active_count() > 1:
        return [function(list(items))]
    global _job
    _job = (function, items)
    shares = [_pieces(share, pieces) for share in _shares(len(items), workers, own_share)]
    context = multiprocessing.get_context("fork")
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    received: list[list[Any]] = []  # each child's results so far
    done = False
    try:
        with collector_paused():  # in the children too, which inherit it
            for share in shares[1:]:
                receiver, sender = context.Pipe(duplex=False)
                _widen(sender)
                process = context.Process(target=_run_child, args=(share, sender), daemon=True)
                process.start()
                sender.close()
                children.append((process, receiver))
                received.append([])
            own = []
            for piece in shares[0]:
                own.append(_run_chunk(piece))
                for (child, receiver), results in zip(children, received, strict=True):
                    while len(results) < pieces and receiver.poll():
                        results.append(_received(child, receiver))
            for (child, receiver), results in zip(children, received, strict=True):
                while len(results) < pieces:
                    results.append(_received(child, receiver))
        done = True
        return [*own, *(result for results in received for result in results)]
    finally:
        _job = None
        for child, receiver in children:
            receiver.close()
            if not done:  # this process's share or another failed: what the others make is not wanted
                child.terminate()
            child.join()


@contextlib.contextmanager
def collector_paused(*, keep: bool = False) -> Iterator[None]:
    """The cyclic collector off meanwhile (see above), back on after as it was. `keep`: what is made meanwhile
    lives on, so it is frozen out of the collector's later passes. Without it the first passes after, young
    and middle generation alike, walk everything made while the collector was off (at 50,000 posts, 0.27 s)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
        if keep:
            gc.freeze()
    finally:
        if collecting:
            gc.enable()


def _widen(pipe: Connection) -> None:
    """Let a child write a piece's result (up to a megabyte) while this process is still at work on its own
    piece, rather than wait for it to read after 64 KB. Where the pipe cannot grow, the child waits."""
    with contextlib.suppress(OSError, AttributeError):  # F_SETPIPE_SZ is Linux's, and capped by pipe-max-size
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _received(child: multiprocessing.process.BaseProcess, receiver: Connection) -> Any:
    try:
        failed, value = receiver.recv()
    except EOFError:
        child.join()
        raise ChildProcessError(f"a forked process ended with status {child.exitcode}") from None
    if failed:
        raise value
    return value


def _pieces(share: Sequence[int], pieces: int) -> list[Sequence[int]]:
    """`share` cut in `pieces` consecutive pieces, the last ones empty when it holds fewer items."""
    size = max(1, -(-len(share) // pieces))
    return [share[index * size : (index + 1) * size] for index in range(pieces)]


def _shares(count: int, workers: int, own_share: float) -> list[Sequence[int]]:
    if own_share == 1.0:
        return [range(start, count, workers) for start in range(workers)]
    # The first share takes one item in every 1 / fraction, spread evenly; the others take the rest in turn.
    fraction = own_share / (own_share + workers - 1)
    own = [index for index in range(count) if int((index + 1) * fraction) > int(index * fraction)]
    taken = set(own)
    rest = [index for index in range(count) if index not in taken]
    return [own, *(rest[start :: workers - 1] for start in range(workers - 1))]


def _map(function: Callable[[T], R], items: list[T]) -> list[R]:
    return [function(item) for item in items]


def _run_child(pieces: list[Sequence[int]], sender: Connection) -> None:
    for piece in pieces:
        try:
            outcome = (False, _run_chunk(piece))
        except BaseException as exc:
            outcome = (True, exc)
        try:
            sender.send(outcome)
        except Exception as exc:  # a result that cannot be pickled (a connection's send pickles before it writes)
            sender.send((True, ChildProcessError(f"a forked process cannot send its result back: {exc}")))
            return
        if outcome[0]:
            return


def _run_chunk(indices: Sequence[int]) -> Any:
    assert _job is not None
    function, items = _job
    return function([items[index] for index in indices])

"""Sharing CPU-bound work over forked processes: the cold parse and render of a large collection.

Fork, not spawn: a child starts at once with the parent's modules and data, so nothing is imported again or
pickled on the way in (only the results come back). Used only while the process runs no other thread, since
forking a threaded process (the service) can leave a child holding a lock that no one will release.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_PROCESSES = 4

# The work a forked child does: inherited through fork, never pickled.
_job: tuple[Callable[[list[Any]], Any], Sequence[Any]] | None = None


def fork_map(function: Callable[[T], R], items: Sequence[T], *, min_items: int) -> list[R]:
    """`[function(item) for item in items]`, shared over the CPUs when there are at least `min_items` items
    (below that, starting processes costs more than it saves)."""
    return fork_map_shares(partial(_map, function), items, min_items=min_items)


def fork_map_shares(function: Callable[[list[T]], list[R]], items: Sequence[T], *, min_items: int) -> list[R]:
    """`fork_map` for a function that takes a whole share of the items and gives one result for each, in order:
    for work that is cheaper done for several items together."""
    chunks = fork_chunks(function, items, min_items=min_items)
    results: list[Any] = [None] * len(items)
    for start, values in enumerate(chunks):
        results[start :: len(chunks)] = values
    return results


def fork_chunks(function: Callable[[list[T]], R], items: Sequence[T], *, min_items: int) -> list[R]:
    """`function` of each share of `items`, each share in a process of its own when there are at least
    `min_items` items, else one share of them all. Share k of n holds items k, k + n, k + 2n...: neighbours,
    often alike (a folder of long posts), are spread over the processes rather than all given to one."""
    workers = min(os.cpu_count() or 1, MAX_PROCESSES, len(items))
    if len(items) < min_items or workers < 2 or threading.active_count() > 1:
        return [function(list(items))]
    global _job
    _job = (function, items)
    try:
        chunks = [range(start, len(items), workers) for start in range(workers)]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run_chunk, chunks))
    finally:
        _job = None


def _map(function: Callable[[T], R], items: list[T]) -> list[R]:
    return [function(item) for item in items]


def _run_chunk(indices: range) -> Any:
    assert _job is not None
    function, items = _job
    return function([items[index] for index in indices])

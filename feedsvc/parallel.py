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
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_PROCESSES = 4

# The work a forked child does: inherited through fork, never pickled.
_job: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def fork_map(function: Callable[[T], R], items: Sequence[T], *, min_items: int) -> list[R]:
    """`[function(item) for item in items]`, shared over the CPUs when there are at least `min_items` items
    (below that, starting processes costs more than it saves)."""
    workers = min(os.cpu_count() or 1, MAX_PROCESSES, len(items))
    if len(items) < min_items or workers < 2 or threading.active_count() > 1:
        return [function(item) for item in items]
    global _job
    _job = (function, items)
    try:
        chunks = [range(start, len(items), workers) for start in range(workers)]
        results: list[Any] = [None] * len(items)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            for chunk, values in zip(chunks, pool.map(_run_chunk, chunks), strict=True):
                for index, value in zip(chunk, values, strict=True):
                    results[index] = value
        return results
    finally:
        _job = None


def _run_chunk(indices: range) -> list[Any]:
    assert _job is not None
    function, items = _job
    return [function(items[index]) for index in indices]

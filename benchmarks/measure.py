"""What every benchmark measures the same way: a whole process (and everything it starts) from outside.

`run(command)` times a command, sums the CPU time of the process and its waited-for children, and (unless told
not to: `sample_memory=False`, for timing alone) samples the PSS of the whole process tree (every descendant's
/proc/<pid>/smaps_rollup, summed: shared pages counted once between them) while it runs. `load()` is the load
average to print beside figures taken on a shared machine.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.02


@dataclass
class Measured:
    seconds: float
    cpu_seconds: float  # user + system of the process and its children
    peak_pss_mib: float  # the largest sum over the process tree seen while it ran
    peak_rss_mib: float  # the largest single process (from wait4)
    stdout: str


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def tree_pss_kib(pid: int) -> int:
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue  # ended meanwhile
        pending += _children(current)
    return total


def run(command: list[str], env: dict[str, str] | None = None, check: bool = True, cwd: Path | None = None,
        sample_memory: bool = True) -> Measured:
    """sample_memory=False leaves peak_pss_mib at 0: reading a process's smaps_rollup every 20 ms holds its memory map
    while the kernel walks it, which slowed an import-heavy Python start-up by ~8 % here; time it without."""
    peak = 0
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_pss_kib(process.pid))
            done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_memory:
        sampler.start()
    assert process.stdout is not None
    output = process.stdout.read()  # until the process (and whatever holds its stdout) is done
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    done.set()
    if sample_memory:
        sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    text = output.decode(errors="replace")
    if check and process.returncode:
        raise SystemExit(f"{' '.join(command)} failed with status {process.returncode}:\n{text[-3000:]}")
    return Measured(seconds, usage.ru_utime + usage.ru_stime, peak / 1024, usage.ru_maxrss / 1024, text)

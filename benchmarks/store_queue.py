"""The delivery queue on PostgreSQL against SQLite: CPU and store round trips per message, and 1 to 4 processes.

    .venv/bin/python benchmarks/store_queue.py [--subscribers 5000] [--workers 1,2,4] [--rounds 3] [--postgres URL]

One ~47 KB digest queued for every subscriber (not timed), sent into Postfix's `smtp-sink` with the default
[mail] settings.
1. In-process (labelled so): `drain()` once on SQLite and once on PostgreSQL, counting with SQLAlchemy's engine
   events the statements executed and the transactions begun (not those of a connection in autocommit mode, which
   send no BEGIN or COMMIT), and the statements of the drain's connection on the event loop (`store.on_loop`,
   autocommit, which the engine does not see), hence the round trips to the store (statements + BEGIN + COMMIT),
   and the process CPU time, per message; and the PostgreSQL server's CPU time per message (its processes on
   this machine, from /proc).
2. Whole processes: k `feedsvc digest send` processes started together on one PostgreSQL store share its queue
   (SKIP LOCKED claims); messages/s against one process, and each process's CPU time (wait4) as a share of the
   wall time, with the sink's and the PostgreSQL server's beside them (the same cores), so a reader sees where
   the cores went. One SQLite process is the anchor.
Every row is measured once per round, rounds interleaved; the tables show medians.
Needs `FEEDSVC_TEST_POSTGRES_URL` (or --postgres) and Postfix's tools
(`DEBIAN_FRONTEND=noninteractive apt-get install -y postfix`, daemon left stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import measure  # benchmarks/measure.py, beside this script
from send import Sink, delivery_states, fill_store, find_tool, write_config
from sqlalchemy import create_engine, event, text


def fresh_schema(postgres: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    separator = "&" if "?" in postgres else "?"
    return schema, f"{postgres}{separator}options=-csearch_path%3D{schema}"


def drop_schema(postgres: str, schema: str) -> None:
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def in_process(config: Path, subscribers: int) -> dict[str, float]:
    """drain() in this process: statements, transactions and CPU per message."""
    from feedsvc.config import load_settings
    from feedsvc.mail.queue import drain
    from feedsvc.mail.smtp import SmtpTransport
    from feedsvc.store.engine import open_engine
    from feedsvc.store.on_loop import LoopConnection

    settings = load_settings(config)
    engine = open_engine(settings.store.database_url)
    counts: Counter[str] = Counter()
    event.listen(engine, "before_cursor_execute", lambda *args: counts.update(["statements"]))
    event.listen(engine, "begin", lambda connection: counts.update(["transactions"] * _begins(connection)))
    execute_on_loop = LoopConnection.execute

    async def counted_on_loop(self, statement, params):
        counts.update(["statements"])
        return await execute_on_loop(self, statement, params)

    async def go() -> int:
        transport = SmtpTransport(settings)
        try:
            return (await drain(settings, engine, transport, worker_id="bench")).sent
        finally:
            await transport.aclose()

    cpu, started, server = time.process_time(), time.perf_counter(), server_cpu_seconds()
    LoopConnection.execute = counted_on_loop  # type: ignore[method-assign]
    try:
        sent = asyncio.run(go())
    finally:
        LoopConnection.execute = execute_on_loop  # type: ignore[method-assign]
    cpu, seconds = time.process_time() - cpu, time.perf_counter() - started
    server = server_cpu_seconds() - server
    engine.dispose()
    if sent != subscribers:
        raise SystemExit(f"drain sent {sent} of {subscribers}")
    return {"cpu_us": cpu * 1e6 / sent, "server_us": server * 1e6 / sent, "statements": counts["statements"] / sent,
            "transactions": counts["transactions"] / sent,
            "round_trips": (counts["statements"] + 2 * counts["transactions"]) / sent, "rate": sent / seconds}


def _begins(connection) -> bool:
    """Whether a transaction SQLAlchemy begins on this connection reaches the store as BEGIN ... COMMIT."""
    return connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT"


def server_cpu_seconds() -> float:
    """The CPU time the PostgreSQL server has used so far on this machine (user + system): its live processes'
    own, and the postmaster's count of its children that ended (a connection's backend ends with it). 0 when
    it runs elsewhere."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # a process that ended meanwhile
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        if name != "postgres":
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if _process_name(int(fields[1])) != "postgres":  # the postmaster: add its children that ended
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _process_name(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return text[text.index("(") + 1 : text.rindex(")")]


class Run(NamedTuple):
    seconds: float
    cpu: list[float]  # each feedsvc process's CPU seconds
    sink_cpu: float  # smtp-sink's, over the run
    server_cpu: float  # the PostgreSQL server's, over the run


def processes(config: Path, count: int, subscribers: int, sink: Sink) -> Run:
    """`count` digest send processes at once on one store: wall seconds, each one's CPU seconds, and the CPU the
    sink and the PostgreSQL server used meanwhile (they share the cores)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")}
    command = [sys.executable, "-m", "feedsvc", "digest", "send", "--config", str(config)]
    before = sink.messages()
    sink_cpu, server_cpu = sink.cpu_seconds(), server_cpu_seconds()
    started = time.perf_counter()
    children = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(count)]
    cpu, errors = [], []
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        # A process that finds mail still claimed by a sibling says so and exits 1: the counts below decide.
        if os.waitstatus_to_exitcode(status) and child.stderr:
            errors.append(child.stderr.read().decode()[-500:])
        cpu.append(usage.ru_utime + usage.ru_stime)
    seconds = time.perf_counter() - started
    sink_cpu, server_cpu = sink.cpu_seconds() - sink_cpu, server_cpu_seconds() - server_cpu
    received = sink.messages() - before
    states = delivery_states(config)
    if received != subscribers or states.get("sent") != subscribers or sum(states.values()) != subscribers:
        raise SystemExit(f"{count} processes: sink got {received}, store {states}, of {subscribers}\n{''.join(errors)}")
    return Run(seconds, cpu, sink_cpu, server_cpu)


def median_run(runs: list[Run]) -> Run:
    """The run of median wall time."""
    return sorted(runs, key=lambda run: run.seconds)[len(runs) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("FEEDSVC_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    if not args.postgres or not find_tool("smtp-sink"):
        print("needs --postgres (or FEEDSVC_TEST_POSTGRES_URL) and smtp-sink "
              "(DEBIAN_FRONTEND=noninteractive apt-get install -y postfix)", file=sys.stderr)
        return 2
    n = args.subscribers
    load_before = measure.load()
    schemas: list[str] = []
    with tempfile.TemporaryDirectory(prefix="feedsvc-bench-") as temp:
        folder = Path(temp)
        sink = Sink(folder)
        runs = 0

        def prepared(postgres: bool) -> Path:
            nonlocal runs
            runs += 1
            run_dir = folder / f"run{runs}"
            run_dir.mkdir()
            url = ""
            if postgres:
                schema, url = fresh_schema(args.postgres)
                schemas.append(schema)
            config = write_config(run_dir, sink.port, url)
            fill_store(config, n)
            return config

        inproc_rounds: dict[str, list[dict[str, float]]] = {}
        scaling_rounds: dict[tuple[str, int], list[Run]] = {}
        try:
            for _ in range(args.rounds):
                for name in ("SQLite", "PostgreSQL"):
                    inproc_rounds.setdefault(name, []).append(in_process(prepared(name == "PostgreSQL"), n))
                scaling_rounds.setdefault(("SQLite", 1), []).append(processes(prepared(False), 1, n, sink))
                for count in (int(k) for k in args.workers.split(",")):
                    scaling_rounds.setdefault(("PostgreSQL", count), []).append(
                        processes(prepared(True), count, n, sink)
                    )
                    drop_schema(args.postgres, schemas.pop())
        finally:
            sink.stop()
            for schema in schemas:
                drop_schema(args.postgres, schema)

    inproc = {name: {key: statistics.median(row[key] for row in rows) for key in rows[0]}
              for name, rows in inproc_rounds.items()}
    scaling = {key: median_run(runs) for key, runs in scaling_rounds.items()}
    print(f"{n} subscribers, default [mail], Postfix smtp-sink; {os.cpu_count()} CPUs; {args.rounds} interleaved "
          f"rounds (medians); load average before {load_before}, after {measure.load()}")
    print(f"\n{'in-process drain()':<20}{'msg/s':>8}{'CPU µs/msg':>12}{'statements/msg':>16}{'transactions/msg':>18}"
          f"{'round trips/msg':>17}{'PG server µs/msg':>18}")
    for name, row in inproc.items():
        print(f"{name:<20}{row['rate']:>8.0f}{row['cpu_us']:>12.0f}{row['statements']:>16.2f}{row['transactions']:>18.3f}"
              f"{row['round_trips']:>17.2f}{row['server_us']:>18.0f}")
    sqlite, postgres = inproc["SQLite"], inproc["PostgreSQL"]
    print(f"PostgreSQL / SQLite: CPU {postgres['cpu_us'] / sqlite['cpu_us']:.2f}, round trips "
          f"{postgres['round_trips'] / sqlite['round_trips']:.2f}, statements "
          f"{postgres['statements'] / sqlite['statements']:.2f} (target: within 1.20)")
    print(f"\n{'feedsvc digest send processes':<32}{'seconds':>8}{'msg/s':>8}{'vs 1 PG':>8}{'sink':>6}"
          f"{'PG server':>10}  CPU share of each process (shares of one core over the run)")
    one = n / scaling[("PostgreSQL", 1)].seconds
    for (name, count), run in scaling.items():
        shares = " ".join(f"{c / run.seconds:.0%}" for c in run.cpu)
        print(f"{f'{name}, {count}':<32}{run.seconds:>8.2f}{n / run.seconds:>8.0f}{n / run.seconds / one:>8.2f}"
              f"{run.sink_cpu / run.seconds:>6.0%}{run.server_cpu / run.seconds:>10.0%}  {shares}")
    print("targets: one PostgreSQL process >= 0.8x one SQLite process")
    return 0


if __name__ == "__main__":
    sys.exit(main())

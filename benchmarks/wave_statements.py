"""The mail queue's two statements per wave on SQLite: the driver form (`store/deliveries.py` compiles them once
and runs them with `exec_driver_sql`) against SQLAlchemy's own execution of the same statements.

    .venv/bin/python benchmarks/wave_statements.py [--waves 500] [--rounds 7]

A fresh SQLite store filled as `send.py` fills it (one edition queued for 8 × waves subscribers) and claimed by
one worker; a wave is what `drain()` does for 8 mails: mark them `sending`, then mark them `sent`, in one
transaction. Each wave is rolled back, so every round runs on the same rows. Both forms once per round,
alternately, CPU time per wave (process time: what the load distorts least), medians; load average printed.
The driver form is a stand-in for SQLAlchemy's execution, so it keeps its place only while this row shows it
cheaper.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import _paths  # noqa: F401  (the repository root on sys.path)
import measure  # benchmarks/measure.py, beside this script
from send import fill_store, write_config

WAVE = 8


def main() -> int:
    from feedsvc.config import load_settings
    from feedsvc.store import deliveries
    from feedsvc.store.engine import open_engine

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waves", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    load_before = measure.load()
    worker = "bench"

    def driver_form(connection, ids: list[int], now: datetime) -> int:
        started, _ = deliveries.start_sending(connection, worker, ids)
        deliveries.record(connection, worker, sent=[deliveries.Sent(i, f"<{i}@bench>") for i in started], now=now)
        return len(started)

    def through_sqlalchemy(connection, ids: list[int], now: datetime) -> int:
        started = dict(connection.execute(deliveries._START, {"ids": ids, "worker": worker}).all())
        connection.execute(
            deliveries._MARK_SENT, [{"delivery_id": i, "now": now, "mid": f"<{i}@bench>"} for i in started]
        )
        return len(started)

    forms = {"driver form (feedsvc)": driver_form, "SQLAlchemy execute (anchor)": through_sqlalchemy}
    timings: dict[str, list[float]] = {name: [] for name in forms}
    with tempfile.TemporaryDirectory(prefix="feedsvc-waves-") as temp:
        config = write_config(Path(temp), port=9)
        fill_store(config, WAVE * args.waves)
        settings = load_settings(config)
        engine = open_engine(settings.store.database_url)
        now = datetime.now(UTC)
        with engine.begin() as connection:
            claimed = deliveries.claim(connection, worker, now=now, lease_until=now.replace(year=now.year + 1),
                                       limit=WAVE * args.waves)
        waves = [[item.id for item in claimed[start:start + WAVE]] for start in range(0, len(claimed), WAVE)]
        with engine.connect() as connection:
            for _ in range(args.rounds):
                for name, form in forms.items():
                    cpu = time.process_time()
                    for ids in waves:
                        with connection.begin() as transaction:
                            if form(connection, ids, now) != len(ids):
                                raise SystemExit(f"{name}: a wave did not start every mail")
                            transaction.rollback()
                    timings[name].append((time.process_time() - cpu) / len(waves))
        engine.dispose()

    anchor = statistics.median(timings["SQLAlchemy execute (anchor)"])
    print(f"\n{len(waves)} waves of {WAVE} mails, SQLite, {args.rounds} alternating rounds (medians); "
          f"load average before {load_before}, after {measure.load()}\n")
    print(f"{'form':<30}{'CPU µs per wave':>16}{'vs anchor':>11}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:<30}{median * 1e6:>16.0f}{median / anchor:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A large subscriber import beside the running service: nobody is locked out.

    .venv/bin/python benchmarks/import.py [--rows 100000] [--rate 20] [--postgres URL]

Starts `feedsvc run` on a temporary site (SQLite store, or the given PostgreSQL database), then imports a CSV of
`--rows` addresses with `feedsvc subscribers import --confirmed` (a new process, as an operator runs it) while a
client subscribes through the running service's `/subscribe` (JSON, a new address each time, `--rate` per
second). Prints the import's wall time and rows/s, the subscribes' count, p50/p99/max latency and 5xx count,
and whether the service kept its leader lease (no `leader.lost`/`leader.renew_failed` in its log; lease TTL 3 s
so that a renewal falls inside the import). Targets: subscribe p99 < 500 ms, no 5xx, leader kept.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _paths  # noqa: F401  (the repository root on sys.path, for tests.support)
import httpx

from tests.support import free_port


def make_site(root: Path, port: int, database_url: str) -> Path:
    (root / "posts").mkdir()
    store = f'dir = "subscribers"\nurl = "{database_url}"\n' if database_url else 'dir = "subscribers"\n'
    config = root / "feedsvc.toml"
    config.write_text(
        '[site]\ntitle = "Import bench"\nurl = "https://blog.example.org"\n'
        '[posts]\ndir = "posts"\n[feeds]\noutput_dir = "public"\n'
        f"[store]\n{store}"
        '[mail]\nfrom_address = "news@blog.example.org"\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\npublic_url = "http://127.0.0.1:{port}"\n'
        'secret_key = "bench-secret-of-at-least-32-bytes"\nsubscribe_rate_per_client = 1000000\n'
        "[scheduler]\nleader_ttl = 3\n"
        '[log]\nformat = "json"\n',
        encoding="utf-8",
    )
    return config


def feedsvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "feedsvc", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=20.0, help="subscribes per second during the import")
    parser.add_argument("--postgres", default="", help="a PostgreSQL URL (an empty database) instead of SQLite")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")}

    with tempfile.TemporaryDirectory(prefix="feedsvc-import-bench-") as folder:
        root = Path(folder)
        port = free_port()
        config = make_site(root, port, args.postgres)
        source = root / "list.csv"
        source.write_text(
            "email,name,frequency,tags\n"
            + "".join(f"reader{n}@example.org,Reader {n},{('instant', 'daily', 'weekly')[n % 3]},t{n % 7}\n"
                      for n in range(args.rows)),
            encoding="utf-8",
        )
        log = root / "run.log"
        with log.open("wb") as sink:
            service = subprocess.Popen(feedsvc("run", "--config", str(config), "--port", str(port)),
                                       stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=root)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or service.poll() is not None:
                    sys.exit("feedsvc run did not start:\n" + log.read_text(errors="replace"))
                time.sleep(0.1)

            answers: list[tuple[int, float]] = []
            importing = threading.Event()
            importing.set()

            def subscribe() -> None:
                with httpx.Client(base_url=url, timeout=30) as client:
                    number = 0
                    while importing.is_set():
                        started = time.perf_counter()
                        answer = client.post("/subscribe", json={"email": f"web{number}@example.net"})
                        answers.append((answer.status_code, time.perf_counter() - started))
                        number += 1
                        time.sleep(max(0.0, 1 / args.rate - (time.perf_counter() - started)))

            client = threading.Thread(target=subscribe)
            client.start()
            began = time.perf_counter()
            result = subprocess.run(feedsvc("subscribers", "import", str(source), "--confirmed", "--config", str(config)),
                                    env=env, capture_output=True, text=True, check=False)
            took = time.perf_counter() - began
            importing.clear()
            client.join(60)
        finally:
            service.terminate()
            service.wait(60)
        output = log.read_text(errors="replace")

    if result.returncode != 0:
        sys.exit(f"the import failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    latencies = sorted(seconds * 1000 for _, seconds in answers)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    errors = sum(status >= 500 for status, _ in answers)
    leader_kept = "leader.lost" not in output and "leader.renew_failed" not in output
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{args.rows:,} rows imported by the CLI beside `feedsvc run` ({store}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f})")
    print(f"  import: {took:.1f} s ({args.rows / took:,.0f} rows/s) — {result.stdout.strip()}")
    print(f"  subscribes during it: {len(answers)}, p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms, "
          f"max {latencies[-1]:.0f} ms, 5xx {errors}")
    print(f"  leader lease kept: {'yes' if leader_kept else 'NO'}")
    met = p99 < 500 and errors == 0 and leader_kept
    print(f"  targets (p99 < 500 ms, no 5xx, leader kept): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()

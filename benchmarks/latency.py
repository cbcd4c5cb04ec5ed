"""Service benchmark: save-to-served latency, and delivery throughput with 1, 2 and 4 workers on PostgreSQL.

    .venv/bin/python benchmarks/latency.py [--posts 10000] [--edits 50] [--debounce-ms N] [--subscribers 3000]
                                           [--workers 1,2,4]

1. Latency: a real `feedsvc run` on a generated collection (benchmarks/build.py's generator), default settings
   (`--debounce-ms` sets `[scheduler] debounce_ms`, to see what the watcher's quiet time costs). Each edit
   changes one of the newest posts; the time is from the file being saved to /rss.xml answering 200 (polled
   every millisecond with If-None-Match, on one kept-alive http.client connection: httpx's own time per request,
   at a 5 ms interval, added 25-50 ms under load) with the new bytes. The service's own `rebuild.done` lines give
   the build's share (in its child process, until the new feeds are served; the outputs run after that); the
   rest is the watcher (its quiet time and its polling step), loading the new file and the polling. Baseline,
   same run: what a setup without a watcher does on each save — a `feedsvc build` process (warm parse cache) —
   whose time excludes the serving.
   Targets (issue 13): median <= 60 ms and p95 <= 120 ms at 10,000 posts; median <= 100 ms at 50,000.
2. Throughput (needs FEEDSVC_TEST_POSTGRES_URL or --postgres): one edition to N subscribers, sent by 1, 2, 4
   `feedsvc worker` processes sharing the queue, to one SMTP sink (Postfix's smtp-sink when installed, else an
   aiosmtpd sink in its own process). Baseline: 1 worker.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _paths  # noqa: F401  (the repository root on sys.path, for tests.support)
import httpx
import tomli_w
from build import (  # the build benchmark's deterministic collection and its "author edits a post"
    edit,
    generate,
)
from sqlalchemy import create_engine, text

from feedsvc.store import open_engine
from feedsvc.store.editions import delivery_states, insert_deliveries, insert_edition
from feedsvc.store.subscribers import insert_if_absent
from tests.support import free_port, listening, wait_for

PYTHON = sys.executable


def write_config(folder: Path, **sections: dict) -> Path:
    config = {
        "site": {"title": "Bench", "url": "https://bench.example.org"},
        "posts": {"dir": "posts"},
        "feeds": {"output_dir": "public", "items": 50},
        "store": {"dir": "subscribers"},
        "mail": {"from_address": "news@bench.example.org"},
        "web": {"secret_key": "bench-secret-of-at-least-32-bytes"},
        "log": {"level": "WARNING"},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = folder / "feedsvc.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    return path


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- 1. save-to-served latency ---------------------------------------------------------------------------


def latency(root: Path, posts: int, edits: int, debounce_ms: int | None) -> None:
    print(f"generating {posts} posts …", flush=True)
    generate(root / "posts", posts)
    config = write_config(root, log={"level": "INFO", "format": "json"},
                          **({"scheduler": {"debounce_ms": debounce_ms}} if debounce_ms is not None else {}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = root / "run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [PYTHON, "-m", "feedsvc", "run", "--config", str(config), "--port", str(port)],
            cwd=root,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.perf_counter()
        client = httpx.Client(timeout=5)

        def served() -> httpx.Response | None:
            try:
                response = client.get(f"{base}/rss.xml")
            except httpx.TransportError:
                return None
            return response if response.status_code == 200 else None

        etag = wait_for(served, 300, "the first build", interval=0.1).headers["etag"]
        print(f"first build served after {time.perf_counter() - started:.1f} s", flush=True)
        poller = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        samples: list[float] = []
        for round_number in range(edits):
            time.sleep(0.3)  # apart from the previous save, as an author's saves are
            edit(root / "posts", round_number)
            saved = time.perf_counter()

            while True:
                poller.request("GET", "/rss.xml", headers={"If-None-Match": etag})
                response = poller.getresponse()
                response.read()
                if response.status == 200:
                    break
                assert time.perf_counter() - saved < 10, f"edit {round_number}: the new feed was not served"
                time.sleep(0.001)
            samples.append(time.perf_counter() - saved)
            etag = response.getheader("etag")
        poller.close()
    finally:
        stop(process)

    rebuilds = []
    for round_number in range(5):
        edit(root / "posts", edits + round_number)
        began = time.perf_counter()
        subprocess.run([PYTHON, "-m", "feedsvc", "build", "--config", str(config)], cwd=root, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rebuilds.append(time.perf_counter() - began)
    # The rebuilds the edits caused (the first build and any retry are not edits).
    done = [
        line
        for line in (json.loads(text) for text in log.read_text(encoding="utf-8").splitlines() if text.startswith("{"))
        if line.get("event") == "rebuild.done" and line.get("reason") == "posts-changed"
    ]
    took = [line["took_ms"] / 1000 for line in done]
    built = [line["build_ms"] / 1000 for line in done if line.get("build_ms") is not None]
    median, p95 = statistics.median(samples), percentile(samples, 0.95)
    baseline = statistics.median(rebuilds)
    target_median, target_p95 = (0.06, 0.12) if posts <= 10_000 else (0.1, None)
    quiet = "default" if debounce_ms is None else f"{debounce_ms} ms"
    print(f"\nSave-to-served latency, {posts} posts, {edits} edits (feedsvc run: watcher, debounce_ms {quiet}, "
          f"build child, outputs); load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'measure':44} {'median':>9} {'p95':>9} {'vs baseline':>12}")
    print(f"{'feedsvc run: save -> new /rss.xml served':44} {median*1000:8.0f}ms {p95*1000:8.0f}ms "
          f"{median / baseline:11.2f}x")
    if built:
        print(f"{'  of which the build, until its feeds are served':44} {statistics.median(built)*1000:8.0f}ms "
              f"{percentile(built, 0.95)*1000:8.0f}ms {'':>12}  ({len(built)} rebuilds)")
    if took:
        print(f"{'then the outputs too (rebuild.done took_ms)':44} {statistics.median(took)*1000:8.0f}ms "
              f"{percentile(took, 0.95)*1000:8.0f}ms")
    print(f"{'baseline: `feedsvc build` process per save':44} {baseline*1000:8.0f}ms "
          f"{percentile(rebuilds, 0.95)*1000:8.0f}ms {1:11.2f}x")
    met = median <= target_median and (target_p95 is None or p95 <= target_p95)
    wanted = f"median <= {target_median*1000:.0f} ms" + (f", p95 <= {target_p95*1000:.0f} ms" if target_p95 else "")
    print(f"targets ({wanted}): {'met' if met else 'MISSED'}")


# --- 2. delivery throughput on PostgreSQL ----------------------------------------------------------------

SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Sink:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        return "250 OK"
controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


def start_sink(port: int) -> tuple[subprocess.Popen, str]:
    smtp_sink = shutil.which("smtp-sink")
    if smtp_sink:
        # -c: count, -u: never drop privileges; 1000: backlog
        process = subprocess.Popen([smtp_sink, "-u", os.environ.get("USER", "nobody"), f"127.0.0.1:{port}", "1000"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: listening(port), 10, "smtp-sink", interval=0.01)
        return process, "postfix smtp-sink"
    process = subprocess.Popen([PYTHON, "-c", SINK, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process, "aiosmtpd sink (install postfix for smtp-sink)"


def seed_edition(url: str, subscribers: int) -> int:
    """One rendered-looking edition (~30 KB HTML) queued for every subscriber; the edition id."""
    engine = open_engine(url)
    now = datetime.now(UTC)
    paragraph = "<p>" + "A paragraph of a realistic digest with words and a link. " * 20 + "</p>\n"
    with engine.begin() as connection:
        for index in range(subscribers):
            insert_if_absent(connection, email=f"s{index}@example.org", email_key=f"s{index}@example.org",
                             status="active", frequency="daily", tags=[], created_at=now, confirmed_at=now)
        edition = insert_edition(
            connection, key="bench:1", frequency="daily", period_start=now - timedelta(days=1), period_end=now,
            post_ids=["bench"], subject="Bench digest", html=paragraph * 25, text="Bench digest\n" * 100,
            created_at=now,
        )
    engine.dispose()
    return edition


def queue(url: str, edition: int, subscribers: int) -> None:
    engine = open_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        rows = [
            {"key": f"bench:sub:{index + 1}", "edition_id": edition, "subscriber_id": index + 1, "state": "queued",
             "attempts": 0, "next_attempt_at": now, "last_error": "", "created_at": now}
            for index in range(subscribers)
        ]
        insert_deliveries(connection, rows)
    engine.dispose()


def throughput(root: Path, postgres: str, subscribers: int, worker_counts: list[int]) -> None:
    sink_port = free_port()
    sink, sink_name = start_sink(sink_port)
    results: dict[int, float] = {}
    try:
        for workers in worker_counts:
            schema = f"bench_{os.getpid()}_{workers}"
            admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
            separator = "&" if "?" in postgres else "?"
            url = f"{postgres}{separator}options=-csearch_path%3D{schema}"
            folder = root / f"workers-{workers}"
            folder.mkdir(parents=True)
            config = write_config(folder, store={"url": url},
                                  mail={"smtp_url": f"smtp://127.0.0.1:{sink_port}", "connections": 4},
                                  scheduler={"drain_interval": 0.2})
            edition = seed_edition(url, subscribers)
            processes = [
                subprocess.Popen([PYTHON, "-m", "feedsvc", "worker", "--config", str(config)], cwd=folder,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for _ in range(workers)
            ]
            try:
                time.sleep(3)  # the workers are up and idle
                engine = open_engine(url)
                began = time.perf_counter()
                queue(url, edition, subscribers)

                def sent(engine=engine, edition: int = edition) -> bool:  # this round's
                    with engine.connect() as connection:
                        return delivery_states(connection, [edition]).get(edition, {}).get("sent", 0) >= subscribers

                wait_for(sent, 600, f"{workers} workers to send", interval=0.05)
                results[workers] = subscribers / (time.perf_counter() - began)
                engine.dispose()
            finally:
                for process in processes:
                    stop(process)
                with admin.connect() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    finally:
        if sink.stdin:
            sink.stdin.close()
        sink.terminate()
        sink.wait()
    base = results[worker_counts[0]]
    print(f"\nDelivery throughput, {subscribers} subscribers, PostgreSQL queue, sink: {sink_name}, {os.cpu_count()} cores")
    print(f"{'worker processes':>18} {'messages/s':>12} {'vs 1 worker':>12}")
    for workers, rate in results.items():
        print(f"{workers:>18} {rate:12.0f} {rate / base:11.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--debounce-ms", type=int, default=None, help="[scheduler] debounce_ms (default: the setting's)")
    parser.add_argument("--subscribers", type=int, default=3000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--postgres", default=os.environ.get("FEEDSVC_TEST_POSTGRES_URL", ""))
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="feedsvc-latency-") as temporary:
        root = Path(temporary)
        if not args.skip_latency:
            latency(root / "latency", args.posts, args.edits, args.debounce_ms)
        if args.postgres:
            throughput(root / "throughput", args.postgres, args.subscribers, [int(n) for n in args.workers.split(",")])
        else:
            print("\nthroughput skipped: set FEEDSVC_TEST_POSTGRES_URL or pass --postgres URL")


if __name__ == "__main__":
    main()

"""Fediverse delivery benchmark: one post to many shared inboxes, each signature verified by the receiver.

    .venv/bin/python benchmarks/fediverse.py [--inboxes 1000] [--scaling 100,1000,10000] [--rounds 3]

A local inbox server (uvicorn, its own process) verifies the draft-cavage signature and the Digest of every POST
against the blog's public key before answering 202. Each measurement runs in a new process: a fresh SQLite
store with N followers, each on its own shared inbox, one Create queued, then `feedsvc.fediverse.delivery.deliver`
until the queue is empty. Printed: deliveries per second, CPU time per delivery (the delivering process only),
and its peak RSS. All inboxes are on one local server, so the per-host cap is lifted to the concurrency
(a real fan-out goes to many hosts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import _paths  # noqa: F401  (the repository root on sys.path, for tests.support)
import httpx
import tomli_w

from tests.support import free_port

CONCURRENCY = 16


def serve_inboxes(port: int, key_file: str) -> None:
    """The receiving server: verifies every signature, counts what verified."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from feedsvc.fediverse.signatures import SignatureError, verify

    counts: dict[str, int | str] = {"verified": 0, "refused": 0}

    blog_public_key = Path(key_file).read_text()

    async def blog_key(key_id: str, fresh: bool) -> str:
        return blog_public_key

    async def inbox(request: Request) -> Response:
        body = await request.body()
        try:
            await verify("POST", str(request.url), dict(request.headers), body, blog_key, max_age=300)
        except SignatureError as exc:
            counts["refused"] += 1
            counts["last_refusal"] = str(exc)
            return Response(status_code=401)
        counts["verified"] += 1
        return Response(status_code=202)

    async def count(request: Request) -> Response:
        return JSONResponse(counts)

    app = Starlette(routes=[Route("/inbox/{n}", inbox, methods=["POST"]), Route("/count", count)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=4096)


def one_run(inboxes: int, inbox_port: int, folder: Path) -> dict:
    """In a fresh process: N followers, one Create, deliver until done; the figures as a dict."""
    from feedsvc.config import load_settings
    from feedsvc.fediverse import keys
    from feedsvc.fediverse.delivery import deliver
    from feedsvc.store import fediverse as store
    from feedsvc.store.engine import open_engine

    settings = load_settings(folder / "feedsvc.toml")
    engine = open_engine(settings.store.database_url)
    key_pair = keys.load_or_create(settings.store.dir)
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for n in range(inboxes):
            inbox = f"http://127.0.0.1:{inbox_port}/inbox/{n}"
            store.add_follower(connection, actor=f"https://server{n}.example/users/reader", inbox=inbox,
                               delivery_inbox=inbox, host=f"server{n}.example", follow_id="", now=now)
        content = "<p>" + " ".join(["words of a real post"] * 250) + "</p>"
        activity = {"id": "https://bench.example.org/fediverse/posts/p#create", "type": "Create",
                    "object": {"type": "Article", "name": "A post", "content": content}}
        store.queue_activity(connection, activity["id"], json.dumps(activity), now)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    report = asyncio.run(deliver(settings, engine, key_pair, worker_id="bench"))
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    engine.dispose()
    return {"inboxes": inboxes, "sent": report.sent, "seconds": elapsed, "cpu": cpu,
            "peak_rss_mib": after.ru_maxrss / 1024}


def prepare(folder: Path, *, inbox_port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "posts").mkdir(exist_ok=True)
    config = {
        "site": {"title": "Bench", "url": "https://bench.example.org"},
        "store": {"dir": "subscribers"},
        "posts": {"dir": "posts"},
        "web": {"public_url": "https://bench.example.org", "secret_key": "benchmark-secret-key-of-32-bytes-or-more"},
        "fediverse": {"enabled": True, "allow_private_addresses": True, "concurrency": CONCURRENCY,
                      "max_requests_per_host": CONCURRENCY, "batch_size": 1000},
    }
    (folder / "feedsvc.toml").write_bytes(tomli_w.dumps(config).encode())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inboxes", type=int, default=1000)
    parser.add_argument("--scaling", default="100,1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--inbox-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        if os.environ.get("FEEDSVC_BENCH_PROFILE"):
            import cProfile
            import pstats

            with cProfile.Profile() as profile:
                result = one_run(args.one, args.inbox_port, args.folder)
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        else:
            result = one_run(args.one, args.inbox_port, args.folder)
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="feedsvc-fediverse-bench-") as tmp:
        work = Path(tmp)
        # One key for every run, so the receiver verifies against it.
        shared_store = work / "shared-store"
        from feedsvc.fediverse import keys

        keys.load_or_create(shared_store)
        key_file = work / "blog-public.pem"
        key_file.write_text(keys.load_or_create(shared_store).public_pem)
        port = free_port()
        server = multiprocessing.get_context("spawn").Process(target=serve_inboxes, args=(port, str(key_file)), daemon=True)
        server.start()
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/count", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

            def run(inboxes: int) -> dict:
                folder = prepare(work / f"run-{inboxes}-{time.monotonic_ns()}", inbox_port=port)
                (folder / "subscribers").mkdir(exist_ok=True)
                os.link(shared_store / keys.KEY_FILE, folder / "subscribers" / keys.KEY_FILE)
                before = httpx.get(f"http://127.0.0.1:{port}/count").json()
                output = subprocess.run(
                    [sys.executable, __file__, "--one", str(inboxes), "--inbox-port", str(port), "--folder", str(folder)],
                    capture_output=True, text=True, check=True,
                )
                if os.environ.get("FEEDSVC_BENCH_PROFILE"):
                    print(output.stderr, file=sys.stderr)
                result = json.loads(output.stdout.strip().splitlines()[-1])
                after = httpx.get(f"http://127.0.0.1:{port}/count").json()
                result["verified"] = after["verified"] - before["verified"]
                result["refused"] = after["refused"] - before["refused"]
                if result["refused"]:
                    print(f"refused: {after['last_refusal']}", file=sys.stderr)
                return result

            rounds = [run(args.inboxes) for _ in range(args.rounds)]
            scaling = [run(int(size)) for size in args.scaling.split(",")]
        finally:
            server.terminate()
            server.join(5)

    print(f"load average: {', '.join(f'{value:.2f}' for value in os.getloadavg())}; concurrency {CONCURRENCY}")
    print()
    print(f"| one post to {args.inboxes:,} shared inboxes | median of {args.rounds} | target |")
    print("|---|---|---|")
    seconds = statistics.median(r["seconds"] for r in rounds)
    print(f"| time for all | {seconds:.2f} s | <= 5 s |")
    print(f"| deliveries per second | {args.inboxes / seconds:,.0f} | |")
    print(f"| CPU per delivery (sender) | {statistics.median(r['cpu'] for r in rounds) / args.inboxes * 1000:.2f} ms | |")
    print(f"| peak RSS (sender) | {statistics.median(r['peak_rss_mib'] for r in rounds):.0f} MiB | |")
    print(f"| signatures verified / refused by the receiver | {rounds[-1]['verified']:,} / {rounds[-1]['refused']} | all / 0 |")
    print()
    print("| inboxes | time | deliveries/s | peak RSS (sender) | verified |")
    print("|---|---|---|---|---|")
    for result in scaling:
        print(f"| {result['inboxes']:,} | {result['seconds']:.2f} s | {result['inboxes'] / result['seconds']:,.0f} | "
              f"{result['peak_rss_mib']:.0f} MiB | {result['verified']:,} |")


if __name__ == "__main__":
    main()

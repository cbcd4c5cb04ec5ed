"""Sending benchmark: a ~30 KB digest to 10,000 subscribers through the feedsvc drain into a local SMTP sink.

    .venv/bin/python benchmarks/send.py [--subscribers 10000] [--large 100000] [--naive-sample 1000] [--runs 3]
                                        [--workers 1,2]

In one run it measures, against the same sink:
  * feedsvc: `drain()` (SMTP pool + delivery state in a SQLite store), in a subprocess so its peak RSS is its own;
  * naive: smtplib with a new connection and a freshly built EmailMessage per subscriber (timed on a sample
    and scaled, since it is slow);
  * smtp-source (Postfix), when installed: the same number and size of messages, the machine's practical limit;
and the drain's peak RSS at --subscribers and at --large subscribers (memory must stay flat).

The sink is Postfix's `smtp-sink` when installed, else an aiosmtpd sink in its own process. Postfix provides
both tools: `sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postfix` (then `sudo postfix stop` or
`systemctl disable --now postfix`: the benchmark needs only the two tools, not the mail daemon).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POSTFIX_DIRS = ("/usr/sbin", "/usr/lib/postfix/sbin", "/usr/libexec/postfix")
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CONNECTIONS = 8


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(Path(d) / name) for d in POSTFIX_DIRS if (Path(d) / name).is_file()), None
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"SMTP sink did not start on port {port}")


# --- the sink -----------------------------------------------------------------------------------------------


def start_sink(port: int) -> tuple[subprocess.Popen, str]:
    smtp_sink = find_tool("smtp-sink")
    if smtp_sink:
        # smtp-sink refuses to run as root unless told which user to become.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        process = subprocess.Popen([smtp_sink, *user, f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL)
        name = "Postfix smtp-sink"
    else:
        process = subprocess.Popen([sys.executable, "-P", __file__, "--aiosmtpd-sink", str(port)])
        name = "aiosmtpd sink (install postfix for smtp-sink)"
    wait_for_port(port)
    return process, name


def run_aiosmtpd_sink(port: int) -> None:
    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    controller = Controller(Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


# --- the store and the digest -------------------------------------------------------------------------------


def write_config(folder: Path, port: int) -> Path:
    config = folder / "feedsvc.toml"
    config.write_text(
        f"""
[site]
title = "Catatan Backend"
url = "https://blog.example.org"
language = "id"
[store]
dir = "data"
[mail]
smtp_url = "smtp://127.0.0.1:{port}"
from_address = "news@blog.example.org"
connections = {CONNECTIONS}
messages_per_connection = 1000000
batch_size = 500
[web]
secret_key = "benchmark-secret-of-at-least-32-bytes"
public_url = "https://news.example.org"
""",
        encoding="utf-8",
    )
    return config


def digest_posts():
    from feedsvc.posts.model import Post

    paragraph = (
        "<p>Setahun jadi backend developer: antrian, basis data, dan kebiasaan kecil yang membuat layanan "
        'tetap hidup. Baca juga <a href="https://blog.example.org/arsip/">arsip</a> untuk cerita lainnya.</p>'
    )
    return [
        Post(
            id=f"post-{i}", slug=f"post-{i}", title=f"Tulisan ke-{i}: belajar backend 🚀", date=START - timedelta(hours=i),
            updated=None, url=f"https://blog.example.org/post-{i}/", tags=("backend",),
            summary_html="<p>Ringkasan singkat tulisan ini.</p>", author="Budi", image=None, draft=False,
            source=Path(f"post-{i}.md"), content_html=paragraph * 19,
        )
        for i in range(5)
    ]


def fill_store(config: Path, subscribers: int) -> tuple[str, str, str]:
    """Subscribers, one rendered edition and a queued delivery per subscriber. Returns the edition parts."""
    from feedsvc.config import load_settings
    from feedsvc.mail.render import render_edition
    from feedsvc.store import editions
    from feedsvc.store import subscribers as subscriber_store
    from feedsvc.store.engine import open_engine

    settings = load_settings(config)
    edition = render_edition(settings, digest_posts(), "daily", START - timedelta(days=1), START)
    engine = open_engine(settings.store.database_url)
    page = 5000
    with engine.begin() as connection:
        edition_id = editions.insert_edition(
            connection, key="daily:bench", frequency="daily", period_start=START - timedelta(days=1), period_end=START,
            post_ids=[], subject=edition.subject, html=edition.html, text=edition.text, created_at=START,
        )
    for first in range(0, subscribers, page):
        numbers = range(first, min(first + page, subscribers))
        with engine.begin() as connection:
            for n in numbers:
                subscriber_store.insert_if_absent(
                    connection, email=f"reader{n}@example.com", email_key=f"reader{n}@example.com",
                    name=f"Pembaca {n}", status="active", frequency="daily", created_at=START, confirmed_at=START,
                )
        with engine.begin() as connection:
            editions.insert_deliveries(
                connection,
                [
                    {"key": f"daily:bench:{n + 1}", "edition_id": edition_id, "subscriber_id": n + 1,
                     "state": "queued", "attempts": 0, "next_attempt_at": START, "created_at": START, "last_error": ""}
                    for n in numbers
                ],
            )
    engine.dispose()
    return edition.subject, edition.html, edition.text


# --- the three contenders -----------------------------------------------------------------------------------


def run_drain_child(config: Path, worker_id: str) -> None:
    """In a subprocess: drain everything, print a JSON line with the count, time and peak RSS."""
    from feedsvc.config import load_settings
    from feedsvc.mail.queue import drain
    from feedsvc.mail.smtp import SmtpTransport
    from feedsvc.store.engine import open_engine

    settings = load_settings(config)
    engine = open_engine(settings.store.database_url)

    async def go():
        transport = SmtpTransport(settings)
        try:
            return await drain(settings, engine, transport, worker_id=worker_id, now=lambda: START + timedelta(minutes=1))
        finally:
            await transport.aclose()

    cpu_before = time.process_time()
    started = time.perf_counter()
    report = asyncio.run(go())
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before  # every thread of the process, start-up excluded
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"sent": report.sent, "failed": report.failed + report.retried, "seconds": elapsed,
                      "cpu_seconds": cpu, "peak_mib": peak_kib / 1024}))


def drain_in_subprocesses(config: Path, workers: int) -> dict:
    """Run `workers` drain processes on the same store at once (as `feedsvc worker` processes would).

    The time is the longest drain as timed inside its process: interpreter start-up is not sending."""
    children = [
        subprocess.Popen([sys.executable, "-P", __file__, "--drain-child", str(config), "--worker-id", f"bench{i}"],
                         stdout=subprocess.PIPE, text=True)
        for i in range(workers)
    ]
    results = []
    for child in children:
        output, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"drain process failed with status {child.returncode}")
        results.append(json.loads(output.strip().splitlines()[-1]))
    return {
        "sent": sum(r["sent"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "seconds": max(r["seconds"] for r in results),
        "peak_mib": max(r["peak_mib"] for r in results),
        "cpu_seconds": sum(r["cpu_seconds"] for r in results),
    }


def naive_send(port: int, count: int, subject: str, html: str, text: str) -> float:
    """The straightforward loop: a new EmailMessage and a new SMTP connection for every subscriber."""
    started = time.perf_counter()
    for n in range(count):
        message = EmailMessage()
        message["From"] = "Catatan Backend <news@blog.example.org>"
        message["To"] = f"Pembaca {n} <reader{n}@example.com>"
        message["Subject"] = subject
        message["List-Unsubscribe"] = f"<https://news.example.org/unsubscribe/{n}>"
        message.set_content(text.replace("__FEEDSVC_UNSUBSCRIBE_URL__", f"https://news.example.org/unsubscribe/{n}"))
        message.add_alternative(
            html.replace("__FEEDSVC_UNSUBSCRIBE_URL__", f"https://news.example.org/unsubscribe/{n}"), subtype="html"
        )
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(message)
    return time.perf_counter() - started


def transport_alone(config: Path, message: bytes, count: int) -> float:
    """The SMTP pool by itself pushing one prepared message: the ceiling the drain works under."""
    from feedsvc.config import load_settings
    from feedsvc.mail.smtp import SmtpTransport
    from feedsvc.mail.transport import Outgoing

    settings = load_settings(config)

    async def go() -> float:
        transport = SmtpTransport(settings)
        items = iter(range(count))

        async def sender() -> None:
            for n in items:
                await transport.send(Outgoing("news@blog.example.org", f"reader{n}@example.com", message))

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
        await transport.aclose()
        return elapsed

    return asyncio.run(go())


def smtp_source(port: int, count: int, size: int) -> float | None:
    tool = find_tool("smtp-source")
    if not tool:
        return None
    command = [tool, "-s", str(CONNECTIONS), "-d", "-l", str(size), "-m", str(count),
               "-f", "news@blog.example.org", "-t", "reader@example.com", f"127.0.0.1:{port}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


# --- the run ------------------------------------------------------------------------------------------------


def median_of(runs: int, measure) -> float:
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000, help="subscribers for the flat-memory check (0: skip)")
    parser.add_argument("--naive-sample", type=int, default=1000, help="messages the naive loop sends (>= 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each timed contender (median)")
    parser.add_argument("--workers", default="1,2", help="drain processes sharing the queue, one row per number")
    parser.add_argument("--drain-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-id", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--aiosmtpd-sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain_child:
        return run_drain_child(args.drain_child, args.worker_id)
    if args.aiosmtpd_sink:
        return run_aiosmtpd_sink(args.aiosmtpd_sink)

    port = free_port()
    sink, sink_name = start_sink(port)
    try:
        report(args, port, sink_name)
    finally:
        sink.terminate()
        sink.wait()


def report(args: argparse.Namespace, port: int, sink_name: str) -> None:
    count = args.subscribers
    workers = [int(n) for n in args.workers.split(",")]
    print(f"sink: {sink_name}; {count} subscribers, {CONNECTIONS} connections per drain process, SQLite store; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="feedsvc-bench-") as temp:
        folder = Path(temp)
        runs_done = 0

        def feedsvc_run(subscribers: int, processes: int) -> dict:
            nonlocal runs_done
            run_dir = folder / f"run{runs_done}"
            runs_done += 1
            run_dir.mkdir()
            config = write_config(run_dir, port)
            parts = fill_store(config, subscribers)
            result = drain_in_subprocesses(config, processes)
            result["parts"], result["config"] = parts, config
            if result["sent"] != subscribers:
                raise SystemExit(f"feedsvc sent {result['sent']} of {subscribers} ({result['failed']} failed)")
            return result

        drains = {n: [feedsvc_run(count, n) for _ in range(args.runs)] for n in workers}
        first = drains[workers[0]][0]
        subject, html, text = first["parts"]
        sample_message = _sample_message(first["config"], subject, html, text)
        size = len(sample_message)

        sample = min(args.naive_sample, count)
        naive_seconds = median_of(args.runs, lambda: naive_send(port, sample, subject, html, text)) * count / sample
        pool_seconds = median_of(args.runs, lambda: transport_alone(first["config"], sample_message, count))
        source_seconds = (
            median_of(args.runs, lambda: smtp_source(port, count, size)) if find_tool("smtp-source") else None
        )
        peak_small = max(r["peak_mib"] for r in drains[1 if 1 in drains else workers[0]])
        peak_large = feedsvc_run(args.large, 1)["peak_mib"] if args.large else None

    naive_rate = count / naive_seconds
    source_rate = count / source_seconds if source_seconds else None
    print(f"\nmessage size {size / 1024:.1f} KiB; medians of {args.runs} runs of {count} messages "
          f"(naive: {sample} messages per run)")
    print(f"{'contender':<46} {'messages/s':>10} {'CPU µs/msg':>10}  {'vs naive':>8}  {'vs smtp-source':>14}")

    def row(name: str, rate: float, cpu: float | None = None) -> None:
        cpu_text = f"{cpu * 1e6 / count:.0f}" if cpu is not None else ""
        versus_source = f"{rate / source_rate:.0%}" if source_rate else "n/a"
        print(f"{name:<46} {rate:>10.0f} {cpu_text:>10}  {rate / naive_rate:>7.1f}x  {versus_source:>14}")

    for n, results in drains.items():
        seconds = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r["cpu_seconds"] for r in results)
        row(f"feedsvc drain, {n} process(es) (pool + store)", count / seconds, cpu)
    row("naive smtplib (new connection + EmailMessage)", naive_rate)
    row("SmtpTransport alone (no store, one message)", count / pool_seconds)
    if source_rate:
        row("postfix smtp-source (same size and count)", source_rate)
    else:
        print("postfix smtp-source: not installed (apt-get install postfix) - practical limit not measured")
    print("targets: >= 10x naive, >= 40% of smtp-source. CPU: user+system time of the drain processes while draining")
    print(f"\npeak RSS of a drain process at {count} subscribers: {peak_small:.1f} MiB")
    if peak_large is not None:
        growth = peak_large / peak_small - 1
        print(f"peak RSS of a drain process at {args.large} subscribers: {peak_large:.1f} MiB "
              f"({growth:+.1%} vs {count}; target <= 200 MiB and within 10 %)")


def _sample_message(config: Path, subject: str, html: str, text: str) -> bytes:
    from feedsvc.config import load_settings
    from feedsvc.mail.render import personalise

    settings = load_settings(config)
    return personalise(
        settings, subject=subject, html=html, text=text, to_email="reader0@example.com", to_name="Pembaca 0",
        unsubscribe_url="https://news.example.org/unsubscribe/x", preferences_url="https://news.example.org/preferences/x",
        message_id="<sample@blog.example.org>",
    )


if __name__ == "__main__":
    # Run as a script, this folder comes first on sys.path, where a benchmark named like a standard module
    # (http.py) would shadow it; the children run with -P for the same reason.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(ROOT))
    main()

"""Sending benchmark: `feedsvc digest send` with the default [mail] settings against Postfix's smtp-source.

    .venv/bin/python benchmarks/send.py [--sizes 1000,10000] [--rounds 3] [--memory 1000,10000,100000]
                                        [--relay-rtt-ms 0]

One ~47 KB digest (5 posts, Indonesian, emoji subject) is queued for every subscriber of a fresh SQLite store
(not timed); then the user's command, `feedsvc digest send`, runs as a new process with the store and `[mail]
smtp_url` / `from_address` set and every other [mail] setting at its default, into Postfix's `smtp-sink`. In the
same rounds, `smtp-source -s 8 -d` sends the same number of messages of the same size into the same sink. Rounds
are interleaved (each round runs every size for both), figures are medians; whole processes, start-up included,
timed without sampling their memory (measure.py says why). Counts are checked exactly: the sink received as many
messages as there are subscribers, and the store has one delivery per subscriber, every one sent. The sink's own
CPU per message is shown too: it runs on the machine's cores beside the contender. Each round also times a new
Python that only imports SQLAlchemy and pydantic-settings (the store and the configuration): with the sink's CPU
for feedsvc's mails, it gives the best ratio any process built on them could reach in this run. Then the memory
of the same command at each --memory size (PSS summed over the process tree, sampled while it runs; peak RSS
from wait4).
With `--relay-rtt-ms N`, both contenders reach the sink through `delay_proxy.py`, which holds every byte for N/2
ms each way: a relay N ms away instead of one on loopback, where round trips cost nothing.

Needs Postfix's tools, not its daemon: `DEBIAN_FRONTEND=noninteractive apt-get install -y postfix` (leave
postfix stopped).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _paths  # noqa: F401  (the repository root on sys.path, for tests.support)
import measure  # benchmarks/measure.py, beside this script

from tests.support import free_port, listening, wait_for

POSTFIX_DIRS = ("/usr/sbin", "/usr/lib/postfix/sbin", "/usr/libexec/postfix")
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SOURCE_SESSIONS = 8
# What `feedsvc digest send` cannot send its first mail without: the store (whom to send what) and the
# configuration (where to send it from). A fresh interpreter importing them, and nothing else (not even the
# command line's Typer), is a floor under the command's start-up.
LIBRARIES = "import sqlalchemy, pydantic_settings"
# The sink's CPU seconds in each run, by (contender, messages).
SINK_CPU: dict[tuple[str, int], list[float]] = {}


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(Path(d) / name) for d in POSTFIX_DIRS if (Path(d) / name).is_file()), None
    )


class Sink:
    """smtp-sink with its running counters (-c) in a file: how many messages it has taken so far."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.log = folder / "sink.out"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root otherwise
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([find_tool("smtp-sink"), *user, "-c", f"127.0.0.1:{self.port}", "1024"],
                                            stdout=out)
        wait_for(lambda: listening(self.port), 10, f"smtp-sink on port {self.port}", interval=0.05)

    def cpu_seconds(self) -> float:
        """The sink's own CPU time so far (user + system): it runs on the same cores as the contenders."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def messages(self) -> int:
        time.sleep(0.2)  # the counters are written when a session ends
        counts = re.findall(rb"mesg=(\d+)", self.log.read_bytes()[-200:])
        return int(counts[-1]) if counts else 0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def write_config(folder: Path, port: int, store_url: str = "") -> Path:
    """The store (SQLite in the folder unless a URL is given) and where to send; every other [mail] setting is
    left at its default."""
    config = folder / "feedsvc.toml"
    config.write_text(
        f"""
[site]
title = "Catatan Backend"
url = "https://blog.example.org"
language = "id"
[posts]
dir = "posts"
[store]
dir = "data"
url = "{store_url}"
[mail]
smtp_url = "smtp://127.0.0.1:{port}"
from_address = "news@blog.example.org"
[web]
secret_key = "benchmark-secret-of-at-least-32-bytes"
public_url = "https://news.example.org"
[log]
level = "WARNING"
""",
        encoding="utf-8",
    )
    (folder / "posts").mkdir()
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
    with engine.begin() as connection:  # as the digest's queueing does once a period's deliveries are in
        editions.refresh_queue_statistics(connection)
    engine.dispose()
    return edition.subject, edition.html, edition.text


# --- the contenders ------------------------------------------------------------------------------------------


def digest_send(config: Path, subscribers: int, sink: Sink, sample_memory: bool = False) -> measure.Measured:
    """`feedsvc digest send` as a user runs it; exact counts checked at the sink and in the store."""

    before = sink.messages()
    sink_before = sink.cpu_seconds()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")}
    result = measure.run([sys.executable, "-m", "feedsvc", "digest", "send", "--config", str(config)], env=env,
                         sample_memory=sample_memory)
    received = sink.messages() - before
    states = delivery_states(config)
    if received != subscribers or states.get("sent") != subscribers or sum(states.values()) != subscribers:
        raise SystemExit(f"feedsvc digest send: sink got {received}, store {states}, for {subscribers} subscribers")
    SINK_CPU.setdefault(("feedsvc", subscribers), []).append(sink.cpu_seconds() - sink_before)
    return result


def delivery_states(config: Path) -> dict[str, int]:
    from feedsvc.config import load_settings
    from feedsvc.store import deliveries
    from feedsvc.store.engine import create_store_engine

    engine = create_store_engine(load_settings(config).store.database_url)
    with engine.connect() as connection:
        states = deliveries.count_by_state(connection)
    engine.dispose()
    return {state: number for state, number in states.items() if number}


def smtp_source(port: int, count: int, size: int, sink: Sink) -> measure.Measured:
    before = sink.messages()
    sink_before = sink.cpu_seconds()
    result = measure.run([find_tool("smtp-source"), "-s", str(SOURCE_SESSIONS), "-d", "-l", str(size), "-m", str(count),
                          "-f", "news@blog.example.org", "-t", "reader@example.com", f"127.0.0.1:{port}"],
                         sample_memory=False)
    received = sink.messages() - before
    if received != count:
        raise SystemExit(f"smtp-source: the sink got {received} of {count}")
    SINK_CPU.setdefault(("smtp-source", count), []).append(sink.cpu_seconds() - sink_before)
    return result


def library_imports() -> measure.Measured:
    """A new Python importing LIBRARIES, as the CLI starts (plugins off, as it sets them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")} | {"PYDANTIC_DISABLE_PLUGINS": "__all__"}
    return measure.run([sys.executable, "-c", LIBRARIES], env=env, sample_memory=False)


# --- the run ------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="subscriber counts timed against smtp-source")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", default="1000,10000,100000", help="subscriber counts for the memory table")
    parser.add_argument("--relay-rtt-ms", type=float, default=0.0, help="a round trip to the relay (0: loopback)")
    args = parser.parse_args()
    if not (find_tool("smtp-sink") and find_tool("smtp-source")):
        print("needs smtp-sink and smtp-source: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix", file=sys.stderr)
        return 2
    sizes = [int(n) for n in args.sizes.split(",")]
    memory_sizes = [int(n) for n in args.memory.split(",") if n]
    load_before = measure.load()
    with tempfile.TemporaryDirectory(prefix="feedsvc-bench-") as temp:
        folder = Path(temp)
        sink = Sink(folder)
        relay_port, proxy = sink.port, None
        if args.relay_rtt_ms:
            relay_port = free_port()
            proxy = subprocess.Popen([sys.executable, str(Path(__file__).with_name("delay_proxy.py")), str(relay_port),
                                      str(sink.port), str(args.relay_rtt_ms)])
            wait_for(lambda: listening(relay_port), 10, f"the delaying proxy on port {relay_port}", interval=0.05)
        runs = 0

        def prepared(subscribers: int) -> Path:
            nonlocal runs, parts
            runs += 1
            run_dir = folder / f"run{runs}"
            run_dir.mkdir()
            config = write_config(run_dir, relay_port)
            parts = fill_store(config, subscribers)
            return config

        parts: tuple[str, str, str] = ("", "", "")

        try:
            message_size = len(_sample_message(prepared(1), *parts))
            timings: dict[tuple[str, int], list[measure.Measured]] = {}
            for _ in range(args.rounds):
                timings.setdefault(("libraries", 0), []).append(library_imports())
                for size in sizes:
                    config = prepared(size)
                    timings.setdefault(("feedsvc", size), []).append(digest_send(config, size, sink))
                    timings.setdefault(("smtp-source", size), []).append(smtp_source(relay_port, size, message_size, sink))
            memory = {size: digest_send(prepared(size), size, sink, sample_memory=True) for size in memory_sizes}
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait()
            sink.stop()

    relay = f"{args.relay_rtt_ms:g} ms away (delay_proxy.py)" if args.relay_rtt_ms else "on loopback"
    print(f"message {message_size / 1024:.1f} KiB; SQLite store; Postfix smtp-sink {relay}; {args.rounds} interleaved rounds "
          f"(medians), whole processes; load average before {load_before}, after {measure.load()}")
    print(f"{'subscribers':>11} {'contender':<42} {'seconds':>8} {'msg/s':>7} {'CPU µs/msg':>10} {'sink CPU µs/msg':>15} "
          f"{'vs smtp-source':>14}")
    for size in sizes:
        source = statistics.median(m.seconds for m in timings[("smtp-source", size)])
        for name, label in (("feedsvc", "feedsvc digest send (default [mail])"), ("smtp-source", "smtp-source -s 8 -d")):
            seconds = statistics.median(m.seconds for m in timings[(name, size)])
            cpu = statistics.median(m.cpu_seconds for m in timings[(name, size)])
            sink_cpu = statistics.median(SINK_CPU[(name, size)])
            print(f"{size:>11} {label:<42} {seconds:>8.2f} {size / seconds:>7.0f} {cpu * 1e6 / size:>10.0f} "
                  f"{sink_cpu * 1e6 / size:>15.0f} {source / seconds:>14.2f}")
    print("targets: feedsvc >= 1.0x smtp-source at 10,000, >= 0.6x at 1,000 (ratio = smtp-source time / feedsvc time)")
    floor = statistics.median(m.seconds for m in timings[("libraries", 0)])
    print(f"\nfloor: a new Python importing only SQLAlchemy and pydantic-settings takes {floor:.2f} s. smtp-sink is one "
          "process: no contender is done before the sink has spent its CPU on the mails, and feedsvc sends none before "
          "it has loaded its store and configuration. Best ratio a process on these libraries can reach here:")
    for size in sizes:
        source = statistics.median(m.seconds for m in timings[("smtp-source", size)])
        busy = statistics.median(SINK_CPU[("smtp-source", size)]) / source
        sink = statistics.median(SINK_CPU[("feedsvc", size)])
        print(f"{size:>11}: smtp-source {source:.2f} s (the sink's CPU {busy:.0%} of it) / (floor {floor:.2f} s + the sink's "
              f"CPU for feedsvc's mails {sink:.2f} s) = {source / (floor + sink):.2f}")
    if memory:
        print(f"\n{'subscribers':>11} {'PSS, process tree':>18} {'peak RSS':>9}  (feedsvc digest send; target flat, <= 100 MiB)")
        for size, result in memory.items():
            print(f"{size:>11} {result.peak_pss_mib:>14.1f} MiB {result.peak_rss_mib:>5.1f} MiB")
    return 0


def _sample_message(config: Path, subject: str, html: str, text: str) -> bytes:
    from feedsvc.config import load_settings
    from feedsvc.mail.message import personalise

    settings = load_settings(config)
    return personalise(
        settings, subject=subject, html=html, text=text, to_email="reader0@example.com", to_name="Pembaca 0",
        unsubscribe_url="https://news.example.org/unsubscribe/x", preferences_url="https://news.example.org/preferences/x",
        message_id="<sample@blog.example.org>",
    )


if __name__ == "__main__":
    sys.exit(main())

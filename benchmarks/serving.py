"""Feeds over HTTP: feedsvc (as in production) against nginx serving the same file, in the same run; and the
home page and /healthz of the same feedsvc process.

    .venv/bin/python benchmarks/serving.py [--seconds 5] [--rounds 3] [--connections 32] [--threads 2]
                                           [--before DIR]

Builds a realistic ~100 KB rss.xml with the real feed builder, starts `feedsvc serve` with its default
settings (uvicorn, 1 worker, uvloop + httptools, access log off) and nginx (1 worker, temp config, no daemon,
`gzip_static` on the same file compressed once as feedsvc does) on free loopback ports, then drives each with
the same wrk command: a plain GET of /rss.xml, a conditional GET answered 304, a GET with `Accept-Encoding:
gzip`; then GET / (the subscribe page; no cookie, so each answer makes a new CSRF session as for a first
visit) and GET /healthz. `--before DIR` also serves the same site with the feedsvc code of DIR (say a `git
worktree` of an earlier revision), in the same rounds, as "before". Rounds are interleaved (each round runs every case on every server), figures are
medians over the rounds, and the ratio is to nginx in the same rounds. Client and servers share the machine:
the load average is printed before and after. Needs `wrk` and `nginx` (Debian: apt-get install -y wrk nginx).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import _paths  # noqa: F401  (the repository root on sys.path, for tests.support)

from tests.support import MemoryTransport, free_port, wait_for

PARAGRAPH = (
    "Setiap kali sebuah layanan backend tumbuh, kita belajar bahwa antrian, cache dan indeks basis data "
    "bukan sekadar kata kunci: semuanya adalah keputusan tentang apa yang boleh lambat dan apa yang tidak. "
    "Caching at the edge, careful connection pooling and honest timeouts make the difference. 🚀\n\n"
)


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).read()
    except OSError:
        return False
    return True


def make_site(root: Path, port: int) -> Path:
    """20 posts with ~5 KB of text each, then the real build: rss.xml lands near 100 KB."""
    posts = root / "posts"
    posts.mkdir()
    for number in range(1, 21):
        body = f"# Catatan {number}\n\n" + PARAGRAPH * 14
        (posts / f"2025-03-{number:02d}-catatan-{number}.md").write_text(
            f"---\ntitle: Catatan backend nomor {number}\ndate: 2025-03-{number:02d}T08:00:00+07:00\n"
            f"tags: [backend, python]\n---\n\n{body}",
            encoding="utf-8",
        )
    config = root / "feedsvc.toml"
    config.write_text(
        '[site]\ntitle = "Catatan Backend"\nurl = "https://blog.example.org"\nlanguage = "id"\n'
        '[posts]\ndir = "posts"\n[feeds]\noutput_dir = "public"\n[store]\ndir = "subscribers"\n'
        f'[web]\nhost = "127.0.0.1"\nport = {port}\nsecret_key = "bench-secret-of-at-least-32-bytes"\n'
        '[log]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    from feedsvc import feeds
    from feedsvc.config import load_settings

    feeds.build(load_settings(config))
    return config


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ application/rss+xml xml; }}
    gzip_static on;
    client_body_temp_path {root}/nginx-tmp;
    proxy_temp_path {root}/nginx-tmp;
    fastcgi_temp_path {root}/nginx-tmp;
    uwsgi_temp_path {root}/nginx-tmp;
    scgi_temp_path {root}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        root {public};
    }}
}}
"""


def parse_wrk(output: str) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from `wrk --latency` output."""

    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", output).group(1))
    return rps, p50, p99


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str, seconds: int, connections: int, threads: int, headers: list[str], pid: int
) -> tuple[float, float, float, float]:
    """(requests/s, p50 ms, p99 ms, the server's CPU µs per request) of one wrk run against the server `pid`."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    cpu = cpu_seconds(pid)
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu
    if "Non-2xx or 3xx responses" in output:
        raise SystemExit(f"{url}: errors under load:\n{output}")
    rps, p50, p99 = parse_wrk(output)
    return rps, p50, p99, cpu * 1e6 / (rps * seconds)


def etag_of(url: str, headers: dict[str, str]) -> str:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
        return response.headers["ETag"]


def check_gzip(url: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})) as response:
        if response.headers.get("Content-Encoding") != "gzip":
            raise SystemExit(f"{url}: no gzip answer")


# (case, path, headers) - `etag` in a header is replaced by the server's ETag of that representation.
FEED_CASES = [
    ("feed plain GET", "/rss.xml", {}),
    ("feed 304", "/rss.xml", {"If-None-Match": "etag"}),
    ("feed gzip", "/rss.xml", {"Accept-Encoding": "gzip"}),
]
PAGE_CASES = [("GET / (home)", "/", {}), ("GET /healthz", "/healthz", {})]


def protocol_cpu(config_path: Path, requests: int = 5000) -> dict[tuple[str, str], float]:
    """In-process: CPU µs per feed request of the HTTP protocol `feedsvc serve` uses (`server_config`, with its
    fast path for feeds) and of the same guarded protocol without it (every request through the ASGI app), fed
    one keep-alive request at a time on an in-memory transport; median of 5 runs each."""
    import asyncio

    import uvloop
    from uvicorn.protocols.http.auto import AutoHTTPProtocol
    from uvicorn.server import ServerState

    from feedsvc.config import load_settings
    from feedsvc.web.app import create_app
    from feedsvc.web.server import connection_limit, guarded_protocol, server_config

    settings = load_settings(config_path)
    config = server_config(create_app(settings), settings)
    config.load()
    protocols = {
        "fast path": config.http,
        "ASGI app": guarded_protocol(AutoHTTPProtocol, settings.web.header_timeout, connection_limit(settings)),
    }
    entry = config.loaded_app.app.state.web.feeds.get("/rss.xml")
    head = "GET /rss.xml HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\n"
    cases = {case: (head + "".join(f"{k}: {entry.etag.decode() if v == 'etag' else v}\r\n" for k, v in headers.items())
                     + "\r\n").encode() for case, _, headers in FEED_CASES}

    async def per_request(protocol_class: type, request: bytes) -> float:
        state = ServerState()
        state.default_headers = [(b"date", b"Sat, 05 Dec 2026 22:00:00 GMT")]
        protocol = protocol_class(config=config, server_state=state, app_state={})
        protocol.connection_made(MemoryTransport())
        timings = []
        for count in (200, *[requests] * 5):  # a warm-up, then five timed runs
            started = time.process_time()
            for _ in range(count):
                protocol.data_received(request)
                while protocol.cycle is not None and not protocol.cycle.response_complete:  # noqa: ASYNC110
                    await asyncio.sleep(0)  # turns of the loop, as the server gives the app's task
            timings.append((time.process_time() - started) * 1e6 / count)
        protocol.connection_lost(None)
        return statistics.median(timings[1:])

    async def measure() -> dict[tuple[str, str], float]:
        return {
            (case, name): await per_request(protocol_class, request)
            for case, request in cases.items()
            for name, protocol_class in protocols.items()
        }

    return uvloop.run(measure())


def loadavg() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--before", type=Path, help="a checkout of feedsvc to serve beside this one, as 'before'")
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "nginx") if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        print(f"missing: {', '.join(missing)}. Install with: apt-get install -y wrk nginx", file=sys.stderr)
        return 2
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    load_before = loadavg()

    with tempfile.TemporaryDirectory(prefix="feedsvc-bench-") as temp:
        root = Path(temp)
        feedsvc_port, nginx_port, before_port = free_port(), free_port(), free_port()
        config = make_site(root, feedsvc_port)
        protocol = protocol_cpu(config)
        public = root / "public"
        feed = public / "rss.xml"
        size = feed.stat().st_size
        # The same compression feedsvc applies once per feed version (level 9), served by nginx as it is.
        (public / "rss.xml.gz").write_bytes(gzip.compress(feed.read_bytes(), compresslevel=9, mtime=0))
        (root / "nginx-tmp").mkdir()
        (root / "nginx.conf").write_text(NGINX_CONF.format(root=root, port=nginx_port, public=public), encoding="utf-8")

        env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")}
        feedsvc = [sys.executable, "-m", "feedsvc", "serve", "--config", str(config)]
        servers = [
            subprocess.Popen([nginx_bin, "-c", str(root / "nginx.conf"), "-p", str(root)], stderr=subprocess.DEVNULL),
            # From the site's folder: `-m` puts the working directory first on the path, which must not be a
            # checkout other than the one meant.
            subprocess.Popen(feedsvc, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]
        bases = {"nginx": f"http://127.0.0.1:{nginx_port}", "feedsvc": f"http://127.0.0.1:{feedsvc_port}"}
        if args.before:
            # Its own store (two processes migrating one SQLite file at once would race), the same feeds; the
            # other checkout's package first on the path: its code, this one's installed dependencies.
            before_config = root / "before.toml"
            before_config.write_text(
                config.read_text(encoding="utf-8").replace('dir = "subscribers"', 'dir = "subscribers-before"'),
                encoding="utf-8",
            )
            servers.append(subprocess.Popen(
                [*feedsvc[:-1], str(before_config), "--port", str(before_port)],
                env={**env, "PYTHONPATH": str(args.before.resolve())}, cwd=root,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            bases["before"] = f"http://127.0.0.1:{before_port}"
        try:
            for base in bases.values():
                wait_for(lambda url=f"{base}/rss.xml": answers(url), 20, f"{base}/rss.xml", interval=0.1)
                check_gzip(f"{base}/rss.xml")
            runs: list[tuple[str, str, str, list[str]]] = []  # (case, server, url, wrk headers)
            for case, path, headers in FEED_CASES:
                for name, base in bases.items():
                    url = base + path
                    etag = etag_of(url, {})
                    runs.append((case, name, url, [f"{k}: {etag if v == 'etag' else v}" for k, v in headers.items()]))
            feedsvcs = [name for name in bases if name != "nginx"]
            runs += [(case, name, bases[name] + path, []) for case, path, _ in PAGE_CASES for name in feedsvcs]
            pids = dict(zip(bases, (server.pid for server in servers), strict=True))
            for _case, name, url, headers in runs:
                run_wrk(url, 1, args.connections, args.threads, headers, pids[name])  # warm-up
            rounds: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
            for _ in range(args.rounds):
                for case, name, url, headers in runs:
                    rounds.setdefault((case, name), []).append(
                        run_wrk(url, args.seconds, args.connections, args.threads, headers, pids[name])
                    )
            results = {key: tuple(statistics.median(r[i] for r in values) for i in range(4)) for key, values in rounds.items()}
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
            for server in servers:
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()

    print(f"/rss.xml = {size / 1024:.0f} KB; wrk -t{args.threads} -c{args.connections}, {args.rounds} interleaved "
          f"rounds of {args.seconds} s (medians); {os.cpu_count()} CPUs shared by client and servers; "
          f"load average before {load_before}, after {loadavg()}")
    print(f"{'case':<16} {'server':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs nginx':>9} {'CPU µs/req':>11}")
    for case, _, _ in FEED_CASES:
        baseline = results[(case, "nginx")][0]
        for name in bases:
            rps, p50, p99, cpu = results[(case, name)]
            print(f"{case:<16} {name:<8} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {rps / baseline:>9.2f} {cpu:>11.1f}")
    baseline = results[("feed plain GET", "nginx")][0]
    for case, _, _ in PAGE_CASES:
        for name in feedsvcs:
            rps, p50, p99, cpu = results[(case, name)]
            print(f"{case:<16} {name:<8} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {rps / baseline:>9.2f} {cpu:>11.1f}")
    print("\nIn-process, the HTTP protocol alone (no socket): CPU µs per feed request, median of 5 runs of 5,000")
    print(f"{'case':<16} {'fast path':>10} {'ASGI app':>10}")
    for case, _, _ in FEED_CASES:
        print(f"{case:<16} {protocol[(case, 'fast path')]:>10.1f} {protocol[(case, 'ASGI app')]:>10.1f}")
    print("targets: feeds >= 0.80 of nginx each; / and /healthz >= 10,000 req/s with p99 <= 10 ms "
          "(their ratio is to nginx's plain feed GET)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

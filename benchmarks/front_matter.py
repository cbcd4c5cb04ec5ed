"""Front matter benchmark: feedsvc's own split + simple YAML reader vs python-frontmatter, same files, same run.

    .venv/bin/python benchmarks/front_matter.py [--posts 10000] [--rounds 5]

The posts are build.py's generated collection, read into memory first: only splitting the front matter from
the body and reading it into a mapping is timed (what a cold scan does for every file). Rows:
- feedsvc: `readers.split(decode(bytes))` (the fence found by a regex, the common `key: value` lines read
  without PyYAML, anything else by PyYAML's C base loader);
- feedsvc without the simple reader: the same split, every front matter through the C base loader;
- python-frontmatter: `frontmatter.loads(text)` as documented (its regex split, PyYAML's C safe loader);
- python-frontmatter, base loader: the same with PyYAML's C base loader, to tell its split from its loader.
Medians of the rounds; "vs feedsvc" is the row / the first row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import frontmatter
import yaml
from build import generate

from feedsvc.posts.readers import split, yaml_front_matter
from feedsvc.posts.source import decode


class BaseLoaderHandler(frontmatter.YAMLHandler):
    def load(self, fm: str, **kwargs: Any) -> Any:
        return yaml.load(fm, Loader=yaml.CBaseLoader)


def timed(read: Callable[[bytes], object], files: list[bytes], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for data in files:
            read(data)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "posts"
        generate(folder, arguments.posts)
        files = [path.read_bytes() for path in sorted(folder.iterdir())]

    def without_simple_reader(data: bytes) -> object:
        original = yaml_front_matter.simple_yaml
        yaml_front_matter.simple_yaml = lambda raw: None  # type: ignore[assignment]
        try:
            return split(decode(data))
        finally:
            yaml_front_matter.simple_yaml = original

    base_handler = BaseLoaderHandler()
    rows = [
        ("feedsvc split + simple YAML reader", lambda data: split(decode(data))),
        ("feedsvc split, C base loader only", without_simple_reader),
        ("python-frontmatter (C safe loader)", lambda data: frontmatter.loads(data.decode("utf-8-sig"))),
        (
            "python-frontmatter, C base loader",
            lambda data: frontmatter.loads(data.decode("utf-8-sig"), handler=base_handler),
        ),
    ]
    # The same answers first: both read the same titles and tags from every file.
    for data in files:
        ours, theirs = split(decode(data)).meta or {}, frontmatter.loads(data.decode("utf-8-sig")).metadata
        assert (ours["title"], ours["tags"]) == (theirs["title"], theirs["tags"]), data[:200]
    results = [(label, timed(read, files, arguments.rounds)) for label, read in rows]
    baseline = results[0][1]
    print(f"{len(files)} files, median of {arguments.rounds} rounds, load average {os.getloadavg()[0]:.2f}")
    print("| reader | time | per file | vs feedsvc |")
    print("|---|---|---|---|")
    for label, seconds in results:
        print(f"| {label} | {seconds * 1000:,.0f} ms | {seconds / len(files) * 1e6:.1f} µs | {seconds / baseline:.2f} |")


if __name__ == "__main__":
    sys.exit(main())

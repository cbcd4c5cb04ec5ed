"""A real feed reader: Debian's newsboat fetches the bundled example's feeds over HTTP (`newsboat -x reload`, no
terminal) and every item must arrive in its cache with the feed's title and link. Newsboat 2.21 (Debian 12) reads
RSS and Atom; JSON Feed came later, so the JSON feed is left to tests/test_feed_readers.py."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import feedparser
import pytest

from tests.support import built_example


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the example serves quietly
        pass


@pytest.fixture
def example_feeds(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The bundled example built by `feedsvc build`, its public/ folder served on 127.0.0.1: (folder, base URL)."""
    public = built_example(tmp_path / "example") / "public"
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(public)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield public, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def newsboat_items(newsboat: str, url: str, work: Path) -> set[tuple[str, str]]:
    """(title, link) of every item newsboat stored after reloading the one feed at `url`."""
    work.mkdir()
    (work / "urls").write_text(url + "\n")
    (work / "config").write_text("")
    result = subprocess.run(
        [newsboat, "-x", "reload", "-u", str(work / "urls"), "-c", str(work / "cache.db"), "-C", str(work / "config")],
        env={**os.environ, "HOME": str(work)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with sqlite3.connect(work / "cache.db") as cache:
        return set(cache.execute("SELECT title, url FROM rss_item WHERE feedurl = ?", (url,)).fetchall())


def test_newsboat_reads_every_item_of_each_feed(example_feeds: tuple[Path, str], tmp_path: Path) -> None:
    newsboat = shutil.which("newsboat")
    if newsboat is None:
        pytest.skip("newsboat is not installed (apt-get install newsboat)")
    public, base = example_feeds
    # The site-wide RSS and Atom feeds and the feeds of one tag.
    tag_feeds = sorted(path for path in public.rglob("*.xml") if path.parent != public)
    assert tag_feeds, "the example has tagged posts"
    feeds = [public / "rss.xml", public / "atom.xml", *[path for path in tag_feeds if path.parent == tag_feeds[0].parent]]
    for number, feed in enumerate(feeds):
        written = feedparser.parse(feed.read_bytes())
        expected = {(entry.title, entry.link) for entry in written.entries}
        assert expected and all(title and link for title, link in expected)
        url = f"{base}/{feed.relative_to(public).as_posix()}"
        assert newsboat_items(newsboat, url, tmp_path / f"newsboat-{number}") == expected, feed.name

"""A post's HTML, rendered from its file as it was when read, and cached by (source, version).

`Post` is data; this is where its file is read again and rendered. Only the posts that reach a feed or a mail
pay for Markdown, and bodies stay on disk rather than in memory. A file that changed since its scan is not
rendered (its newer text would not match the post's title, date and URL): the scan that follows the change
reads it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

import markdown_it_pyrs
import nh3

from feedsvc import __version__
from feedsvc.posts.markup import render_body, render_summary
from feedsvc.posts.model import Post
from feedsvc.posts.readers import split
from feedsvc.posts.readers.base import ignore
from feedsvc.posts.source import decode, plain_body


class SourceChanged(ValueError):
    """The post's file is no longer the one it was read from."""


@dataclass(frozen=True, slots=True)
class Rendered:
    content_html: str  # full sanitized HTML with absolute URLs
    summary_html: str  # the front matter summary, else the text before <!--more-->, else the first paragraph


def rendered(post: Post) -> Rendered:
    if post.content_html is not None and post.summary_html is not None:
        return Rendered(post.content_html, post.summary_html)
    key = _key(post)
    with _lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    # The file is read and split once for both (a cold build renders a thousand posts).
    needs_body = post.content_html is None or (post.summary_html is None and not post.summary)
    text = body(post) if needs_body else ""
    made = Rendered(
        post.content_html
        if post.content_html is not None
        else render_body(post.markup, text, post.url, post.asset_urls),
        post.summary_html
        if post.summary_html is not None
        else render_summary(post.markup, post.summary, "" if post.summary else text, post.url, post.asset_urls),
    )
    with _lock:
        _cache[key] = made
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return made


def _key(post: Post) -> tuple[object, ...]:
    # Besides the file, what the HTML depends on: a post whose URL or asset mapping changed renders again.
    return post.source, post.version, post.url, post.markup, post.summary, post.asset_urls


def body(post: Post) -> str:
    """The text below the post's front matter (and title line), macros expanded, from its file as read."""
    source = split(decode(read_as_read(post.source, post.version)))
    if post.convention is None:
        return plain_body(source)
    return post.convention.body(post.source, source, ignore)


def read_as_read(path: Path, version: tuple[int, int]) -> bytes:
    """The file's bytes if it still has this (size, mtime_ns); SourceChanged otherwise."""
    try:
        with path.open("rb") as file:
            info = os.fstat(file.fileno())
            if (info.st_size, info.st_mtime_ns) != version:
                raise SourceChanged(f"{path.name} changed since it was read; it is read again on the next scan")
            return file.read(info.st_size + 1)
    except OSError as exc:
        raise SourceChanged(f"{path.name} cannot be read any more: {exc.strerror or exc}") from None


# A feed rebuild after one edit renders one post again, not the fifty in the feed.
_CACHE_SIZE = 1024
_cache: OrderedDict[tuple[object, ...], Rendered] = OrderedDict()
_lock = Lock()


class RenderedStore:
    """The HTML of the posts of the last feed write, in a file, so that a new process (a `feedsvc build` after
    one edit) renders only the posts that changed rather than the thousand its feeds show.

    One JSON line per post (a digest of what its HTML depends on, as the in-memory cache's key; its HTML) after a
    header line of feedsvc's and the renderers' versions; a save appends the posts rendered since the last one,
    and rewrites the file when the posts no longer shown would make up over half of it. JSON, not pickle: the
    file is in the store folder like the parse cache, yet reading it must never run code. A file that is not
    one of ours, is cut short or holds anything else is ignored from there on and rewritten by the next save.

    Only the posts of a plain feedsvc folder are kept: a site generator's macros (an include, a link to another
    post) make a body depend on other files, which the key does not cover.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header = json.dumps(
            [
                "feedsvc rendered posts",
                2,  # 2: summaries found on markdown-it-pyrs's tree, with references defined anywhere in the body
                __version__,
                nh3.__version__,  # type: ignore[attr-defined]  # (missing from its type stubs)
                markdown_it_pyrs.__version__,  # type: ignore[attr-defined]
            ]
        )
        self._stored: dict[str, Rendered] | None = None  # what the file holds (that we know of), by digest
        self._lines = 0  # posts in the file, shown or not (a rewrite drops the others)
        self._rewrite = True  # the file does not (yet) continue as we would append to it
        self._added: list[tuple[str, Rendered]] = []  # put since the last save

    def get(self, post: Post) -> Rendered | None:
        stored = self._load()
        if not stored:  # a cold build: no digest to make for each of the thousand posts its feeds show
            return None
        digest = self._digest(post)
        return None if digest is None else stored.get(digest)

    def put(self, post: Post, html: Rendered) -> None:
        """A post rendered now: written by the next `save`."""
        digest = self._digest(post)
        if digest is not None:
            self._load()[digest] = html
            self._added.append((digest, html))

    def save(self, shown: Callable[[], Iterable[tuple[Post, Rendered]]], count: int) -> None:
        """Write what was `put` since the last save. `shown`: the `count` posts of the feeds just written, the
        only ones a rewrite keeps (asked for only then: a rebuild after one edit appends one line)."""
        if not self._added and not self._rewrite:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._rewrite or self._lines + len(self._added) > 2 * count:
                kept = {digest: html for post, html in shown() if (digest := self._digest(post)) is not None}
                # A name of our own: another process (the service's builds, a `feedsvc build`) may write too.
                temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
                try:
                    with temporary.open("w", encoding="utf-8") as file:
                        file.write(self.header + "\n")
                        file.writelines(_lines(kept.items()))
                    os.replace(temporary, self.path)
                finally:
                    temporary.unlink(missing_ok=True)  # left only by a failed write
                self._stored, self._lines, self._rewrite = kept, len(kept), False
            else:
                with self.path.open("a", encoding="utf-8") as file:
                    file.writelines(_lines(self._added))
                self._lines += len(self._added)
        except OSError:  # only speed is lost; the parse cache, beside it, reports an unwritable store folder
            self._rewrite = True
        self._added = []

    def _digest(self, post: Post) -> str | None:
        """What identifies the HTML of a post the store may keep, None for one it does not keep. The header is in
        it: a line another version of feedsvc appended (a `feedsvc build` beside the service) matches no post."""
        if post.convention is not None or post.content_html is not None or post.summary_html is not None:
            return None
        source, version, *rest = _key(post)
        return hashlib.sha256(repr((self.header, str(source), version, *rest)).encode()).hexdigest()

    def _load(self) -> dict[str, Rendered]:
        if self._stored is not None:
            return self._stored
        stored: dict[str, Rendered] = {}
        self._stored = stored
        try:
            with self.path.open(encoding="utf-8") as file:
                if file.readline() != self.header + "\n":
                    return stored
                self._rewrite = False
                for line in file:
                    entry = json.loads(line) if line.endswith("\n") else None
                    if not (
                        isinstance(entry, list)
                        and len(entry) == 3
                        and all(isinstance(value, str) for value in entry)
                    ):
                        raise ValueError("not an entry")
                    digest, content_html, summary_html = entry
                    stored[digest] = Rendered(content_html, summary_html)
                    self._lines += 1
        except (OSError, ValueError, RecursionError):
            # Unreadable, or cut short by a crash: what came before is good; the next save starts the file over.
            self._rewrite = True
        return stored


def _lines(entries: Iterable[tuple[str, Rendered]]) -> Iterator[str]:
    """One line per post, made as it is written (the file of a 50,000-post blog is some 10 MB)."""
    return (json.dumps([digest, html.content_html, html.summary_html]) + "\n" for digest, html in entries)

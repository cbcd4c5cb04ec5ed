"""A post's HTML, rendered from its file as it was when read, and cached by (source, version).

`Post` is data; this is where its file is read again and rendered. Only the posts that reach a feed or a mail
pay for Markdown, and bodies stay on disk rather than in memory. A file that changed since its scan is not
rendered (its newer text would not match the post's title, date and URL): the scan that follows the change
reads it again.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

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
    # Besides the file, what the HTML depends on: a post whose URL or asset mapping changed renders again.
    key = (post.source, post.version, post.url, post.markup, post.summary, post.asset_urls)
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

"""What a post is once read: `Post`, the `Problem`s found on the way, slugs and the publication rule."""

from __future__ import annotations

import re
import reprlib
import unicodedata
import zlib
from dataclasses import InitVar, dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from feedsvc.posts.render import AssetUrls, Markup, render_body, render_summary
from feedsvc.posts.source import post_body


@dataclass(frozen=True, slots=True)
class Post:
    id: str
    slug: str
    title: str
    date: datetime
    updated: datetime | None
    url: str
    tags: tuple[str, ...]
    author: str
    image: str | None
    draft: bool
    source: Path
    # Ready HTML, or None to render it on first use from the file: only the posts that reach a feed or a mail
    # pay for Markdown, and bodies stay on disk rather than in memory. Read as properties of the same names.
    summary_html: InitVar[str | None] = None
    content_html: InitVar[str | None] = None
    markup: Markup = "markdown"
    summary: str = field(default="", repr=False)  # front matter summary/description, as written
    asset_urls: AssetUrls = field(default=(), repr=False)
    version: tuple[int, int] = field(default=(0, 0), repr=False)  # size and mtime_ns of `source` when read
    _summary_html: str | None = field(default=None, init=False, repr=False)
    _content_html: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self, summary_html: str | None, content_html: str | None) -> None:
        object.__setattr__(self, "_summary_html", summary_html)
        object.__setattr__(self, "_content_html", content_html)

    @property
    def body(self) -> str:
        """The post's text below its front matter (and title line), as it is in the file now."""
        return post_body(self.source)


def _content_html(post: Post) -> str:
    """Full sanitized HTML with absolute URLs."""
    return post._content_html if post._content_html is not None else _rendered_content(post)


def _summary_html(post: Post) -> str:
    """The front matter summary, else the text before <!--more-->, else the first paragraph; as HTML."""
    return post._summary_html if post._summary_html is not None else _rendered_summary(post)


# Bounded memos keyed by the post itself (its fields include the file's version): a feed rebuild after one
# edit renders one post again, not the fifty in the feed.
@lru_cache(maxsize=1024)
def _rendered_content(post: Post) -> str:
    return render_body(post.markup, post.body, post.url, post.asset_urls)


@lru_cache(maxsize=4096)
def _rendered_summary(post: Post) -> str:
    body = "" if post.summary else post.body
    return render_summary(post.markup, post.summary, body, post.url, post.asset_urls)


# Set after the class is built: in the class body, a property would become the default of the init argument
# of the same name.
Post.content_html = property(_content_html)  # type: ignore[assignment,method-assign]
Post.summary_html = property(_summary_html)  # type: ignore[assignment,method-assign]


def is_published(post: Post, now: datetime) -> bool:
    return not post.draft and post.date <= now


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    message: str
    severity: Literal["error", "warning"]
    # Shown paths are relative to this folder (the one holding the posts folder) when below it.
    root: Path | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        shown = shown_path(self.path, self.root)
        return f"{shown}:{self.line}: {self.message}" if self.line else f"{shown}: {self.message}"


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlist, _BRIEF.maxdict = 2, 200, 200, 4, 4


def brief(value: object) -> str:
    """repr() cut short: a value from a post file goes into a message, never its whole (maybe huge) self."""
    return _BRIEF.repr(value)


def failure(exc: BaseException) -> str:
    """An unexpected exception as one bounded line for a problem."""
    text = str(exc)
    return f"{type(exc).__name__}: {text if len(text) <= 200 else text[:197] + '...'}"


def problem_order(problem: Problem) -> tuple[str, int]:
    """Problems are listed by file, then line."""
    return str(problem.path), problem.line or 0


def shown_path(path: Path, root: Path | None) -> str:
    return (path.relative_to(root) if root is not None and path.is_relative_to(root) else path).as_posix()


# Letters NFKD does not decompose into ASCII.
_FOLD = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "đ": "d",
        "Đ": "D",
        "ł": "l",
        "Ł": "L",
        "œ": "oe",
        "Œ": "OE",
        "þ": "th",
        "Þ": "TH",
        "ı": "i",
    }
)
_NON_WORD = re.compile(r"[\W_]+")


def slugify(text: str) -> str:
    """Lowercase words joined by '-'; accents folded to ASCII, letters without an ASCII form kept."""
    folded = "".join(
        char if unicodedata.category(char)[0] != "M" else ""
        for char in unicodedata.normalize("NFKD", text.translate(_FOLD))
    )
    return _NON_WORD.sub("-", folded.lower()).strip("-")


@lru_cache(maxsize=4096)  # a collection has few distinct tags, used over and over
def tag_slug(tag: str) -> str:
    """'Belajar Go!' -> 'belajar-go'. Never empty: a tag of only symbols gets a stable 'tag-<hash>'."""
    return slugify(tag) or f"tag-{zlib.crc32(tag.encode()):08x}"

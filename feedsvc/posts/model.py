"""What a post is once read: `Post`, the `Problem`s found on the way, slugs and the publication rule."""

from __future__ import annotations

import itertools
import operator
import re
import reprlib
import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from feedsvc.posts.markup import AssetUrls, Markup

if TYPE_CHECKING:
    from feedsvc.posts.readers.base import Convention

DataclassType = TypeVar("DataclassType", bound=type)


def pickled_by_position(cls: DataclassType) -> DataclassType:
    """Pickle a dataclass (frozen, with slots) as its class and its field values in order, made again by its
    `__init__`. The pickling such a dataclass gets by itself looks its fields up again for every object, which
    made pickling the posts of a cold 10,000-post build (back from the parsing processes, then into the parse
    cache) two and a half times slower."""
    names = [item.name for item in fields(cls)]
    assert len(names) > 1, "attrgetter of one name gives a value, not a tuple"
    values = attrgetter(*names)
    # A Path field (annotated `Path`: annotations are text in this package) goes as its text: a Path made again
    # from its text costs half what unpickling its parts does, and taking in the posts a parsing process sends
    # back is one process's work alone.
    path_fields = [index for index, item in enumerate(fields(cls)) if item.type == "Path"]
    assert len(path_fields) <= 1, "one Path field at most"

    def __reduce__(self: Any) -> tuple[Any, tuple[Any, ...]]:
        return cls, values(self)

    def reduce_with_path(self: Any) -> tuple[Any, tuple[Any, ...]]:
        state = values(self)
        return _made_with_path, (cls, at, (*state[:at], str(state[at]), *state[at + 1 :]))

    if path_fields:
        at = path_fields[0]
        cls.__reduce__ = reduce_with_path  # type: ignore[assignment]
    else:
        cls.__reduce__ = __reduce__  # type: ignore[assignment]
    return cls


def _made_with_path(cls: type, at: int, state: tuple[Any, ...]) -> Any:
    return cls(*state[:at], Path(state[at]), *state[at + 1 :])


@pickled_by_position
@dataclass(frozen=True, slots=True)
class Post:
    """A post as read from its file: data only. Its HTML is made by `feedsvc.posts.render.rendered`, from the file
    as it was read (`version`): only the posts that reach a feed or a mail pay for Markdown, and bodies stay on
    disk rather than in memory."""

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
    # HTML given ready by whoever made the post (not read from a file); None: rendered from `source`.
    summary_html: str | None = field(default=None, repr=False)
    content_html: str | None = field(default=None, repr=False)
    markup: Markup = "markdown"
    summary: str = field(default="", repr=False)  # front matter summary/description, as written
    asset_urls: AssetUrls = field(default=(), repr=False)
    version: tuple[int, int] = field(default=(0, 0), repr=False)  # size and mtime_ns of `source` when read
    expires: datetime | None = None  # no longer published from then on (Hugo's expiryDate)
    # The site generator's rules the file was read by (its body's shortcodes or Liquid are theirs); None: a
    # plain feedsvc post.
    convention: Convention | None = field(default=None, repr=False, compare=False)


def is_published(post: Post, now: datetime) -> bool:
    return not post.draft and post.date <= now and (post.expires is None or now < post.expires)


def replaced_places(previous: Sequence[Post], current: Sequence[Post]) -> list[int] | None:
    """The common rebuild, a few posts edited: the same posts in the same places, some of them new versions. Then
    the places holding another version, found by comparing objects in C rather than every post in Python (at
    50,000 posts, a pass in Python over both lists cost several ms each time a feed writer or the announcing of
    new posts asked); None when posts came, went or moved."""
    if len(previous) != len(current):
        return None
    places = list(itertools.compress(range(len(current)), map(operator.is_not, previous, current)))
    if any(previous[place].id != current[place].id for place in places):
        return None
    return places


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


def fold(text: str) -> str:
    """Accents folded to ASCII ('é' -> 'e', 'ß' -> 'ss'); letters without an ASCII form kept."""
    if text.isascii():  # what most slugs and tags are: nothing to fold, and a character loop less per post
        return text
    return "".join(
        char if unicodedata.category(char)[0] != "M" else ""
        for char in unicodedata.normalize("NFKD", text.translate(_FOLD))
    )


def slugify(text: str) -> str:
    """Lowercase words joined by '-'; accents folded to ASCII, letters without an ASCII form kept."""
    return _NON_WORD.sub("-", fold(text).lower()).strip("-")


@lru_cache(maxsize=4096)  # a collection has few distinct tags, used over and over
def tag_slug(tag: str) -> str:
    """'Belajar Go!' -> 'belajar-go'; 'C#' -> 'c-sharp', 'C++' -> 'c-plus-plus' (distinct tags, distinct feeds).
    Never empty: a tag of only symbols gets a stable 'tag-<hash>'."""
    return slugify(tag.translate(_TAG_SYMBOLS)) or f"tag-{zlib.crc32(tag.encode()):08x}"


# Symbols that tell tags apart (C, C#, C++, F#) and that slugify would drop.
_TAG_SYMBOLS = str.maketrans({"#": " sharp ", "+": " plus "})

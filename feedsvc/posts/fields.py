"""Reading a post's fields from its front matter, as every convention does: text, dates, flags, tags, slugs;
and `Site`, the settings those fields depend on."""

from __future__ import annotations

import email.utils
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin
from zoneinfo import ZoneInfo

from feedsvc.config import Settings
from feedsvc.posts.markup import AssetUrls, Markup, sorted_asset_urls
from feedsvc.posts.model import Problem, brief, slugify
from feedsvc.posts.source import Source, SourceError

_DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}[-_]")
MARKUPS: dict[str, Markup] = {"markdown": "markdown", "md": "markdown", "text": "text", "plain": "text"}
_TRUTH = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
# A day inside datetime's range on both ends: any date between converts to every time zone without overflow.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)
# Longer tag names are dropped: a tag is a folder name (tags/<slug>/) and a line in every feed of its posts.
MAX_TAG_LENGTH = 100


@dataclass(frozen=True)
class Site:
    """The settings a post's fields depend on; `fingerprint` changes whenever a parsed post would."""

    url: str
    tz: ZoneInfo
    author: str
    url_pattern: str
    asset_urls: AssetUrls
    posts_dir: Path
    max_tags: int
    convention: str = "feedsvc"  # posts.convention

    @classmethod
    def from_settings(cls, settings: Settings) -> Site:
        return cls(
            url=settings.site.url,
            tz=settings.site.tz,
            author=settings.site.author,
            url_pattern=settings.posts.url_pattern,
            asset_urls=sorted_asset_urls(settings.posts.asset_urls),
            posts_dir=settings.posts.dir,
            max_tags=settings.posts.max_tags,
            convention=settings.posts.convention,
        )

    @property
    def root(self) -> Path:
        """Problems name files relative to this folder: 'posts/x.md'."""
        return self.posts_dir.parent

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(
            repr(
                (
                    self.url,
                    self.tz.key,
                    self.author,
                    self.url_pattern,
                    self.asset_urls,
                    str(self.posts_dir),
                    self.max_tags,
                    self.convention,
                )
            ).encode()
        ).hexdigest()

    def post_url(self, slug: str, when: datetime) -> str:
        if self._dated_urls:
            local = when.astimezone(self.tz)
            year, month, day = f"{local:%Y}", f"{local:%m}", f"{local:%d}"
        else:  # the default pattern: no time zone conversion and date formatting for each post read
            year = month = day = ""
        path = self.url_pattern.format(site_url=self.url, slug=quote(slug), year=year, month=month, day=day)
        return path if path.startswith(("https://", "http://")) else urljoin(self.url + "/", path)

    @cached_property
    def _dated_urls(self) -> bool:
        """Whether url_pattern uses the date (a field of it starts "{year", "{month" or "{day")."""
        return any(f"{{{name}" in self.url_pattern for name in ("year", "month", "day"))

    def problem(self, path: Path, line: int | None, message: str, severity: str = "error") -> Problem:
        return Problem(path, line, message, severity, self.root)  # type: ignore[arg-type]


def text(meta: dict[str, Any], source: Source, key: str, numbers: bool = False) -> str:
    value = meta.get(key)
    if value is None:
        return ""
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise SourceError(f"{key} must be text, not {describe(value)}", source.key_line(key))
    return value.strip()


def date_field(meta: dict[str, Any], source: Source, key: str, tz: ZoneInfo) -> datetime | None:
    value = meta.get(key)
    if value is None or value == "":
        return None
    parsed = parse_date(value)
    if parsed is None:
        raise SourceError(
            f"invalid {key} {describe(value)} (use e.g. 2025-04-08 or 2025-04-08T09:30:00+07:00)",
            source.key_line(key),
        )
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    if not in_range(parsed):
        raise SourceError(
            f"{key} {describe(value)} is out of range (years 1 to 9999 in every time zone)",
            source.key_line(key),
        )
    return parsed


def file_date(mtime_ns: int, tz: ZoneInfo) -> datetime:
    try:
        when = datetime.fromtimestamp(mtime_ns / 1e9, tz).replace(microsecond=0)
    except (OverflowError, OSError, ValueError):
        when = None
    if when is None or not in_range(when):
        raise SourceError("no date, and the file's modification time is out of range: set a date")
    return when


def in_range(moment: datetime) -> bool:
    try:
        return _EARLIEST <= moment.astimezone(UTC) <= _LATEST
    except OverflowError:
        return False


def parse_date(value: Any) -> datetime | None:
    """A date as front matter writes it (date or datetime, ISO 8601 or RFC 822 text); naive stays naive."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    loose = _LOOSE_DATE.fullmatch(text)
    if loose is not None:
        return _loose_date(loose)
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


# What Hugo and Jekyll also accept: one-digit months, days and hours, a space before the offset, "+0700", " UTC".
_LOOSE_DATE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"[ \t]*(Z|UTC|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)


def _loose_date(found: re.Match[str]) -> datetime | None:
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    tz: tzinfo | None = None
    if offset:
        if offset.upper() in ("Z", "UTC"):
            tz = UTC
        else:
            digits = offset[1:].replace(":", "").ljust(4, "0")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
            tz = timezone(-delta if offset[0] == "-" else delta)
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=tz,
        )
    except ValueError:
        return None


def slug_field(meta: dict[str, Any], source: Source, path: Path) -> str:
    written = text(meta, source, "slug", numbers=True)
    if written:
        slug = slugify(written)
        if not slug:
            raise SourceError(f"slug {brief(written)} has no letters or digits", source.key_line("slug"))
        return slug
    stem = _DATE_PREFIX.sub("", path.stem) or path.stem
    return slugify(stem) or f"post-{hashlib.sha1(path.name.encode()).hexdigest()[:8]}"


def tag_names(
    meta: dict[str, Any],
    source: Source,
    limit: int,
    warn: Any,
    keys: tuple[str, ...] = ("tags", "categories"),
    split: Callable[[str], list[str]] = lambda value: value.split(","),
    first: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """The tags of `keys` (each a text that `split` cuts into names, or a list), after `first`; each once."""
    names = list(first)
    for key in keys:
        value = meta.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            names += split(value)
        elif isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
            names += [str(item) for item in value]
        else:
            raise SourceError(
                f"{key} must be a text or a list of texts, not {describe(value)}", source.key_line(key)
            )
    seen: set[str] = set()
    tags = []
    for name in (name.strip() for name in names):
        if len(name) > MAX_TAG_LENGTH:
            warn(tags_line(source), f"tag {brief(name)} is over {MAX_TAG_LENGTH} characters long; dropped")
        elif name and name.casefold() not in seen:
            seen.add(name.casefold())
            tags.append(name)
    if len(tags) > limit:
        # Each tag is a feed of its own: thousands of them would multiply the output (and the time to write it).
        warn(
            tags_line(source),
            f"{len(tags)} tags, over posts.max_tags ({limit}): only the first {limit} are used",
        )
        del tags[limit:]
    return tuple(tags)


def tags_line(source: Source) -> int | None:
    return source.key_line("tags") or source.key_line("categories")


def author_name(meta: dict[str, Any], source: Source) -> str:
    value = meta.get("author")
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return value["name"].strip()
    return text(meta, source, "author")


def flag(meta: dict[str, Any], source: Source, key: str) -> bool:
    value = meta.get(key, False)
    if isinstance(value, str) and value.strip().lower() in _TRUTH:
        return _TRUTH[value.strip().lower()]
    if not isinstance(value, bool):
        raise SourceError(f"{key} must be true or false, not {describe(value)}", source.key_line(key))
    return value


def describe(value: Any) -> str:
    shown = brief(value)
    return shown if isinstance(value, str) else f"{type(value).__name__} {shown}"

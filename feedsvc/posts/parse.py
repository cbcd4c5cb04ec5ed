"""One post file to a `Post` (or the error that keeps it out), with the warnings worth telling its author."""

from __future__ import annotations

import email.utils
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin
from zoneinfo import ZoneInfo

from feedsvc.config import Settings
from feedsvc.posts.model import Post, Problem, brief, failure, slugify
from feedsvc.posts.render import AssetUrls, Markup, absolute_url, markdown_problem, sorted_asset_urls
from feedsvc.posts.source import Source, SourceError, decode, split, title_line

_DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}[-_]")
_MARKUPS: dict[str, Markup] = {"markdown": "markdown", "md": "markdown", "text": "text", "plain": "text"}
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
                )
            ).encode()
        ).hexdigest()

    def post_url(self, slug: str, when: datetime) -> str:
        local = when.astimezone(self.tz)
        path = self.url_pattern.format(
            site_url=self.url, slug=quote(slug), year=f"{local:%Y}", month=f"{local:%m}", day=f"{local:%d}"
        )
        return path if path.startswith(("https://", "http://")) else urljoin(self.url + "/", path)

    def problem(self, path: Path, line: int | None, message: str, severity: str = "error") -> Problem:
        return Problem(path, line, message, severity, self.root)  # type: ignore[arg-type]


def read_post(path: Path, data: bytes, mtime_ns: int, site: Site) -> tuple[Post | None, list[Problem]]:
    """Parse one file. Errors come back as a single error Problem and no post: whatever goes wrong with one
    file (the folder is untrusted input) must not stop the others."""
    warnings: list[Problem] = []
    try:
        source = split(decode(data))
        post = _build(
            path,
            source,
            len(data),
            mtime_ns,
            site,
            lambda line, message: warnings.append(site.problem(path, line, message, "warning")),
        )
    except SourceError as exc:
        return None, [site.problem(path, exc.line, exc.message)]
    except Exception as exc:  # noqa: BLE001 - a file that breaks the reader is that file's problem alone
        return None, [site.problem(path, None, f"cannot be read as a post: {failure(exc)}")]
    return post, warnings


def _build(path: Path, source: Source, size: int, mtime_ns: int, site: Site, warn: Any) -> Post:
    meta = source.meta or {}
    markup: Markup = "markdown" if source.meta is not None or path.suffix.lower() != ".txt" else "text"
    if "markup" in meta:
        if meta["markup"] not in _MARKUPS:
            raise SourceError(
                f"unknown markup {_describe(meta['markup'])} (use 'markdown' or 'text')",
                source.key_line("markup"),
            )
        markup = _MARKUPS[meta["markup"]]

    title = _text(meta, source, "title")
    if source.meta is None:
        title = title_line(source.body)[0]
    elif not title:
        title = path.stem.replace("-", " ").replace("_", " ").strip() or path.name
        warn(source.meta_line, f"no title in the front matter: using {title!r} from the file name")

    when = _date(meta, source, "date", site.tz)
    if when is None:
        when = _file_date(mtime_ns, site.tz)
        warn(None, f"no date: using the file's modification time {when.isoformat()}")
    updated = _date(meta, source, "updated", site.tz)

    slug = _slug(meta, source, path)
    url = site.post_url(slug, when)
    post_id = (
        _text(meta, source, "id", numbers=True)
        or f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{site.url}/{slug}')}"
    )
    summary = _text(meta, source, "summary") or _text(meta, source, "description")
    if markup == "markdown":
        for text, key in ((summary, "summary"), (source.body, None)):
            problem = markdown_problem(text)
            if problem is not None:
                raise SourceError(
                    f"{problem}; not published", source.key_line(key) if key else source.body_line
                )
    image = _text(meta, source, "image") or _text(meta, source, "cover")
    return Post(
        id=post_id,
        slug=slug,
        title=title,
        date=when,
        updated=updated,
        url=url,
        tags=_tags(meta, source, site.max_tags, warn),
        author=_author(meta, source) or site.author,
        image=absolute_url(image, url, site.asset_urls) if image else None,
        draft=_flag(meta, source, "draft"),
        source=path,
        markup=markup,
        summary=summary,
        asset_urls=site.asset_urls,
        version=(size, mtime_ns),
    )


def _text(meta: dict[str, Any], source: Source, key: str, numbers: bool = False) -> str:
    value = meta.get(key)
    if value is None:
        return ""
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise SourceError(f"{key} must be text, not {_describe(value)}", source.key_line(key))
    return value.strip()


def _date(meta: dict[str, Any], source: Source, key: str, tz: ZoneInfo) -> datetime | None:
    value = meta.get(key)
    if value is None or value == "":
        return None
    parsed = parse_date(value)
    if parsed is None:
        raise SourceError(
            f"invalid {key} {_describe(value)} (use e.g. 2025-04-08 or 2025-04-08T09:30:00+07:00)",
            source.key_line(key),
        )
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    if not _in_range(parsed):
        raise SourceError(
            f"{key} {_describe(value)} is out of range (years 1 to 9999 in every time zone)",
            source.key_line(key),
        )
    return parsed


def _file_date(mtime_ns: int, tz: ZoneInfo) -> datetime:
    try:
        when = datetime.fromtimestamp(mtime_ns / 1e9, tz).replace(microsecond=0)
    except (OverflowError, OSError, ValueError):
        when = None
    if when is None or not _in_range(when):
        raise SourceError("no date, and the file's modification time is out of range: set a date")
    return when


def _in_range(moment: datetime) -> bool:
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
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None


def _slug(meta: dict[str, Any], source: Source, path: Path) -> str:
    written = _text(meta, source, "slug", numbers=True)
    if written:
        slug = slugify(written)
        if not slug:
            raise SourceError(f"slug {brief(written)} has no letters or digits", source.key_line("slug"))
        return slug
    stem = _DATE_PREFIX.sub("", path.stem) or path.stem
    return slugify(stem) or f"post-{hashlib.sha1(path.name.encode()).hexdigest()[:8]}"


def _tags(meta: dict[str, Any], source: Source, limit: int, warn: Any) -> tuple[str, ...]:
    names: list[str] = []
    for key in ("tags", "categories"):
        value = meta.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            names += value.split(",")
        elif isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
            names += [str(item) for item in value]
        else:
            raise SourceError(
                f"{key} must be a text or a list of texts, not {_describe(value)}", source.key_line(key)
            )
    seen: set[str] = set()
    tags = []
    for name in (name.strip() for name in names):
        if len(name) > MAX_TAG_LENGTH:
            warn(_tags_line(source), f"tag {brief(name)} is over {MAX_TAG_LENGTH} characters long; dropped")
        elif name and name.casefold() not in seen:
            seen.add(name.casefold())
            tags.append(name)
    if len(tags) > limit:
        # Each tag is a feed of its own: thousands of them would multiply the output (and the time to write it).
        warn(
            _tags_line(source),
            f"{len(tags)} tags, over posts.max_tags ({limit}): only the first {limit} are used",
        )
        del tags[limit:]
    return tuple(tags)


def _tags_line(source: Source) -> int | None:
    return source.key_line("tags") or source.key_line("categories")


def _author(meta: dict[str, Any], source: Source) -> str:
    value = meta.get("author")
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return value["name"].strip()
    return _text(meta, source, "author")


def _flag(meta: dict[str, Any], source: Source, key: str) -> bool:
    value = meta.get(key, False)
    if isinstance(value, str) and value.strip().lower() in _TRUTH:
        return _TRUTH[value.strip().lower()]
    if not isinstance(value, bool):
        raise SourceError(f"{key} must be true or false, not {_describe(value)}", source.key_line(key))
    return value


def _describe(value: Any) -> str:
    shown = brief(value)
    return shown if isinstance(value, str) else f"{type(value).__name__} {shown}"

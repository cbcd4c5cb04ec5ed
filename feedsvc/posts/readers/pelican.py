"""A Pelican site folder, read as Pelican publishes its articles (https://docs.getpelican.com/en/latest/content.html).

Articles are the Markdown files under PATH, except those under PAGE_PATHS (pages) and STATIC_PATHS. Their
metadata is the `Key: value` header on top (Python-Markdown's meta extension), else front matter. An article
needs a date (the header's, else the one in its file name); `Status: draft` and `hidden` are not published, nor
is a future date when WITH_FUTURE_DATES is off. The category is the header's, else the folder's. The URL is
SITEURL + ARTICLE_URL, `{filename}` and `{static}` links are resolved. The settings are read from pelicanconf.py
(and publishconf.py) without running them: only their plain `NAME = value` lines count.
"""

from __future__ import annotations

import ast
import html
import re
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from feedsvc.posts.fields import author_name, date_field, tag_names, text
from feedsvc.posts.markup import absolute_url
from feedsvc.posts.model import Post, fold
from feedsvc.posts.readers.base import (
    Convention,
    Warn,
    body_line,
    check_markdown,
    plugins_note,
    site_settings,
    zone,
)
from feedsvc.posts.source import Source, SourceError

_HEADER_LINE = re.compile(r"^[ ]{0,3}([A-Za-z0-9_-]+):\s*(.*)$")
_CONTINUED = re.compile(r"^[ ]{4,}(.*)$")
_LINK = re.compile(r"\{(filename|static|attach)\}([^)\"'\s]+)|\|(filename|static|attach)\|([^)\"'\s]+)")
_SETTINGS_FILES = ("pelicanconf.py", "publishconf.py")
_DEFAULTS: dict[str, Any] = {
    "PATH": "content",
    "PAGE_PATHS": ["pages"],
    "STATIC_PATHS": ["images"],
    "ARTICLE_PATHS": [""],
    "ARTICLE_EXCLUDES": [],
    "ARTICLE_URL": "{slug}.html",
    "FILENAME_METADATA": r"(?P<date>\d{4}-\d{2}-\d{2}).*",
    "USE_FOLDER_AS_CATEGORY": True,
    "DEFAULT_CATEGORY": "misc",
    "WITH_FUTURE_DATES": True,
    "SLUGIFY_SOURCE": "title",
    "SLUG_REGEX_SUBSTITUTIONS": [
        (r"[^\w\s-]", ""),
        (r"(?u)\A\s*", ""),
        (r"(?u)\s*\Z", ""),
        (r"[-\s]+", "-"),
    ],
}
_TAG = re.compile(r"<[^>]*>")


class Pelican(Convention):
    name = "pelican"
    marks = ("pelicanconf.py",)
    extensions = (".md", ".markdown", ".mkd", ".mdown")

    @classmethod
    def read_config(cls, folder: Path) -> dict[str, Any]:
        config = dict(_DEFAULTS)
        for name in _SETTINGS_FILES:
            if (folder / name).is_file():
                config.update(_plain_settings(folder / name))
        return config

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.config.get("TIMEZONE"), self.site.tz)

    @property
    def content(self) -> str:
        return str(self.config.get("PATH") or "content").strip("/").removeprefix("./")

    def _below_content(self, relative: str) -> str | None:
        """The path below PATH, or None outside it."""
        if not self.content or self.content == ".":
            return relative
        return relative[len(self.content) + 1 :] if relative.startswith(self.content + "/") else None

    def walks(self, relative: str) -> bool:
        content = self.content
        if not content or content == ".":
            return True
        return relative == content or relative.startswith(content + "/") or content.startswith(relative + "/")

    def is_post_file(self, relative: str) -> bool:
        inside = self._below_content(relative)
        if inside is None:
            return False
        excluded = [*_paths(self.config.get("PAGE_PATHS")), *_paths(self.config.get("STATIC_PATHS"))]
        excluded += _paths(self.config.get("ARTICLE_EXCLUDES"))
        if any(inside == path or inside.startswith(path + "/") for path in excluded if path):
            return False
        articles = _paths(self.config.get("ARTICLE_PATHS")) or [""]
        return any(not path or inside.startswith(path + "/") for path in articles)

    def build(self, path: Path, source: Source, version: tuple[int, int], warn: Warn) -> Post:
        site = self.site
        source = _with_header(source)
        meta = {str(key).lower(): value for key, value in (source.meta or {}).items()}
        title = text(meta, source, "title")
        if not title:
            raise SourceError("no Title: Pelican skips an article without one", source.meta_line)
        when = date_field(meta, source, "date", self.tz) or self._file_name_date(path)
        if when is None:
            raise SourceError("no Date, and none in the file name: Pelican skips an article without one", 1)
        status = text(meta, source, "status").lower() or "published"
        future = when > datetime.now(when.tzinfo) and not self.config.get("WITH_FUTURE_DATES", True)
        # A Slug written in the header is the slug as it stands; else the title's (or the file name's).
        slug = text(meta, source, "slug", numbers=True) or self._slugify(
            path.stem if self.config.get("SLUGIFY_SOURCE") == "basename" else title
        )
        folder = Path(self._below_content(self.relative(path)) or "").parent
        category = text(meta, source, "category") or (
            folder.name if folder.name and self.config.get("USE_FOLDER_AS_CATEGORY", True) else ""
        ) or str(self.config.get("DEFAULT_CATEGORY") or "misc")
        authors = [name.strip() for name in text(meta, source, "authors").split(",") if name.strip()]
        url = self._url(slug, when, category, authors[0] if authors else author_name(meta, source))
        summary = text(meta, source, "summary")
        check_markdown(source, summary, self.body(path, source, warn))
        image = text(meta, source, "image") or text(meta, source, "cover")
        return Post(
            id=url,
            slug=slug,
            title=title,
            date=when,
            updated=date_field(meta, source, "modified", self.tz),
            url=url,
            tags=tag_names(meta, source, site.max_tags, warn, keys=("tags",), first=(category,)),
            author=(authors[0] if authors else author_name(meta, source)) or str(self.config.get("AUTHOR") or "")
            or site.author,
            image=absolute_url(image, url, site.asset_urls) if image else None,
            draft=status in ("draft", "hidden", "skip") or future,
            source=path,
            summary=summary,
            asset_urls=site.asset_urls,
            version=version,
            convention=self,
        )

    def _file_name_date(self, path: Path) -> datetime | None:
        pattern = self.config.get("FILENAME_METADATA")
        found = re.match(pattern, path.stem) if isinstance(pattern, str) else None
        if found is None or "date" not in found.groupdict():
            return None
        return date_field({"date": found.group("date")}, Source({}, "", 1), "date", self.tz)

    def _url(self, slug: str, when: datetime, category: str, author: str) -> str:
        pattern = str(self.config.get("ARTICLE_URL") or "{slug}.html")
        try:
            path = pattern.format(
                slug=slug, date=when.astimezone(self.tz), category=self._slugify(category), author=self._slugify(author), lang="en"
            )
        except (KeyError, IndexError, AttributeError, ValueError) as exc:
            raise SourceError(f"ARTICLE_URL {pattern!r} cannot be filled in: {exc}") from None
        return self.site.url + "/" + quote(path.lstrip("/"), safe="/:@!$&'()*+,;=-._~")

    def _slugify(self, value: str) -> str:
        """Pelican's slugify: tags stripped, folded to ASCII, SLUG_REGEX_SUBSTITUTIONS applied, lower case."""
        value = fold(html.unescape(_TAG.sub("", unicodedata.normalize("NFKC", value))))
        substitutions = self.config.get("SLUG_REGEX_SUBSTITUTIONS")
        for pattern, replacement in substitutions if isinstance(substitutions, list) else []:
            try:
                value = re.sub(pattern, replacement, value, flags=re.IGNORECASE)
            except (re.error, TypeError):
                continue  # a pattern Python's re does not take: Pelican would have failed on it too
        return value.lower().strip()

    def body(self, path: Path, source: Source, warn: Warn) -> str:
        body = _with_header(source).body
        if "{" not in body and "|" not in body:
            return body

        def link(found: re.Match[str]) -> str:
            kind, written = (found.group(1), found.group(2)) if found.group(1) else (found.group(3), found.group(4))
            # The link's #fragment or ?query stays on the URL it resolves to.
            target, suffix = re.match(r"([^#?]*)(.*)", written).groups()  # type: ignore[union-attr]
            content = self.folder / self.content
            file = content / target.lstrip("/") if target.startswith("/") else path.parent / target
            if kind == "filename" and file.is_file():
                url = self.url_of(file)
                if url:
                    return url + suffix
            if kind != "filename":
                path_in_site = file.relative_to(content).as_posix() if file.is_relative_to(content) else target
                return self.site.url + "/" + quote(path_in_site) + suffix
            line = body_line(source, found.group(0))
            warn(line, f"link {found.group(0)}: no such article; left as written")
            return written

        return _LINK.sub(link, body)

    @classmethod
    def init_settings(cls, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return site_settings(config, "SITEURL", "SITENAME", ("DEFAULT_LANG",), "TIMEZONE")

    @classmethod
    def init_notes(cls, config: dict[str, Any]) -> list[str]:
        plugins = [str(name) for name in config.get("PLUGINS") or []]
        return [plugins_note(plugins)] if plugins else []


def _with_header(source: Source) -> Source:
    """A Markdown file without front matter: its `Key: value` header (up to the first blank line) as the meta."""
    if source.meta is not None:
        return source
    lines = source.body.split("\n")
    meta: dict[str, Any] = {}
    key = None
    index = 0
    for index, line in enumerate(lines):  # noqa: B007 - `index` is where the header ends, read after the loop
        header = _HEADER_LINE.match(line)
        continued = _CONTINUED.match(line) if key else None
        if header:
            key = header.group(1)
            meta[key] = header.group(2).strip()
        elif continued and key:
            meta[key] += " " + continued.group(1).strip()
        else:
            break
    else:
        index = len(lines)
    if not meta:
        return source
    header_text = "\n".join(lines[:index])
    return Source(meta, "\n".join(lines[index:]).lstrip("\n"), source.body_line + index, header_text, source.body_line)


def _plain_settings(path: Path) -> dict[str, Any]:
    """The `NAME = literal` assignments of a Pelican settings file, read without running it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        raise SourceError(f"{path.name} cannot be read: {exc}") from None
    settings: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                settings[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                continue  # an expression: only Pelican can work it out
    return settings


def _paths(value: object) -> list[str]:
    return [str(item).strip("/") for item in value] if isinstance(value, list | tuple) else []

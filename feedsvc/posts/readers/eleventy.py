"""An Eleventy site folder, read as Eleventy and its RSS plugin publish it (https://www.11ty.dev/docs/).

Eleventy has no posts of its own: a blog's posts are the templates in a collection (tagged "posts" in their
front matter or their folder's data file `<folder>/<folder>.json` / `.11tydata.json` / `.11tydata.js`), the
collection the feed plugin is given. `eleventyExcludeFromCollections`, `permalink: false` and `draft: true` keep
a template out. Dates without an offset are UTC; the date in a `YYYY-MM-DD-` file name is used when the front
matter has none. The URL is the `permalink`, else the template's path below the input folder. The config is
JavaScript: its input folder and feed settings are read from its text, never run.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from feedsvc.posts.fields import date_field, file_date, flag, tag_names, text
from feedsvc.posts.markup import Markup, absolute_url
from feedsvc.posts.model import Post, slugify
from feedsvc.posts.readers.base import Warn, check_markdown, site_settings
from feedsvc.posts.readers.liquid import Liquid
from feedsvc.posts.source import Source, SourceError

CONFIG_FILES = (".eleventy.js", ".eleventy.cjs", "eleventy.config.js", "eleventy.config.mjs", "eleventy.config.cjs")
_SETTING = {
    "input": re.compile(r"""\binput\s*:\s*["'`]([^"'`]+)["'`]"""),
    "output": re.compile(r"""\boutput\s*:\s*["'`]([^"'`]+)["'`]"""),
    "includes": re.compile(r"""\bincludes\s*:\s*["'`]([^"'`]+)["'`]"""),
    "data": re.compile(r"""\bdata\s*:\s*["'`]([^"'`]+)["'`]"""),
    "collection": re.compile(r"""\bcollection\s*:\s*\{[^}]*?\bname\s*:\s*["'`]([^"'`]+)["'`]""", re.DOTALL),
    "base": re.compile(r"""\bbase\s*:\s*["'`](https?://[^"'`]+)["'`]"""),
    "title": re.compile(r"""\bmetadata\s*:\s*\{[^}]*?\btitle\s*:\s*["'`]([^"'`]+)["'`]""", re.DOTALL),
    "language": re.compile(r"""\blanguage\s*:\s*["'`]([^"'`]+)["'`]"""),
}
_FILE_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})-")
_DATA_TAGS = re.compile(r"""\btags\s*:\s*(\[[^\]]*\]|["'`][^"'`]*["'`])""")
_QUOTED = re.compile(r"""["'`]([^"'`]+)["'`]""")
_FILE_TIMES = ("last modified", "created", "git last modified", "git created")
_PERMALINK_VALUE = re.compile(r"\{\{\s*([\w.]+)\s*(?:\|\s*(\w+)\s*)?\}\}")


class Eleventy(Liquid):
    name = "eleventy"
    marks = CONFIG_FILES
    extensions = (".md", ".markdown", ".html", ".liquid")

    @classmethod
    def read_config(cls, folder: Path) -> dict[str, Any]:
        config: dict[str, Any] = {"input": ".", "output": "_site", "includes": "_includes", "data": "_data"}
        config["collection"] = "posts"
        for name in CONFIG_FILES:
            if (folder / name).is_file():
                try:
                    written = (folder / name).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise SourceError(f"{name} cannot be read: {exc}") from None
                config.update(
                    {key: found.group(1) for key, pattern in _SETTING.items() if (found := pattern.search(written))}
                )
                break
        config["input"] = str(config["input"]).strip("/").removeprefix("./") or "."
        return config

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo("UTC")

    def includes_folder(self) -> str:
        return self._below_input(str(self.config["includes"]))

    def _below_input(self, path: str) -> str:
        input_folder = self.config["input"]
        return path.strip("/") if input_folder == "." else f"{input_folder}/{path.strip('/')}"

    def walks(self, relative: str) -> bool:
        input_folder = self.config["input"]
        skipped = {"node_modules", self.config["output"].strip("/"), self.includes_folder(), self._below_input(self.config["data"])}
        if relative in skipped or relative.split("/")[0] == "node_modules":
            return False
        return input_folder == "." or relative == input_folder or relative.startswith(input_folder + "/") or (
            input_folder.startswith(relative + "/")
        )

    def is_post_file(self, relative: str) -> bool:
        input_folder = self.config["input"]
        return input_folder == "." or relative.startswith(input_folder + "/")

    def build(self, path: Path, source: Source, version: tuple[int, int], warn: Warn) -> Post | None:
        meta = source.meta or {}
        collection = str(self.config["collection"])
        tags = _list(meta.get("tags")) + self._folder_tags(path)
        if (
            collection not in tags
            or flag(meta, source, "eleventyExcludeFromCollections")
            or meta.get("permalink") in (False, "false")
            or flag(meta, source, "draft")
        ):
            return None  # a page, not one of the blog's posts
        site = self.site
        title = text(meta, source, "title")
        when = self._date(meta, source, path, version, warn)
        url = self._url(meta, source, path, title, warn)
        markup: Markup = "html" if path.suffix.lower() == ".html" else "markdown"
        summary = text(meta, source, "description") or text(meta, source, "summary") or text(meta, source, "excerpt")
        body = self.body(path, source, warn)
        if markup == "markdown":
            check_markdown(source, summary, body)
        image = text(meta, source, "image")
        return Post(
            id=url,
            slug=slugify(_file_slug(path)) or path.stem,
            title=title or _file_slug(path),
            date=when,
            updated=None,
            url=url,
            tags=tag_names(
                {"tags": [tag for tag in tags if tag not in (collection, "all", "post", "posts")]},
                source,
                site.max_tags,
                warn,
                keys=("tags",),
            ),
            author=text(meta, source, "author") or site.author,
            image=absolute_url(image, url, site.asset_urls) if image else None,
            draft=False,
            source=path,
            markup=markup,
            summary=summary,
            asset_urls=site.asset_urls,
            version=version,
            convention=self,
        )

    def _folder_tags(self, path: Path) -> list[str]:
        """The tags the data files of the post's folders give it (Eleventy merges them into the front matter's)."""
        tags: list[str] = []
        top = self.folder / self.config["input"]
        folder = path.parent
        while folder == top or top in folder.parents:
            for name in (f"{folder.name}.json", f"{folder.name}.11tydata.json"):
                try:
                    data = json.loads((folder / name).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(data, dict):
                    tags += _list(data.get("tags"))
            script = folder / f"{folder.name}.11tydata.js"
            if script.is_file():
                try:
                    found = _DATA_TAGS.search(script.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError):
                    found = None
                tags += _QUOTED.findall(found.group(1)) if found else []
            folder = folder.parent
        return tags

    def _date(
        self, meta: dict[str, Any], source: Source, path: Path, version: tuple[int, int], warn: Warn
    ) -> datetime:
        written = meta.get("date")
        if isinstance(written, str) and written.strip().lower() in _FILE_TIMES:
            return file_date(version[1], self.tz)
        when = date_field(meta, source, "date", self.tz)
        if when is not None:
            return when
        named = _FILE_DATE.match(path.name)
        if named is not None:
            return datetime.fromisoformat(named.group(1)).replace(tzinfo=UTC)
        when = file_date(version[1], self.tz)
        warn(None, f"no date: using the file's modification time {when.isoformat()} (Eleventy uses its creation time)")
        return when

    def _url(self, meta: dict[str, Any], source: Source, path: Path, title: str, warn: Warn) -> str:
        input_folder = self.folder / self.config["input"]
        stem = path.relative_to(input_folder).with_suffix("").as_posix()
        permalink = meta.get("permalink")
        if isinstance(permalink, str) and permalink.strip():
            values = {
                "page.fileSlug": _file_slug(path),
                "page.filePathStem": "/" + stem,
                "title": title,
            }

            def value(found: re.Match[str]) -> str:
                shown = values.get(found.group(1))
                if shown is None:
                    warn(source.key_line("permalink"), f"permalink value {found.group(0)} unknown to feedsvc; removed")
                    return ""
                return slugify(shown) if found.group(2) in ("slugify", "slug") else shown

            written = _PERMALINK_VALUE.sub(value, permalink.strip())
            path_part = written.removesuffix("index.html")
        elif path.stem == "index" or (path.stem == path.parent.name and path.parent != input_folder):
            # index.md, and a file named as its folder (blog/post/post.md), are their folder's page.
            path_part = stem.rsplit("/", 1)[0] + "/" if "/" in stem else ""
        else:
            path_part = stem + "/"
        return self.site.url + "/" + quote(path_part.lstrip("/"), safe="/:@!$&'()*+,;=-._~")

    def liquid_values(self, source: Source) -> dict[str, Any]:
        return dict(source.meta or {})

    @classmethod
    def init_settings(cls, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return site_settings(config, "base", "title", ("language",), "timezone")


def _file_slug(path: Path) -> str:
    """Eleventy's fileSlug: the file name without its date prefix; for an index file, its folder's name."""
    stem = path.parent.name if path.stem == "index" else path.stem
    return _FILE_DATE.sub("", stem)


def _list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value] if isinstance(value, list) else []

"""A Jekyll site folder, read as Jekyll and jekyll-feed publish it (https://jekyllrb.com/docs/posts/).

Posts are the `YYYY-MM-DD-title.ext` files with front matter in a `_posts` folder (also `category/_posts`); the
folders above `_posts` are categories. `_drafts` and other `_` folders are not posts, `published: false` is
never published, a post with a date to come is published when it comes. The date is the front matter's, else
the file name's, in the site's `timezone`. The config's front matter `defaults` (scoped to posts, by path or
glob) fill in what a post's own front matter leaves out. The URL is the post's `permalink`, else the posts
collection's, else the site's, with Jekyll's placeholders. Other collections are not in jekyll-feed's feed (it
lists `site.posts`), nor in feedsvc's. Liquid: the common tags and `site.*`/`page.*` variables render as Jekyll renders them; anything
else is removed (its inner text kept) with a warning naming the file and line.
"""

from __future__ import annotations

import fnmatch
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from feedsvc.posts.fields import author_name, date_field, flag, tag_names, text
from feedsvc.posts.markup import Markup, absolute_url
from feedsvc.posts.model import Post, slugify
from feedsvc.posts.readers.base import (
    Warn,
    check_markdown,
    plugins_note,
    read_config_file,
    site_settings,
    zone,
)
from feedsvc.posts.readers.liquid import Liquid
from feedsvc.posts.source import Source, SourceError

_FILE_NAME = re.compile(r"^(\d{2,4})-(\d{1,2})-(\d{1,2})-(.+)\.[^.]+$")
_STYLES = {
    "date": "/:categories/:year/:month/:day/:title:output_ext",
    "pretty": "/:categories/:year/:month/:day/:title/",
    "ordinal": "/:categories/:year/:y_day/:title:output_ext",
    "weekdate": "/:categories/:year/W:week/:short_day/:title:output_ext",
    "none": "/:categories/:title:output_ext",
}
_SKIPPED_FOLDERS = frozenset(["_site", "node_modules", "vendor"])
# Plugins that change no post's URL, date or presence in the feed.
_PLUGINS_WITHOUT_POSTS = frozenset(
    ["jekyll-feed", "jekyll-seo-tag", "jekyll-sitemap", "jekyll-redirect-from", "jekyll-avatar", "jekyll-gist"]
)
_NOT_PRETTY = re.compile(r"[^\w._~!$&'()+,;=@]+")


class Jekyll(Liquid):
    name = "jekyll"
    marks = ("_config.yml", "_config.yaml")
    extensions = (".md", ".markdown", ".mkd", ".mkdn", ".html")

    @classmethod
    def detect(cls, folder: Path) -> bool:
        return super().detect(folder) and (folder / "_posts").is_dir()

    @classmethod
    def read_config(cls, folder: Path) -> dict[str, Any]:
        for name in cls.marks:
            if (folder / name).is_file():
                return read_config_file(folder / name)
        return {}

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.config.get("timezone"), self.site.tz)

    def walks(self, relative: str) -> bool:
        name = relative.rpartition("/")[2]
        return name not in _SKIPPED_FOLDERS and (not name.startswith("_") or name == "_posts")

    def is_post_file(self, relative: str) -> bool:
        parts = relative.split("/")
        return "_posts" in parts[:-1] and _FILE_NAME.match(parts[-1]) is not None

    def build(self, path: Path, source: Source, version: tuple[int, int], warn: Warn) -> Post:
        if source.meta is None:
            raise SourceError("no front matter: Jekyll copies this file as it is, it is not a post", 1)
        site = self.site
        meta = {**self._defaults(self.relative(path)), **source.meta}
        relative = self.relative(path).split("/")
        named = _FILE_NAME.match(relative[-1])
        assert named is not None, "is_post_file let only dated file names through"
        year, month, day, name = named.groups()
        try:
            when = date_field(meta, source, "date", self.tz) or datetime(int(year), int(month), int(day), tzinfo=self.tz)
        except ValueError:
            raise SourceError(f"the file name's date {year}-{month}-{day} is not a date", None) from None
        slug = text(meta, source, "slug", numbers=True) or name
        title = text(meta, source, "title") or " ".join(word.capitalize() for word in name.split("-"))
        categories = _words(meta, "categories", (*relative[: relative.index("_posts")], *_single(meta, "category")))
        url = self.url_of_post(meta, source, path, when, slug, categories)

        markup: Markup = "html" if path.suffix.lower() == ".html" else "markdown"
        summary = text(meta, source, "excerpt") or text(meta, source, "summary") or text(meta, source, "description")
        separator = meta.get("excerpt_separator", self.config.get("excerpt_separator"))
        body = self.body(path, source, warn)
        if not summary and isinstance(separator, str) and separator not in ("", "\n\n") and separator in body:
            summary = body.split(separator, 1)[0]
        if markup == "markdown":
            check_markdown(source, summary, body)
        image = meta.get("image")
        if isinstance(image, dict):
            image = image.get("path")
        image = image.strip() if isinstance(image, str) else ""
        return Post(
            id=url,
            slug=slugify(slug) or name,
            title=title,
            date=when,
            updated=date_field(meta, source, "last_modified_at", self.tz),
            url=url,
            tags=tag_names(
                meta,
                source,
                site.max_tags,
                warn,
                keys=("tags",),
                split=str.split,
                first=(*categories, *_single(meta, "tag")),
            ),
            author=author_name(meta, source) or _config_author(self.config) or site.author,
            image=absolute_url(image, url, site.asset_urls) if image else None,
            draft=not flag(meta, source, "published") if "published" in meta else False,
            source=path,
            markup=markup,
            summary=summary,
            asset_urls=site.asset_urls,
            version=version,
            convention=self,
        )

    def url_of_post(
        self,
        meta: dict[str, Any],
        source: Source,
        path: Path,
        when: datetime,
        slug: str,
        categories: tuple[str, ...],
    ) -> str:
        collections = self.config.get("collections")
        posts = collections.get("posts") if isinstance(collections, dict) else None
        collection_pattern = posts.get("permalink") if isinstance(posts, dict) else None
        pattern = (
            text(meta, source, "permalink")
            or (collection_pattern if isinstance(collection_pattern, str) else "")
            or str(self.config.get("permalink") or "date")
        )
        pattern = _STYLES.get(pattern, pattern)
        local = when.astimezone(self.tz)
        tokens = {
            ":year": f"{local:%Y}",
            ":short_year": f"{local:%y}",
            ":month": f"{local:%m}",
            ":i_month": str(local.month),
            ":short_month": f"{local:%b}",
            ":long_month": f"{local:%B}",
            ":day": f"{local:%d}",
            ":i_day": str(local.day),
            ":y_day": f"{local.timetuple().tm_yday:03d}",
            ":week": f"{local.isocalendar().week:02d}",
            ":short_day": f"{local:%a}",
            ":long_day": f"{local:%A}",
            ":hour": f"{local:%H}",
            ":minute": f"{local:%M}",
            ":second": f"{local:%S}",
            ":title": _pretty(slug),
            ":slug": _pretty(slug).lower(),
            ":categories": "/".join(dict.fromkeys(category.lower() for category in categories)),
            ":output_ext": ".html",
            ":name": _pretty(path.stem),
        }
        expanded = re.sub(
            "|".join(sorted(map(re.escape, tokens), key=len, reverse=True)), lambda m: tokens[m.group()], pattern
        )
        expanded = "/" + re.sub("/{2,}", "/", expanded).lstrip("/")
        return self.site.url + quote(expanded, safe="/:@!$&'()*+,;=-._~")

    def _defaults(self, relative: str) -> dict[str, Any]:
        """The values of the config's front matter `defaults` whose scope takes in this post (type `posts` or
        none, a path the file is under, `*` matching within a folder name); a more specific path wins, and among
        equal ones the later entry."""
        found = self.config.get("defaults")
        scoped: list[tuple[int, int, dict[str, Any]]] = []
        for index, entry in enumerate(found if isinstance(found, list) else []):
            if not isinstance(entry, dict) or not isinstance(entry.get("values"), dict):
                continue
            scope = entry.get("scope")
            kind, where = (scope.get("type"), str(scope.get("path") or "").strip("/")) if isinstance(scope, dict) else (None, "")
            if kind not in (None, "", "posts"):
                continue
            if where and not (
                fnmatch.fnmatchcase(relative, where)
                or fnmatch.fnmatchcase(relative, where + "/*")
                or relative.startswith(where + "/")
            ):
                continue
            scoped.append((len(where), index, entry["values"]))
        values: dict[str, Any] = {}
        for _, _, entry_values in sorted(scoped, key=lambda item: item[:2]):
            values.update(entry_values)
        return values

    # --- Liquid ----------------------------------------------------------------------------------------------

    def liquid_values(self, source: Source) -> dict[str, Any]:
        return {
            "site": {**self.config, "url": self.config.get("url", ""), "baseurl": self.config.get("baseurl", "")},
            "page": dict(source.meta or {}),
        }

    def base_path(self) -> str:
        return str(self.config.get("baseurl") or "")

    def liquid_tag(
        self, name: str, argument: str, path: Path, source: Source, line: int, warn: Warn, depth: int
    ) -> str:
        if name == "post_url":
            found = next(self.folder.glob(f"**/_posts/**/{argument}.*"), None)
            url = self.url_of(found) if found is not None and self.is_post_file(self.relative(found)) else None
            if url is None:
                warn(line, f"{{% post_url {argument} %}}: no such post in _posts; left without a link")
            return url or ""
        if name == "link":
            target = self.folder / argument.strip("'\"")
            if not target.is_file():
                warn(line, f"{{% link {argument} %}}: no such file; left without a link")
                return ""
            if self.is_post_file(self.relative(target)):
                return self.url_of(target) or ""
            page = "/" + self.relative(target).rsplit(".", 1)[0] + ".html"
            return self.site.url + quote(page)
        return super().liquid_tag(name, argument, path, source, line, warn, depth)

    @classmethod
    def init_settings(cls, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        url = str(config.get("url") or "").rstrip("/") + str(config.get("baseurl") or "").rstrip("/")
        sections = site_settings({**config, "url": url}, "url", "title", ("lang", "locale"), "timezone")
        if isinstance(config.get("description"), str):
            sections["site"]["description"] = config["description"]
        return sections

    @classmethod
    def init_notes(cls, config: dict[str, Any]) -> list[str]:
        listed = config.get("plugins") or config.get("gems") or []
        plugins = [str(name) for name in listed if str(name) not in _PLUGINS_WITHOUT_POSTS] if isinstance(listed, list) else []
        return [plugins_note(plugins)] if plugins else []


def _pretty(slug: str) -> str:
    """Jekyll's slugify in "pretty" mode, case kept: what URLs make of a title or slug."""
    return _NOT_PRETTY.sub("-", slug).strip("-")


def _words(meta: dict[str, Any], key: str, first: tuple[str, ...]) -> tuple[str, ...]:
    """`first`, then the front matter's list or space-separated words under `key`; each once."""
    value = meta.get(key)
    words = value.split() if isinstance(value, str) else [str(item) for item in value] if isinstance(value, list) else []
    return tuple(dict.fromkeys([*first, *words]))


def _single(meta: dict[str, Any], key: str) -> tuple[str, ...]:
    value = meta.get(key)
    return (str(value).strip(),) if isinstance(value, str | int | float) and str(value).strip() else ()


def _config_author(config: dict[str, Any]) -> str:
    author = config.get("author")
    if isinstance(author, dict):
        author = author.get("name")
    return author.strip() if isinstance(author, str) else ""

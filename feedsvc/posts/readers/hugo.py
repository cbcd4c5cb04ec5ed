"""A Hugo site folder, read as Hugo publishes it (https://gohugo.io/content-management/).

Posts are the regular pages under `contentDir`: `_index.*` files are sections (lists, not posts), `index.*` is
a page bundle named after its folder, and the other files inside a bundle are its resources. Front matter keys
are case-insensitive. A page is published unless it is a draft, its publishDate is to come or its expiryDate
has passed. Its URL is `url`, else the site's `permalinks` pattern for its section, else its path.
Shortcodes: the built-in ones render as Hugo renders them (embeds as links), others are removed (their inner
text kept) with a warning naming the file and line.
"""

from __future__ import annotations

import html
import re
import shlex
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from feedsvc.posts.fields import author_name, date_field, file_date, flag, tag_names, text
from feedsvc.posts.markup import Markup, absolute_url
from feedsvc.posts.model import Post, slugify
from feedsvc.posts.readers.base import (
    Convention,
    Warn,
    body_line,
    check_markdown,
    read_config_file,
    site_settings,
    zone,
)
from feedsvc.posts.source import Source

CONFIG_FILES = ("hugo.toml", "hugo.yaml", "hugo.yml", "hugo.json", "config.toml", "config.yaml", "config.yml", "config.json")
_CONFIG_FOLDER = Path("config", "_default")
_DATE_KEYS = ("date", "publishdate", "pubdate", "published", "lastmod", "modified")
_PUBLISH_KEYS = ("publishdate", "pubdate", "published")
_LASTMOD_KEYS = ("lastmod", "modified")
_EXPIRY_KEYS = ("expirydate", "unpublishdate")
# {{< name args >}} or {{% name args %}}, closing {{< /name >}}; {{</* name */>}} is a shortcode shown as text.
_SHORTCODE = re.compile(r"\{\{([<%])\s*(/?)\s*([\w./-]+)((?:[^>%]|>(?!\}\})|%(?!\}\}))*?)\s*(/?)\s*[>%]\}\}")
_SHOWN_SHORTCODE = re.compile(r"\{\{([<%])/\*(.*?)\*/([>%])\}\}", re.DOTALL)
_URLIZE_DROP = re.compile(r"[^\w\s./+~-]")


class Hugo(Convention):
    name = "hugo"
    marks = ("hugo.toml", "hugo.yaml", "hugo.yml", "hugo.json", "config/_default")
    extensions = (".md", ".markdown", ".html", ".htm")

    @classmethod
    def detect(cls, folder: Path) -> bool:
        # config.toml is also other tools' name: Hugo's only with a content folder beside it.
        return super().detect(folder) or (
            (folder / "content").is_dir() and any((folder / name).is_file() for name in CONFIG_FILES)
        )

    @classmethod
    def read_config(cls, folder: Path) -> dict[str, Any]:
        """The config folder's files (`config/_default/params.toml` is the `params` key, `languages.fr.toml` is
        `languages.fr`), with the site's config file on top."""
        config: dict[str, Any] = {}
        directory = folder / _CONFIG_FOLDER
        if directory.is_dir():
            for file in sorted(directory.iterdir()):
                if file.suffix not in (".toml", ".yaml", ".yml", ".json") or not file.is_file():
                    continue
                values = _lower_keys(read_config_file(file))
                key, _, language = file.stem.lower().partition(".")
                if key in ("hugo", "config"):
                    config.update(values)
                elif language:
                    config.setdefault(key, {}).setdefault(language, {}).update(values)
                else:
                    config.setdefault(key, {}).update(values)
        for name in CONFIG_FILES:
            if (folder / name).is_file():
                config.update(_lower_keys(read_config_file(folder / name)))
                break
        return config

    @property
    def tz(self) -> ZoneInfo:
        """Dates without an offset are in the site's timeZone; Hugo's default is UTC."""
        return zone(self._language_config.get("timezone", self.config.get("timezone")), ZoneInfo("UTC"))

    # --- languages: the feed is the default content language's, as Hugo's home feed is ------------------------

    @property
    def languages(self) -> dict[str, dict[str, Any]]:
        found = self.config.get("languages")
        if not isinstance(found, dict):
            return {}
        return {str(name).lower(): _lower_keys(values) for name, values in found.items() if isinstance(values, dict)}

    @property
    def language(self) -> str:
        return str(self.config.get("defaultcontentlanguage") or "en").lower()

    @property
    def _language_config(self) -> dict[str, Any]:
        return self.languages.get(self.language, {})

    @property
    def content(self) -> str:
        written = self._language_config.get("contentdir") or self.config.get("contentdir") or "content"
        return str(written).strip("/")

    def _other_contents(self) -> list[str]:
        """The content folders of the other languages (their files are theirs, not the feed's)."""
        own = self.content
        folders = {str(values.get("contentdir") or "").strip("/") for values in self.languages.values()}
        return [folder for folder in folders if folder and folder != own]

    def _file_language(self, name: str) -> str:
        """`post.fr.md` is French where French is one of the site's languages; any other file is the folder's."""
        parts = name.lower().split(".")
        return parts[-2] if len(parts) > 2 and parts[-2] in self.languages else self.language

    def walks(self, relative: str) -> bool:
        content = self.content
        if any(relative == other or relative.startswith(other + "/") for other in self._other_contents()):
            return False
        return relative == content or relative.startswith(content + "/") or content.startswith(relative + "/")

    def is_post_file(self, relative: str) -> bool:
        if not relative.startswith(self.content + "/") or not self.walks(relative.rsplit("/", 1)[0]):
            return False
        path = Path(relative)
        if self._file_language(path.name) != self.language:
            return False  # a translation: in its language's feed
        if path.name.startswith("_index."):
            return False  # a section's list page
        if path.name.startswith("index."):
            return True
        # A file in a leaf bundle (a folder with an index file, or below one) is the bundle's resource.
        folder = self.folder / path.parent
        top = self.folder / self.content
        while folder != top and top in folder.parents:
            if any((folder / f"index{extension}").is_file() for extension in self.extensions or ()):
                return False
            folder = folder.parent
        return True

    def build(self, path: Path, source: Source, version: tuple[int, int], warn: Warn) -> Post:
        site = self.site
        meta = _lower_keys(source.meta or {})
        relative = Path(self.relative(path)).relative_to(self.content)
        stem = _without_language(relative.stem, self.languages)
        bundle = stem == "index"
        name = relative.parent.name if bundle else stem
        folders = relative.parent.parts[:-1] if bundle else relative.parent.parts

        title = text(meta, source, "title")
        if not title:
            title = name.replace("-", " ").replace("_", " ").strip()
            warn(source.meta_line, f"no title in the front matter: using {title!r} from the file name")
        date = _first_date(meta, source, _DATE_KEYS, self.tz)
        published = _first_date(meta, source, _PUBLISH_KEYS, self.tz) or date
        if date is None or published is None:
            date = published = file_date(version[1], self.tz)
            warn(None, f"no date: using the file's modification time {date.isoformat()}")
        slug = text(meta, source, "slug", numbers=True)
        url = self._url(meta, source, date, title, slug, name, folders)

        markup: Markup = "html" if path.suffix.lower() in (".html", ".htm") else "markdown"
        summary = text(meta, source, "summary") or text(meta, source, "description")
        if markup == "markdown":
            check_markdown(source, summary, self.body(path, source, warn))
        else:
            self.body(path, source, warn)
        image = _image(meta, source)
        return Post(
            id=url,
            slug=slugify(slug or name) or name,
            title=title,
            date=published,
            updated=_first_date(meta, source, _LASTMOD_KEYS, self.tz),
            url=url,
            tags=tag_names(
                meta, source, site.max_tags, warn, keys=self._taxonomies(), split=lambda value: [value]
            ),
            author=_author(meta, source) or site.author,
            image=absolute_url(image, url, site.asset_urls) if image else None,
            draft=flag(meta, source, "draft") or flag(meta, source, "headless"),
            source=path,
            markup=markup,
            summary=summary,
            asset_urls=site.asset_urls,
            version=version,
            expires=_first_date(meta, source, _EXPIRY_KEYS, self.tz),
            convention=self,
        )

    def _taxonomies(self) -> tuple[str, ...]:
        taxonomies = self.config.get("taxonomies")
        if isinstance(taxonomies, dict):
            return tuple(str(plural).lower() for plural in taxonomies.values())
        return ("tags", "categories")

    def _url(
        self,
        meta: dict[str, Any],
        source: Source,
        date: datetime,
        title: str,
        slug: str,
        name: str,
        folders: tuple[str, ...],
    ) -> str:
        written = text(meta, source, "url")
        if written:
            return self._absolute(written)  # as written: no language prefix, no ugly URL
        section = folders[0] if folders else ""
        pattern = self._permalink(section)
        if pattern is None:
            path = "/".join((*folders, slug or name))
            return self._absolute(self._prefixed(self._ugly(_urlize(path) + "/", section)))
        local = date.astimezone(self.tz)
        tokens = {
            ":year": f"{local:%Y}",
            ":month": f"{local:%m}",
            ":monthname": f"{local:%B}".lower(),
            ":day": f"{local:%d}",
            ":weekday": str(local.isoweekday() % 7),
            ":weekdayname": f"{local:%A}".lower(),
            ":yearday": str(local.timetuple().tm_yday),
            ":section": section,
            ":sections": "/".join(folders),
            ":title": _urlize(title),
            ":slug": _urlize(slug or title),
            ":filename": _urlize(name),
            ":contentbasename": _urlize(name),
            ":slugorfilename": _urlize(slug or name),
            ":slugorcontentbasename": _urlize(slug or name),
        }
        expanded = re.sub(
            "|".join(sorted(map(re.escape, tokens), key=len, reverse=True)), lambda m: tokens[m.group()], pattern
        )
        return self._absolute(self._prefixed(self._ugly(expanded, section)))

    def _ugly(self, path: str, section: str) -> str:
        """With uglyURLs (for the site, or for this section), /a/b/ is published as /a/b.html."""
        ugly = self.config.get("uglyurls")
        if isinstance(ugly, dict):
            ugly = {str(key).lower(): value for key, value in ugly.items()}.get(section.lower())
        return path.rstrip("/") + ".html" if ugly is True and path.endswith("/") and path.strip("/") else path

    def _prefixed(self, path: str) -> str:
        """The default language's pages are below /<language>/ only with defaultContentLanguageInSubdir."""
        if self.config.get("defaultcontentlanguageinsubdir") is True:
            return f"/{self.language}/{path.lstrip('/')}"
        return path

    def _permalink(self, section: str) -> str | None:
        permalinks = self.config.get("permalinks")
        if not isinstance(permalinks, dict):
            return None
        page = permalinks.get("page")  # Hugo 0.131+: permalinks by page kind
        pages: dict[Any, Any] = page if isinstance(page, dict) else permalinks
        pattern = {str(key).lower(): value for key, value in pages.items()}.get(section.lower())
        return pattern if isinstance(pattern, str) else None

    def _absolute(self, path: str) -> str:
        return self.site.url + "/" + quote(path.lstrip("/"), safe="/:@!$&'()*+,;=-._~")

    # --- shortcodes ------------------------------------------------------------------------------------------

    def body(self, path: Path, source: Source, warn: Warn) -> str:
        text = source.body
        if "{{" not in text:
            return text
        shown: list[str] = []

        def keep(found: re.Match[str]) -> str:
            shown.append("{{" + found.group(1) + found.group(2) + found.group(3) + "}}")
            return f"\x00{len(shown) - 1}\x00"

        text = _SHOWN_SHORTCODE.sub(keep, text)
        text = self._expand(text, path, source, warn)
        return re.sub(r"\x00(\d+)\x00", lambda found: shown[int(found.group(1))], text)

    def _expand(self, text: str, path: Path, source: Source, warn: Warn) -> str:
        out: list[str] = []
        position = 0
        while (found := _SHORTCODE.search(text, position)) is not None:
            out.append(text[position : found.start()])
            closing, name, arguments, self_closed = found.group(2), found.group(3), found.group(4), found.group(5)
            line = body_line(source, found.group(0))
            if closing:
                warn(line, f"shortcode closing {{{{< /{name} >}}}} without its opening; removed")
                position = found.end()
                continue
            inner = None
            end = found.end()
            if not self_closed:
                close = re.compile(r"\{\{[<%]\s*/\s*" + re.escape(name) + r"\s*[>%]\}\}")
                closed = close.search(text, found.end())
                if closed is not None:
                    inner = self._expand(text[found.end() : closed.start()], path, source, warn)
                    end = closed.end()
            out.append(self._shortcode(name, _arguments(arguments), inner, path, source, line, warn))
            position = end
        out.append(text[position:])
        return "".join(out)

    def _shortcode(
        self,
        name: str,
        arguments: dict[str | int, str],
        inner: str | None,
        path: Path,
        source: Source,
        line: int,
        warn: Warn,
    ) -> str:
        def argument(*keys: str | int) -> str:
            return next((arguments[key] for key in keys if key in arguments), "")

        def attribute(value: str) -> str:
            return html.escape(value, quote=True)

        if name == "figure":
            image = f'<img src="{attribute(argument("src", 0))}" alt="{attribute(argument("alt", "caption"))}">'
            if argument("link"):
                image = f'<a href="{attribute(argument("link"))}">{image}</a>'
            caption = "".join(
                f"<{tag}>{html.escape(argument(key))}</{tag}>"
                for key, tag in (("title", "h4"), ("caption", "p"))
                if argument(key)
            )
            return f"<figure>{image}" + (f"<figcaption>{caption}</figcaption>" if caption else "") + "</figure>"
        if name == "highlight":
            return f"\n\n```{argument(0)}\n{(inner or '').strip(chr(10))}\n```\n\n"
        if name == "youtube":
            video = argument("id", 0)
            return (
                f'<a href="https://www.youtube.com/watch?v={quote(video)}">'
                f'<img src="https://i.ytimg.com/vi/{quote(video)}/hqdefault.jpg" alt="{attribute(argument("title") or "YouTube video")}"></a>'
            )
        if name == "vimeo":
            video = argument("id", 0)
            return f'<a href="https://vimeo.com/{quote(video)}">{html.escape(argument("title") or "Vimeo video")}</a>'
        if name == "gist":
            user, gist = argument("user", 0), argument("id", 1)
            return f'<a href="https://gist.github.com/{quote(user)}/{quote(gist)}">gist {html.escape(user)}/{html.escape(gist)}</a>'
        if name in ("x", "tweet", "twitter"):
            user, post = argument("user", 0), argument("id", 1)
            return f'<a href="https://x.com/{quote(user)}/status/{quote(post)}">Post by @{html.escape(user)}</a>'
        if name == "instagram":
            return f'<a href="https://www.instagram.com/p/{quote(argument("id", 0))}/">Instagram post</a>'
        if name in ("ref", "relref"):
            return self._ref(argument("path", 0), path, line, warn)
        if name == "param":
            return html.escape(str(self._param(argument("name", 0), source)))
        kept = "" if inner is None else inner
        warn(
            line,
            f"unknown shortcode {{{{< {name} >}}}}: removed" + (" (its inner text is kept)" if inner else ""),
        )
        return kept

    def _ref(self, target: str, path: Path, line: int, warn: Warn) -> str:
        reference, _, anchor = target.partition("#")
        content = self.folder / self.content
        candidates = [path.parent / reference, content / reference.lstrip("/")]
        for candidate in [*candidates, *(c / "index.md" for c in candidates)]:
            found = candidate if candidate.suffix else candidate.with_suffix(".md")
            if found.is_file() and (found.resolve().is_relative_to(content.resolve())):
                url = self.url_of(found)
                if url:
                    return url + (f"#{anchor}" if anchor else "")
        warn(line, f"ref {target!r}: no such page in {self.content}/; left without a link")
        return ""

    def _param(self, name: str, source: Source) -> object:
        """A page parameter from the front matter, else from the site's `params`."""
        page = _lower_keys(source.meta or {})
        params = self.config.get("params")
        site = _lower_keys(params) if isinstance(params, dict) else {}
        return page.get(name.lower(), site.get(name.lower(), ""))

    @classmethod
    def init_settings(cls, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return site_settings(config, "baseurl", "title", ("locale", "languagecode"), "timezone")


def _without_language(stem: str, languages: dict[str, dict[str, Any]]) -> str:
    """`post.fr` -> `post` where fr is one of the site's languages."""
    base, dot, language = stem.rpartition(".")
    return base if dot and language.lower() in languages else stem


def _lower_keys(meta: dict[str, Any]) -> dict[str, Any]:
    return {str(key).lower(): value for key, value in meta.items()}


def _first_date(meta: dict[str, Any], source: Source, keys: tuple[str, ...], tz: ZoneInfo) -> datetime | None:
    for key in keys:
        found = date_field(meta, source, key, tz)
        if found is not None:
            return found
    return None


def _author(meta: dict[str, Any], source: Source) -> str:
    authors = meta.get("authors")
    if isinstance(authors, list) and authors and isinstance(authors[0], str):
        return authors[0].strip()
    return author_name(meta, source)


def _image(meta: dict[str, Any], source: Source) -> str:
    images = meta.get("images")
    if isinstance(images, list) and images and isinstance(images[0], str):
        return images[0].strip()
    return text(meta, source, "image") or text(meta, source, "cover")


def _urlize(path: str) -> str:
    """Hugo's path rules: lower case, spaces to hyphens, characters outside a path's words removed."""
    return _URLIZE_DROP.sub("", re.sub(r"\s+", "-", path.strip())).lower()


def _arguments(written: str) -> dict[str | int, str]:
    """A shortcode's arguments: positional (by index) or named (`key="value"`)."""
    try:
        words = shlex.split(written.replace("`", '"'))
    except ValueError:
        words = written.split()
    arguments: dict[str | int, str] = {}
    for index, word in enumerate(words):
        key, equals, value = word.partition("=")
        if equals and re.fullmatch(r"\w+", key):
            arguments[key.lower()] = value
        else:
            arguments[index] = word
    return arguments


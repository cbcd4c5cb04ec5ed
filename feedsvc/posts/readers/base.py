"""`Convention`: how one site generator's folder is read. Each generator (and feedsvc's own plain folder) is a
subclass in a module of its own, listed once in `feedsvc.posts.readers.CONVENTIONS`."""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from feedsvc.posts.fields import Site
from feedsvc.posts.markup import markdown_problem
from feedsvc.posts.model import Post, failure
from feedsvc.posts.readers.formats import split
from feedsvc.posts.readers.yaml_front_matter import load_yaml
from feedsvc.posts.source import Source, SourceError, decode

# (line in the file or None, message): a warning about the file being read.
Warn = Callable[[int | None, str], None]


# Files a post refers to are read whole: an include or a linked post is a post's size, not gigabytes.
MAX_REFERRED_BYTES = 5 * 1024 * 1024


def ignore(line: int | None, message: str) -> None:
    """The `Warn` of a render: what there is to say about a file was said when it was read."""


class Convention:
    """Which files of a site folder are posts, what their front matter means, and what the macros of their
    bodies (shortcodes, Liquid) become. Instances are plain data (the site's settings and the generator's own
    config as read), kept by every post read with them so that its body renders by the same rules."""

    name: ClassVar[str]
    # Files whose presence in a folder shows it is this generator's site (any one of them).
    marks: ClassVar[tuple[str, ...]] = ()
    # Names of post files it reads; None: those of posts.extensions.
    extensions: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, site: Site, config: dict[str, Any]) -> None:
        self.site = site
        self.config = config

    @classmethod
    def detect(cls, folder: Path) -> bool:
        return any((folder / mark).exists() for mark in cls.marks)

    @classmethod
    def load(cls, site: Site) -> Convention:
        return cls(site, cls.read_config(site.posts_dir))

    @classmethod
    def read_config(cls, folder: Path) -> dict[str, Any]:
        """The generator's site config in `folder`, as a mapping; SourceError when it cannot be read."""
        return {}

    @property
    def folder(self) -> Path:
        return self.site.posts_dir

    @property
    def fingerprint(self) -> str:
        """Changes whenever a post read under this convention would."""
        return hashlib.sha256(repr((self.name, self.config)).encode()).hexdigest()

    def walks(self, relative: str) -> bool:
        """Whether the folder at this path (relative to posts.dir, '/'-separated) may hold posts."""
        return True

    def is_post_file(self, relative: str) -> bool:
        """Whether the file at this path (with a post extension) is a post, not a page, section or resource."""
        return True

    def build(self, path: Path, source: Source, version: tuple[int, int], warn: Warn) -> Post | None:
        """The post this file is; None when it is a page of the site, not a post (Eleventy's collections)."""
        raise NotImplementedError

    def body(self, path: Path, source: Source, warn: Warn) -> str:
        """The text to render as the post's markup: the body with the generator's macros expanded."""
        return source.body

    @classmethod
    def init_settings(cls, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """feedsvc.toml sections matching this site: `feedsvc init --from` writes them."""
        return {}

    @classmethod
    def init_notes(cls, config: dict[str, Any]) -> list[str]:
        """What `feedsvc init --from` tells about this site's config that feedsvc does not follow."""
        return []

    def relative(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    def url_of(self, path: Path) -> str | None:
        """The URL of another post file of the site (a link between posts); None when it cannot be read, or
        when it is being read already (two posts that link to each other)."""
        resolving = _resolving.get()
        if path in resolving:
            return None
        token = _resolving.set(resolving | {path})
        try:
            data = self.read_site_file(path)
            if data is None:
                return None
            post = self.build(path, split(decode(data)), (len(data), path.stat().st_mtime_ns), ignore)
            return post.url if post else None
        except (OSError, SourceError):
            return None
        finally:
            _resolving.reset(token)

    def read_site_file(self, path: Path) -> bytes | None:
        """A file a post refers to (another post, an include): only a regular file inside the site folder, links
        resolved, and of a post's size at most; None otherwise."""
        try:
            real = path.resolve()
            if not real.is_relative_to(self.folder.resolve()) or not real.is_file():
                return None
            with real.open("rb") as file:
                data = file.read(MAX_REFERRED_BYTES + 1)
        except OSError:
            return None
        return data if len(data) <= MAX_REFERRED_BYTES else None


_resolving: ContextVar[frozenset[Path]] = ContextVar("resolving", default=frozenset())


def site_settings(
    config: dict[str, Any], url: str, title: str, language: tuple[str, ...], timezone: str
) -> dict[str, dict[str, Any]]:
    """The [site] settings of feedsvc.toml from a generator's config, given the names of its keys."""
    site: dict[str, Any] = {}
    if isinstance(config.get(url), str) and config[url]:
        site["url"] = config[url].rstrip("/")
    if isinstance(config.get(title), str):
        site["title"] = config[title]
    found_language = next((config[key] for key in language if isinstance(config.get(key), str)), "")
    if found_language:
        site["language"] = found_language.split("-")[0].split("_")[0]
    if isinstance(config.get(timezone), str) and config[timezone]:
        site["timezone"] = config[timezone]
    return {"site": site}


def plugins_note(plugins: list[str]) -> str:
    return (
        f"the site runs plugins feedsvc does not ({', '.join(plugins)}): where one changes a post's URL, date or "
        "presence, the feeds differ from the site (benchmarks/compare_generator.py shows which posts)"
    )


def zone(name: object, default: ZoneInfo) -> ZoneInfo:
    """The time zone a generator's config names, else `default` (also for a name that is no time zone)."""
    if not isinstance(name, str) or not name:
        return default
    try:
        return ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return default


def read_config_file(path: Path) -> dict[str, Any]:
    """A generator's config file (TOML, YAML or JSON by its name) as a mapping; SourceError when it is not one."""
    import yaml  # for its error; imported here, as load_yaml does, so that reading posts needs no PyYAML

    try:
        text = decode(path.read_bytes())
        if path.suffix == ".toml":
            config = tomllib.loads(text)
        elif path.suffix == ".json":
            config = json.loads(text)
        else:
            config = load_yaml(text)
    except OSError as exc:
        raise SourceError(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise SourceError(f"{path.name} is not valid {path.suffix.lstrip('.').upper()}: {failure(exc)}") from None
    if not isinstance(config, dict):
        raise SourceError(f"{path.name} does not hold a mapping of settings")
    return config


def body_line(source: Source, fragment: str) -> int:
    """The line of the file where `fragment` (a macro) first appears in the body."""
    return source.body_line + source.body.count("\n", 0, max(source.body.find(fragment), 0))


def check_markdown(source: Source, summary: str, body: str) -> None:
    """Refuse a post whose Markdown is past the renderer's bounds (see markup.markdown_problem)."""
    for text, key in ((summary, "summary"), (body, None)):
        problem = markdown_problem(text)
        if problem is not None:
            raise SourceError(f"{problem}; not published", source.key_line(key) if key else source.body_line)

"""Post readers, each keyed by what it recognises.

- Front matter formats, by how a file opens: `---` YAML, `+++` TOML, `{` JSON. A file that opens otherwise has
  no front matter. A new format is a module with `OPENINGS` and `split(text) -> Source`, added to `FORMATS`.
- Conventions, by the files that mark a site folder as a generator's (`hugo.toml`, `_config.yml` + `_posts/`,
  ...): which files are posts and what their fields and macros mean. A new one is a `Convention` subclass in a
  module of its own, added to `CONVENTIONS`. `[posts] convention` names one, or "auto" detects it.
"""

from __future__ import annotations

from pathlib import Path

from feedsvc.config import ConfigError
from feedsvc.posts.fields import Site
from feedsvc.posts.readers import eleventy, hugo, jekyll, pelican
from feedsvc.posts.readers.base import Convention
from feedsvc.posts.readers.feedsvc import Feedsvc
from feedsvc.posts.readers.formats import FORMATS, split
from feedsvc.posts.source import SourceError

__all__ = ["CONVENTIONS", "FORMATS", "Convention", "convention_for", "detect", "split"]

# Detection tries them in this order; the plain feedsvc folder is what is left.
CONVENTIONS: dict[str, type[Convention]] = {
    "hugo": hugo.Hugo,
    "jekyll": jekyll.Jekyll,
    "pelican": pelican.Pelican,
    "eleventy": eleventy.Eleventy,
    "feedsvc": Feedsvc,
}


def detect(folder: Path) -> str:
    """The name of the convention whose marks are in this folder; "feedsvc" when none."""
    return next((name for name, kind in CONVENTIONS.items() if kind.detect(folder)), "feedsvc")


def convention_for(site: Site) -> Convention:
    """The convention `site` reads its posts by, with its generator's config read."""
    name = detect(site.posts_dir) if site.convention == "auto" else site.convention
    try:
        return CONVENTIONS[name].load(site)
    except SourceError as exc:
        raise ConfigError(f"posts.convention {name!r}: {exc.message}") from None

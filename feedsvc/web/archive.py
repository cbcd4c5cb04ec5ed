"""Web copies (`[web] archive = true`): a page for every published post and every sent edition, and an index.

A post is served at `/posts/<slug>/`, and at its own URL when that is on this service (`site.url` under
`web.base_url`, as on the bundled example), with its images when `[posts] asset_urls` puts them on this
service too; its HTML is the one the feeds carry (the posts layer renders it, and
nothing else). An edition is served at the address its mail links as "view in browser" (`digests.archive`),
with its posts as the mails show them (`mail/digest_posts.html.j2`): the versions published now, without the
ones deleted since.

Posts come from a collection of this app's own, scanned again at most once a second while pages are asked
for. Each page is rendered once per change — its cache key holds the post (whose value includes the file's
size and mtime), the edition and the feeds — with a placeholder where each browser's form token goes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from urllib.parse import quote, urljoin

from babel.dates import format_date
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from feedsvc.config import Settings
from feedsvc.digests.archive import ARCHIVE_PATH, archived_editions, edition_path, find_edition
from feedsvc.digests.editions import reading_key
from feedsvc.fediverse.objects import ACTIVITY_JSON, Urls
from feedsvc.feeds import BY_FILE_NAME
from feedsvc.feeds.items import plain_text
from feedsvc.i18n import language_of
from feedsvc.mail.render import focusable_tables, posts_html
from feedsvc.posts import Collection, Post
from feedsvc.posts.render import SourceChanged, rendered
from feedsvc.store.editions import SentEdition
from feedsvc.vocabulary import FREQUENCIES
from feedsvc.web.context import WebContext, web_context
from feedsvc.web.forms import BLANK_FORM

RESCAN_SECONDS = 1.0
CACHED_PAGES = 256
_CSRF_PLACEHOLDER = "__FEEDSVC_CSRF_TOKEN__"
_DESCRIPTION_CHARS = 200


def own_post_path(settings: Settings) -> str | None:
    """The route of the posts' own URLs when they are on this service (e.g. `/{slug}/`), else None."""
    base, site, pattern = settings.web.base_url, settings.site.url, settings.posts.url_pattern
    if not pattern.startswith("{site_url}/") or not (site == base or site.startswith(f"{base}/")):
        return None
    return site[len(base):] + pattern.removeprefix("{site_url}")


class WebCopies:
    """The published posts as this app last scanned them, and the rendered pages."""

    def __init__(self, web: WebContext) -> None:
        self.web = web
        settings = web.settings
        # A cache file of its own: the scheduler's collection in the same process writes the other one.
        self._collection = Collection(settings, cache_path=settings.store.dir / "web-posts-cache.pickle")
        self._own_urls = own_post_path(settings) is not None
        self._scanned_at = float("-inf")
        self.posts: list[Post] = []  # published, newest first
        self.by_slug: dict[str, Post] = {}
        self.by_url: dict[str, Post] = {}
        self.by_id: dict[str, Post] = {}
        self._pages: OrderedDict[Hashable, str] = OrderedDict()  # least recently used first
        self._pages_lock = threading.Lock()  # pages are served from worker threads
        self.renders = 0  # pages rendered (not taken from the cache), for the tests

    def refresh(self) -> None:
        """Scan the posts folder again if the last scan is older than RESCAN_SECONDS (runs in a worker thread)."""
        now = time.monotonic()
        if now - self._scanned_at < RESCAN_SECONDS:
            return
        published = sorted(self._collection.scan().published(datetime.now(UTC)), key=reading_key)
        self.posts = published
        self.by_slug = {post.slug: post for post in published}
        self.by_url = {post.url: post for post in published}
        self.by_id = {post.id: post for post in published}
        self._scanned_at = now

    def copy_url(self, post: Post) -> str:
        return post.url if self._own_urls else self.web.url(f"/posts/{quote(post.slug)}/")

    def respond(self, request: Request, key: Hashable, template: str, values: Callable[[], dict[str, object]]) -> Response:
        """The page for `key`, rendered from `template` with `values()` unless cached, with this browser's
        form token; the site's feeds are part of every key (they are in every page's head). Called in a worker
        thread: a first rendering (an edition's posts) keeps the event loop free."""
        feeds = tuple(self.web.feeds.paths())
        full_key = (key, feeds)
        with self._pages_lock:
            page = self._pages.get(full_key)
            if page is not None:
                self._pages.move_to_end(full_key)
        if page is None:
            page = self.web.page(
                template,
                csrf_token=_CSRF_PLACEHOLDER,
                subscribe_url=self.web.url("/subscribe"),
                frequencies=FREQUENCIES,
                form=BLANK_FORM,
                **values(),
            )
            with self._pages_lock:
                self.renders += 1
                self._pages[full_key] = page
                if len(self._pages) > CACHED_PAGES:
                    self._pages.popitem(last=False)
        token, new_cookie = self.web.csrf.token(request)
        response = HTMLResponse(page.replace(_CSRF_PLACEHOLDER, token), headers=_copy_headers(self.web))
        self.web.csrf.set_cookie(response, new_cookie)
        return response


def _copy_headers(web: WebContext) -> dict[str, str]:
    # The posts' images live wherever the blog keeps them.
    headers = dict(web.page_headers)
    headers["content-security-policy"] = headers["content-security-policy"].replace(
        "img-src 'self' data:", "img-src 'self' data: https: http:"
    )
    return headers


def site_feed_links(web: WebContext) -> list[dict[str, str]]:
    return [
        {"type": feed.media_type, "title": f"{web.settings.site.title} ({feed.label})", "url": web.url(path)}
        for path in web.feeds.paths()
        if not path.startswith("/tags/") and (feed := BY_FILE_NAME.get(path.lstrip("/"))) is not None
    ]


def post_alternates(web: WebContext, post: Post) -> list[dict[str, str]]:
    """The `<link rel="alternate">`s of a post's page: the site's feeds, and its ActivityPub object when the blog
    is on the fediverse (so a post's address pasted into Mastodon's search finds the post)."""
    links = site_feed_links(web)
    if web.settings.fediverse.enabled:
        links.append({"type": ACTIVITY_JSON, "title": post.title, "url": Urls.of(web.settings).post(post.id)})
    return links


def _wants_activity(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return ACTIVITY_JSON in accept or "activitystreams" in accept


def _open_graph(web: WebContext, kind: str, title: str, url: str, description: str = "", image: str | None = None) -> list[tuple[str, str]]:
    tags = [("og:type", kind), ("og:site_name", web.settings.site.title), ("og:title", title), ("og:url", url)]
    tags.append(("og:locale", web.settings.site.language.replace("-", "_")))
    if description:
        tags.append(("og:description", description))
    if image:
        tags.append(("og:image", image))
    return tags


def _date_text(web: WebContext, moment: datetime) -> str:
    local = moment.astimezone(web.settings.site.tz)
    return format_date(local, format="long", locale=language_of(web.settings.site.language))


def _copies(request: Request) -> tuple[WebContext, WebCopies]:
    copies: WebCopies = request.app.state.web_copies
    return web_context(request), copies


async def _current(request: Request) -> tuple[WebContext, WebCopies]:
    web, copies = _copies(request)
    await run_in_threadpool(copies.refresh)
    return web, copies


async def _post_page(request: Request, web: WebContext, copies: WebCopies, post: Post) -> Response:
    if web.settings.fediverse.enabled and _wants_activity(request):
        # A fediverse server fetching the post's address gets its ActivityPub object instead of the page.
        return RedirectResponse(Urls.of(web.settings).post(post.id), status_code=303)
    fediverse = [("fediverse:creator", f"@{Urls.of(web.settings).account}")] if web.settings.fediverse.enabled else []

    def values() -> dict[str, object]:
        try:
            html = rendered(post)
        except SourceChanged:  # saved since the last scan: the next look at the posts (within a second) has it
            raise HTTPException(503, headers={"Retry-After": "1"}) from None
        description = plain_text(html.summary_html)
        if len(description) > _DESCRIPTION_CHARS:
            description = description[: _DESCRIPTION_CHARS - 1].rstrip() + "…"
        image = urljoin(post.url, post.image) if post.image else None
        og = _open_graph(web, "article", post.title, post.url, description, image)
        og.append(("article:published_time", post.date.isoformat()))
        return {
            "post": post,
            "content_html": Markup(focusable_tables(html.content_html)),
            "date_text": _date_text(web, post.date),
            "image_url": image,
            "canonical_url": post.url,
            "alternates": post_alternates(web, post),
            "open_graph": og,
            "meta_names": fediverse,
        }

    return await run_in_threadpool(copies.respond, request, ("post", post), "post", values)


async def post_copy(request: Request) -> Response:
    """`/posts/<slug>/`; a post whose own URL is on this service is sent there."""
    web, copies = await _current(request)
    post = copies.by_slug.get(request.path_params["slug"])
    if post is None:
        raise HTTPException(404)
    if copies.copy_url(post) == post.url:
        return RedirectResponse(post.url, status_code=301)
    return await _post_page(request, web, copies, post)


async def post_at_own_url(request: Request) -> Response:
    web, copies = await _current(request)
    post = copies.by_url.get(web.url(request.url.path))
    if post is None:
        raise HTTPException(404)
    return await _post_page(request, web, copies, post)


async def edition_copy(request: Request) -> Response:
    web, copies = await _current(request)
    edition = await run_in_threadpool(find_edition, web.settings, web.engine, request.path_params["edition"])
    if edition is None:
        raise HTTPException(404)
    posts = tuple(copies.by_id[post_id] for post_id in edition.post_ids if post_id in copies.by_id)
    url = web.url(edition_path(web.settings, edition))

    def values() -> dict[str, object]:
        return {
            "edition": edition,
            "date_text": _date_text(web, edition.period_end),
            "posts_html": posts_html(web.settings, posts) if posts else "",
            "canonical_url": url,
            "alternates": site_feed_links(web),
            "open_graph": _open_graph(web, "website", edition.subject, url),
        }

    return await run_in_threadpool(copies.respond, request, ("edition", edition, posts), "edition", values)


def _listed(web: WebContext, title: str, url: str, moment: datetime) -> dict[str, str]:
    return {"title": title, "url": url, "datetime": moment.isoformat(), "date_text": _date_text(web, moment)}


async def archive_index(request: Request) -> Response:
    web, copies = await _current(request)
    editions: Sequence[SentEdition] = await run_in_threadpool(archived_editions, web.engine)
    posts = tuple(copies.posts)
    url = web.url(ARCHIVE_PATH)

    def values() -> dict[str, object]:
        return {
            "posts": [_listed(web, post.title, copies.copy_url(post), post.date) for post in posts],
            "editions": [
                _listed(web, edition.subject, web.url(edition_path(web.settings, edition)), edition.period_end)
                for edition in editions
            ],
            "canonical_url": url,
            "alternates": site_feed_links(web),
            "open_graph": _open_graph(web, "website", web.translate("archive_title"), url, web.settings.site.description),
        }

    return await run_in_threadpool(copies.respond, request, ("index", posts, tuple(editions)), "archive", values)


def archive_routes(settings: Settings) -> list[BaseRoute]:
    """The web copies' routes (none when `[web] archive` is off); put after the other pages' routes."""
    if not settings.web.archive:
        return []
    routes: list[BaseRoute] = [
        Route("/posts/{slug}/", post_copy, methods=["GET"]),
        Route(ARCHIVE_PATH, archive_index, methods=["GET"]),
        Route(ARCHIVE_PATH + "{edition}/", edition_copy, methods=["GET"]),
    ]
    # The posts' images and files, when their URLs are on this service (as on the example) and `check` knows
    # their folder: Mounts before the posts' pattern, which could match their paths too.
    base = f"{settings.web.base_url}/"
    for prefix, url in settings.posts.asset_urls.items():
        folder = settings.posts.asset_dirs.get(prefix)
        if folder is not None and url.startswith(base) and folder.is_dir():
            routes.append(Mount("/" + url.removeprefix(base).strip("/"), StaticFiles(directory=folder)))
    own = own_post_path(settings)
    if own is not None:
        routes.append(Route(own, post_at_own_url, methods=["GET"]))
    return routes

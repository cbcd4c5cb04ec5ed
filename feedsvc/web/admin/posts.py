"""Posts: published, scheduled (with their time), drafts, and the problems `feedsvc check` reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from starlette.responses import Response
from starlette.routing import Route

from feedsvc.config import Settings
from feedsvc.posts import Collection, Post, Problem, is_published, lint
from feedsvc.web.admin.common import CACHE_SECONDS, PREFIX, Admin, MinuteCache, admin_page, now

_cache = MinuteCache()


@dataclass(frozen=True, slots=True)
class PostsView:
    published: list[Post]
    scheduled: list[Post]
    drafts: list[Post]
    problems: list[Problem]
    read_at: datetime


def read_posts(settings: Settings) -> PostsView:
    """The posts folder as `feedsvc check` sees it, sorted for the page."""
    moment = now()
    scan = Collection(settings).scan()
    problems = list(dict.fromkeys([*scan.problems, *lint(settings, scan)]))
    newest_first = sorted(scan.posts, key=lambda post: post.date, reverse=True)
    return PostsView(
        published=[post for post in newest_first if is_published(post, moment)],
        scheduled=sorted((post for post in scan.posts if not post.draft and post.date > moment), key=lambda p: p.date),
        drafts=[post for post in newest_first if post.draft],
        problems=problems,
        read_at=moment,
    )


@admin_page
async def posts_page(admin: Admin) -> Response:
    settings = admin.web.settings
    view = await admin.run(_cache.get, str(settings.posts.dir), lambda: read_posts(settings))
    return admin.render("posts", view=view, cache_seconds=CACHE_SECONDS, timezone=settings.site.timezone)


routes = [Route(f"{PREFIX}/posts", posts_page, methods=["GET"])]

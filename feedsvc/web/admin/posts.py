"""Posts: published, scheduled (with the time they go out and the editions they will join), drafts, and the
problems `feedsvc check` reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date
from starlette.responses import Response
from starlette.routing import Route

from feedsvc.cadences import edition_times
from feedsvc.config import Settings
from feedsvc.i18n import date_locale
from feedsvc.posts import Collection, Post, Problem, is_published
from feedsvc.posts.lint import lint
from feedsvc.web.admin.common import CACHE_SECONDS, PREFIX, Admin, MinuteCache, admin_page, now

_cache = MinuteCache()


@dataclass(frozen=True, slots=True)
class Scheduled:
    """A future post: when it goes out, and when the edition of each cadence that carries it does (in the site's
    timezone)."""

    post: Post
    goes_out: datetime
    editions: dict[str, datetime]


@dataclass(frozen=True, slots=True)
class PostsView:
    published: list[Post]
    scheduled: list[Scheduled]
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
        scheduled=[_scheduled(settings, post) for post in sorted(scan.posts, key=lambda p: p.date)
                   if not post.draft and post.date > moment],
        drafts=[post for post in newest_first if post.draft],
        problems=problems,
        read_at=moment,
    )


def _scheduled(settings: Settings, post: Post) -> Scheduled:
    zone = ZoneInfo(settings.site.timezone)
    editions = edition_times(settings, post.date)
    return Scheduled(post, post.date.astimezone(zone), {name: at.astimezone(zone) for name, at in editions.items()})


@admin_page
async def posts_page(admin: Admin) -> Response:
    settings = admin.web.settings
    view = await admin.run(_cache.get, str(settings.posts.dir), lambda: read_posts(settings))
    locale = date_locale(settings.site.language)
    return admin.render(
        "posts", view=view, cache_seconds=CACHE_SECONDS, timezone=settings.site.timezone,
        weekday=lambda moment: format_date(moment, "EEE", locale=locale),
    )


routes = [Route(f"{PREFIX}/posts", posts_page, methods=["GET"])]

"""Feed readers: the page, and the observer the feed server calls for each feed request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import Engine
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from feedsvc import feed_readers
from feedsvc.web.admin.common import PREFIX, Admin, admin_page, now


def feed_request_observer(engine: Engine, key: str) -> Callable[[Scope], None]:
    """For FeedsMiddleware: tallies each request; the tally is written in a worker thread once a minute."""
    tally = feed_readers.Tally(engine, key)
    writing: set[asyncio.Future[None]] = set()  # referenced until done

    def observe(scope: Scope) -> None:
        user_agent = next((value for name, value in scope["headers"] if name == b"user-agent"), b"")
        client = scope["client"][0] if scope.get("client") else ""
        if tally.observe(scope["path"], client, user_agent.decode("latin-1")[:512], now()):
            future = asyncio.get_running_loop().run_in_executor(None, tally.flush)
            writing.add(future)
            future.add_done_callback(writing.discard)

    return observe


@admin_page
async def readers_page(admin: Admin) -> Response:
    audiences = await admin.run(feed_readers.audiences, admin.web.engine, now())
    return admin.render(
        "readers", audiences=audiences, window_days=feed_readers.WINDOW_DAYS,
        flush_minutes=int(feed_readers.FLUSH_SECONDS // 60),
    )


routes = [Route(f"{PREFIX}/readers", readers_page, methods=["GET"])]

"""The blogger's dashboard under /admin/: server-rendered pages, no script, one module per group of pages."""

from __future__ import annotations

from starlette.routing import BaseRoute

from feedsvc.web.admin import audit, auth, editions, overview, posts, settings, subscribers


def admin_routes() -> list[BaseRoute]:
    return [
        *auth.routes, *overview.routes, *subscribers.routes, *editions.routes, *posts.routes, *settings.routes, *audit.routes,
    ]

"""The blogger's dashboard under /admin/: server-rendered pages, no script, one module per group of pages."""

from __future__ import annotations

from starlette.routing import BaseRoute

from feedsvc.web.admin import audit, auth, editions, imports, overview, posts, readers, settings, subscribers
from feedsvc.web.admin.imports import admin_body_limits
from feedsvc.web.admin.readers import feed_request_observer

__all__ = ["admin_body_limits", "admin_routes", "feed_request_observer"]


def admin_routes() -> list[BaseRoute]:
    return [
        *auth.routes, *overview.routes, *subscribers.routes, *imports.routes, *editions.routes, *posts.routes, *readers.routes, *settings.routes, *audit.routes,
    ]

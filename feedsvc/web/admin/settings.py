"""Settings: the effective configuration, secrets masked, with the source of each value (as `feedsvc config
show` prints it)."""

from __future__ import annotations

from itertools import groupby

from starlette.responses import Response
from starlette.routing import Route

from feedsvc.settings_view import origin, shown_settings
from feedsvc.web.admin.common import PREFIX, Admin, admin_page


@admin_page
async def settings_page(admin: Admin) -> Response:
    settings = admin.web.settings
    sections = [(name, list(rows)) for name, rows in groupby(shown_settings(settings), key=lambda row: row.section)]
    return admin.render("settings", sections=sections, origin=origin(settings))


routes = [Route(f"{PREFIX}/settings", settings_page, methods=["GET"])]

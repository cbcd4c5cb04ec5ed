"""The audit log: every admin action, newest first."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from feedsvc import admins
from feedsvc.web.admin.common import PREFIX, Admin, admin_page

PAGE_SIZE = 100


@admin_page
async def audit_page(admin: Admin) -> Response:
    raw = admin.field("before")
    if raw and not raw.isdigit():
        raise HTTPException(400, "before: not a position in this list")
    rows = await admin.run(admins.audit_page, admin.web.engine, before_id=int(raw) if raw else None, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return admin.render("audit", rows=rows, next_before=rows[-1].id if more else None)


routes = [Route(f"{PREFIX}/audit", audit_page, methods=["GET"])]

"""Sign-in and sign-out."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from feedsvc import admins
from feedsvc.web.admin.common import (
    PREFIX,
    SESSION_COOKIE,
    Admin,
    admin_page,
    client_ip,
    count_password_attempt,
    now,
)
from feedsvc.web.context import WebContext, web_context
from feedsvc.web.security import CSRF_FIELD


def _next_path(raw: object) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if isinstance(raw, str) and raw.startswith(f"{PREFIX}/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return f"{PREFIX}/"


def _form(web: WebContext, request: Request, *, status: int = 200, problem: str = "", username: str = "") -> Response:
    token, new_cookie = web.csrf.token(request)
    response = web.render(
        "admin/login", status=status, csrf_token=token, csrf_field=CSRF_FIELD, problem=problem, username=username,
        next_path=_next_path(request.query_params.get("next")), admin=None, admin_prefix=PREFIX,
    )
    web.csrf.set_cookie(response, new_cookie)
    return response


async def login_form(request: Request) -> Response:
    return _form(web_context(request), request)


async def login(request: Request) -> Response:
    web = web_context(request)
    form = await request.form(max_files=0, max_fields=10)
    if not web.csrf.valid(request, form.get(CSRF_FIELD)):
        raise HTTPException(403, web.translate("form_expired"))
    username, password = form.get("username"), form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        return _form(web, request, status=400, problem=web.translate("admin_give_credentials"))
    await count_password_attempt(web, request, username)
    code = form.get("code")
    opened = await run_in_threadpool(
        admins.sign_in, web.engine, username, password, code if isinstance(code, str) else "", now(),
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent", ""),
    )
    if opened is None:
        return _form(web, request, status=401, problem=web.translate("admin_wrong_credentials"), username=username)
    response = RedirectResponse(_next_path(form.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE, opened.cookie, httponly=True, samesite="strict", path=f"{PREFIX}/",
        secure=web.settings.web.base_url.startswith("https://"),
    )
    return response


@admin_page
async def logout(admin: Admin) -> Response:
    await admin.run(
        admins.end_session, admin.web.engine, admin.request.cookies.get(SESSION_COOKIE, ""), now(),
        ip=client_ip(admin.request),
    )
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=f"{PREFIX}/")
    return response


@admin_page
async def security_page(admin: Admin) -> Response:
    state = await admin.run(admins.second_factor, admin.web.engine, admin.session.username)
    secret = admins.new_totp_secret()
    return admin.render(
        "security", second_factor=state, secret=secret,
        uri=admins.totp_uri(secret, admin.session.username, admin.web.settings.site.title), codes=None,
    )


@admin_page
async def security(admin: Admin) -> Response:
    await admin.require_password()
    username, action = admin.session.username, admin.field("action")
    if action == "turn_on":
        codes = await admin.run(
            admins.turn_on_second_factor, admin.web.engine, username, admin.field("secret"), admin.field("code"), now()
        )
        if codes is None:
            raise HTTPException(400, "code: not the one the authenticator shows for this key; nothing was changed")
        await admin.audit("second_factor_on", username)
        state = await admin.run(admins.second_factor, admin.web.engine, username)
        return admin.render("security", second_factor=state, secret="", uri="", codes=codes)
    if action == "turn_off":
        await admin.run(admins.turn_off_second_factor, admin.web.engine, username)
        await admin.audit("second_factor_off", username)
        return admin.redirect(f"{PREFIX}/security", admin.web.translate("admin_note_second_factor_off"))
    raise HTTPException(400, "action: not one this page offers")


routes = [
    Route(f"{PREFIX}/security", security_page, methods=["GET"]),
    Route(f"{PREFIX}/security", security, methods=["POST"]),
    Route(f"{PREFIX}/login", login_form, methods=["GET"]),
    Route(f"{PREFIX}/login", login, methods=["POST"]),
    Route(f"{PREFIX}/logout", logout, methods=["POST"]),
]

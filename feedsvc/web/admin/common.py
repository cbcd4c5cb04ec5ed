"""What every dashboard page shares: the signed-in session (else a redirect to sign-in), the CSRF check of
every form, the audit log, rendering.

Only the session cookie opens these pages: the API's bearer token does not (a script's token in a browser
would bypass the CSRF defence), nor does being on a trusted network.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from feedsvc import admins
from feedsvc.store import rate_limits
from feedsvc.web.context import WebContext, web_context
from feedsvc.web.security import CSRF_FIELD, client_key

SESSION_COOKIE = "feedsvc_admin"
PREFIX = "/admin"
READS = ("GET", "HEAD")
CACHE_SECONDS = 60
REFRESH_SECONDS = 45
T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def sign_in_url(next_path: str = "") -> str:
    return f"{PREFIX}/login" + (f"?next={quote(next_path, safe='/')}" if next_path else "")


class MinuteCache:
    """Values that cost a scan (whole-list counts, the posts folder), kept per key for at most CACHE_SECONDS in
    this process; the pages say how old they are. From REFRESH_SECONDS on, a request still gets the kept value
    while a worker thread computes the next, so with steady use no request waits for the scan."""

    def __init__(self) -> None:
        self._entries: dict[object, tuple[float, Any]] = {}
        self._refreshing: set[object] = set()
        self._lock = threading.Lock()

    def get(self, key: object, compute: Callable[[], T]) -> T:
        """Runs in a worker thread."""
        with self._lock:
            cached = self._entries.get(key)
            age = time.monotonic() - cached[0] if cached else CACHE_SECONDS
            if cached and age < CACHE_SECONDS:
                if age >= REFRESH_SECONDS and key not in self._refreshing:
                    self._refreshing.add(key)
                    threading.Thread(target=self._refresh, args=(key, compute), daemon=True).start()
                return cached[1]
        return self._refresh(key, compute)

    def _refresh(self, key: object, compute: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            value = compute()
        finally:
            with self._lock:
                self._refreshing.discard(key)
        with self._lock:
            self._entries[key] = (started, value)
        return value


@dataclass
class Admin:
    """One request of a signed-in admin."""

    request: Request
    web: WebContext
    session: admins.Session
    form: FormData | None

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(function, *args, **kwargs)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name, default) if self.form is not None else self.request.query_params.get(name, default)
        return value if isinstance(value, str) else default

    async def audit(self, action: str, target: str = "", detail: str = "") -> None:
        await self.run(
            admins.audit, self.web.engine, self.session, action, now(), ip=client_ip(self.request), target=target,
            detail=detail,
        )

    async def require_password(self) -> None:
        """For erasures and bulk actions: the form must carry the admin's password again."""
        await count_password_attempt(self.web, self.request, self.session.username)
        if not await self.run(admins.password_matches, self.web.engine, self.session.username, self.field("password")):
            raise HTTPException(403, "the password is not right; nothing was changed")

    def render(self, template: str, *, status: int = 200, **values: object) -> HTMLResponse:
        return self.web.render(
            f"admin/{template}", status=status, admin=self.session, csrf_token=self.session.csrf_token,
            csrf_field=CSRF_FIELD, admin_prefix=PREFIX, path=self.request.url.path, **values,
        )

    def redirect(self, path: str, note: str = "") -> RedirectResponse:
        """After a POST: back to a page (303, so a reload does not repeat the action), with a note to show."""
        separator = "&" if "?" in path else "?"
        return RedirectResponse(f"{path}{separator}note={quote(note)}" if note else path, status_code=303)


Handler = Callable[[Admin], Awaitable[Response]]


def admin_page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint for a dashboard page: a live session, and for every form a matching CSRF token."""
    return _endpoint(handler, max_files=0)


def admin_upload(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """As `admin_page`, for a form that sends one file (its size bounded by the app's per-path body limit)."""
    return _endpoint(handler, max_files=1)


def _endpoint(handler: Handler, *, max_files: int) -> Callable[[Request], Awaitable[Response]]:
    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        web = web_context(request)
        session = await run_in_threadpool(admins.session, web.engine, request.cookies.get(SESSION_COOKIE, ""), now())
        if session is None:
            if request.method in READS:
                return RedirectResponse(sign_in_url(request.url.path), status_code=303)
            raise HTTPException(403, "sign in to the dashboard first")
        form = None
        if request.method not in READS:
            form = await request.form(max_files=max_files, max_fields=200)
            submitted = form.get(CSRF_FIELD)
            if not isinstance(submitted, str) or not hmac.compare_digest(submitted, session.csrf_token):
                raise HTTPException(403, "this form has expired or did not come from the dashboard; reload the page")
        return await handler(Admin(request, web, session, form))

    return endpoint


# Password attempts (sign-in, or the password asked again) per client and per account in a window.
SIGN_IN_WINDOW = timedelta(minutes=15)
SIGN_IN_ATTEMPTS_PER_CLIENT = 20
SIGN_IN_ATTEMPTS_PER_ACCOUNT = 10


def _wait_past_limits(web: WebContext, limits: list[tuple[str, int]], window: timedelta) -> float | None:
    """Count one hit on each (key, limit); the seconds to wait when this one is past a limit, else None."""
    moment = now()
    with web.engine.begin() as connection:
        decisions = [rate_limits.hit(connection, key, limit=limit, window=window, now=moment) for key, limit in limits]
    refused = [decision.retry_after for decision in decisions if not decision.allowed]
    return max(refused) if refused else None


async def throttle(web: WebContext, limits: list[tuple[str, int]], window: timedelta, too_many: str) -> None:
    """Count one hit on each (key, limit) in `window`; 429 with Retry-After past any of them."""
    wait = await run_in_threadpool(_wait_past_limits, web, limits, window)
    if wait is not None:
        seconds = int(wait) + 1
        raise HTTPException(429, f"{too_many}; try again in {seconds} s", headers={"retry-after": str(seconds)})


async def count_password_attempt(web: WebContext, request: Request, username: str) -> None:
    """Count one password attempt; 429 with Retry-After past either limit. Unknown accounts count like known
    ones, so the answer tells nothing about which exist."""
    limits = [
        (f"admin-sign-in:client:{client_key(request)}", SIGN_IN_ATTEMPTS_PER_CLIENT),
        (f"admin-sign-in:account:{username.lower()[:64]}", SIGN_IN_ATTEMPTS_PER_ACCOUNT),
    ]
    await throttle(web, limits, SIGN_IN_WINDOW, "too many sign-in attempts")

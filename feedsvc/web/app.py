"""The HTTP app: feeds, the subscriber pages, the admin API, /healthz and /metrics.

`create_app(settings)` opens the store and the mail transport itself, or takes those of the caller (the
service runs this app and the scheduler in one process and shares them); what it opened, it closes.
`app.state.web.feeds.refresh()` makes new feeds visible at once after a build; `app.state.health_checks`
maps names to checks reported by /healthz (others may add theirs: cheap reads of in-memory state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feedsvc import mail_events, subscriptions
from feedsvc.config import Settings
from feedsvc.fediverse import web as fediverse_web
from feedsvc.i18n import translator
from feedsvc.mail.transport import Transport, transport_from_settings
from feedsvc.metrics import CONTENT_TYPE, HTTP_REQUESTS, exposition
from feedsvc.store.engine import open_engine, ping
from feedsvc.store.engine import unavailable as store_unavailable
from feedsvc.templating import environment
from feedsvc.tokens import Tokens, load_secret
from feedsvc.web.admin import admin_body_limits, admin_routes, feed_request_observer
from feedsvc.web.api import IMPORT_PATH, api_routes
from feedsvc.web.archive import WebCopies, archive_routes
from feedsvc.web.context import WebContext, web_context
from feedsvc.web.feed_server import FeedFiles, FeedRoute, FeedsMiddleware
from feedsvc.web.forms import FIELD_LABELS, BadInput
from feedsvc.web.hooks import routes as hook_routes
from feedsvc.web.pages import routes as page_routes
from feedsvc.web.security import BodyLimit, Csrf, OperatorOnly

log = logging.getLogger(__name__)

# The words of an error page by status (keys of the "web" strings); any other status is a "bad_request".
ERROR_KEYS = {403: "form_expired", 404: "not_found", 413: "too_large", 429: "too_many"}
STORE_RETRY_AFTER = 10  # seconds: about SQLite's busy timeout, or a PostgreSQL restart
STORE_PROBE_SECONDS = 2.0  # how stale /healthz's view of the store may be


def _wants_json(request: Request) -> bool:
    return (
        request.url.path.startswith("/api/")
        or request.headers.get("content-type", "").startswith("application/json")
        or request.headers.get("accept", "").startswith("application/json")
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    web = web_context(request)
    headers = dict(exc.headers or {})
    if _wants_json(request):
        body: dict[str, str] = {"error": exc.detail}
        if isinstance(exc, BadInput):
            body["field"] = exc.field
        return JSONResponse(body, status_code=exc.status_code, headers=headers)
    status = exc.status_code
    default = web.translate(ERROR_KEYS[status]) if status in ERROR_KEYS else web.translate("bad_request")
    if isinstance(exc, BadInput):
        # In the page's language: which field, by the label the form shows.
        label = web.translate(exc.field) if exc.field in FIELD_LABELS else exc.field
        paragraphs = [web.translate("invalid_field", label=label, field=exc.field)]
    elif exc.detail in (default, None, "") or status in (404, 405):
        paragraphs = [default]
    else:
        paragraphs = [exc.detail]
    response = web.message(web.translate("error_title"), *paragraphs, status=status)
    response.headers.update(headers)
    return response


async def server_error(request: Request, exc: Exception) -> Response:
    # Starlette logs the exception with its traceback; the client learns nothing about it. The server drops
    # the connection after an unhandled error, so the client is told not to reuse it. A busy or unreachable
    # store is no bug: 503 and when to come back.
    web = web_context(request)
    busy = store_unavailable(exc)
    status, error = (503, "store busy or unreachable") if busy else (500, "internal error")
    if _wants_json(request):
        response: Response = JSONResponse({"error": error}, status_code=status)
    else:
        words = web.translate("store_busy") if busy else web.translate("server_error")
        response = web.message(web.translate("error_title"), words, status=status)
    response.headers["connection"] = "close"
    if busy:
        response.headers["retry-after"] = str(STORE_RETRY_AFTER)
    return response


class RequestMetrics:
    """Counts every answer by method, route (the endpoint's name: bounded, unlike paths) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._counters: dict[tuple[str, str, int], Any] = {}  # the labelled counters, looked up once each

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("endpoint"), "__name__", "unmatched")
            key = (scope["method"], route, status)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = HTTP_REQUESTS.labels(scope["method"], route, str(status))
            counter.inc()


class StoreHealth:
    """Whether the store answers, as last seen, for /healthz (which itself queries nothing, however often it is
    asked): a ping every STORE_PROBE_SECONDS while the app runs, and a lost connection seen by any query of this
    process counts at once."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reachable: bool | None = None  # None: not probed yet

    def __call__(self) -> bool:
        return bool(self.reachable)

    def probe(self) -> None:
        try:
            ping(self.engine)
        except Exception:
            if self.reachable is not False:  # once per outage, not every probe
                log.warning("health check: the store is not reachable", exc_info=True)
            self.reachable = False
        else:
            self.reachable = True

    def _on_error(self, context: ExceptionContext) -> None:
        if context.is_disconnect:
            self.reachable = False

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Probe now (the first answer of /healthz is already right), then in the background until the end."""
        event.listen(self.engine, "handle_error", self._on_error)
        await asyncio.to_thread(self.probe)

        async def keep_probing() -> None:
            while True:
                await asyncio.sleep(STORE_PROBE_SECONDS)
                await asyncio.to_thread(self.probe)

        task = asyncio.create_task(keep_probing(), name="store-health")
        try:
            yield
        finally:
            task.cancel()
            event.remove(self.engine, "handle_error", self._on_error)


async def healthz(request: Request) -> Response:
    # Each check reads state its component keeps up to date: cheap, so called on the event loop. The few
    # possible answers are made once each.
    checks: dict[str, Callable[[], bool]] = request.app.state.health_checks
    results = tuple((name, check()) for name, check in checks.items())
    answers: dict[tuple[tuple[str, bool], ...], Response] = request.app.state.health_answers
    answer = answers.get(results)
    if answer is None:
        healthy = all(ok for _, ok in results)
        answer = answers[results] = JSONResponse(
            {"status": "ok" if healthy else "failing", "checks": dict(results)},
            status_code=200 if healthy else 503,
            headers={"cache-control": "no-store"},
        )
    return answer


async def metrics(request: Request) -> Response:
    web = web_context(request)
    web.operator_only.require(request)
    try:
        counts = await run_in_threadpool(subscriptions.counts, web.engine)
        events = await run_in_threadpool(mail_events.counts, web.engine)
        followers = await run_in_threadpool(fediverse_web.follower_count, request) if request.app.state.fediverse else None
    except Exception:
        log.warning("metrics: subscriber counts unavailable", exc_info=True)
        counts, events, followers = {}, {}, None
    return Response(exposition(counts, events, followers), media_type=CONTENT_TYPE)


def create_app(settings: Settings, engine: Engine | None = None, transport: Transport | None = None) -> Starlette:
    owns_engine, owns_transport = engine is None, transport is None
    engine = engine or open_engine(settings.store.database_url)
    transport = transport or transport_from_settings(settings)
    secret = load_secret(settings.web.secret_key, settings.store.dir)
    tokens = Tokens(secret, settings.web.confirm_token_max_age)
    web = WebContext(
        settings=settings,
        engine=engine,
        transport=transport,
        tokens=tokens,
        feeds=FeedFiles(settings.feeds.output_dir, max_age=settings.web.feed_max_age),
        csrf=Csrf(secret, secure=settings.web.base_url.startswith("https://")),
        templates=environment(settings),
        translate=translator(settings.site.language, "web"),
        operator_only=OperatorOnly(settings.web.admin_token, settings.web.metrics_networks),
    )

    fediverse = fediverse_web.Fediverse(settings, engine) if settings.fediverse.enabled else None
    inbox_limits = dict.fromkeys(fediverse_web.INBOX_PATHS, settings.fediverse.max_body_bytes)
    store_health = StoreHealth(engine)
    feed_reads = feed_request_observer(engine, secret)
    feed_route = FeedRoute(web.feeds, observe=feed_reads.read)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with store_health.watching():
                yield
        finally:
            await feed_reads.close()
            if fediverse is not None:
                await fediverse.aclose()
            if owns_transport:
                await transport.aclose()
            if owns_engine:
                engine.dispose()

    app = Starlette(
        routes=[
            *page_routes,
            *api_routes(settings.web.admin_token),
            *hook_routes,
            *fediverse_web.routes(settings),
            *admin_routes(),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *archive_routes(settings),
        ],
        middleware=[
            # Feeds first: the hot path skips everything after it.
            Middleware(FeedsMiddleware, route=feed_route),
            Middleware(RequestMetrics),
            Middleware(
                BodyLimit, max_bytes=settings.web.max_body_bytes,
                overrides={IMPORT_PATH: settings.web.max_import_bytes, **admin_body_limits(settings), **inbox_limits},
            ),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.web = web
    app.state.feed_route = feed_route  # for the HTTP server's fast path (feedsvc.web.server)
    app.state.web_copies = WebCopies(web)
    app.state.fediverse = fediverse
    app.state.home_page = None  # rendered at its first request (feedsvc.web.pages.home)
    # name -> a check reading in-memory state (called on the event loop: it must not block)
    app.state.health_checks = {"store": store_health}
    app.state.health_answers = {}
    return app

"""The admin API under /api/, behind `Authorization: Bearer <web.admin_token>` (no token configured: no API).

Each endpoint's docstring carries its OpenAPI description (after `---`), served at /api/openapi.json.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.types import ASGIApp, Receive, Scope, Send

from feedsvc import __version__, subscribers
from feedsvc.subscribers import AddOutcome, Consent, ImportFileError, InvalidInput, Subscriber
from feedsvc.vocabulary import FREQUENCIES, STATUSES
from feedsvc.web.context import WebContext, web_context
from feedsvc.web.pages import BadInput, read_fields
from feedsvc.web.security import bearer_matches

IMPORT_PATH = "/api/subscribers/import"


class AdminAuth:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        if not bearer_matches(given, self._token):
            raise HTTPException(
                401,
                "a valid `Authorization: Bearer <web.admin_token>` header is required",
                headers={"WWW-Authenticate": 'Bearer realm="feedsvc admin"'},
            )
        await self.app(scope, receive, send)


def subscriber_json(subscriber: Subscriber) -> dict[str, Any]:
    values = {name: getattr(subscriber, name) for name in subscribers.EXPORT_COLUMNS}
    return {
        "id": subscriber.id,
        **{name: value.isoformat() if isinstance(value, datetime) else value for name, value in values.items()},
        "tags": list(subscriber.tags),
    }


def _operator_consent(request: Request, source: str) -> Consent:
    return Consent(
        at=datetime.now(UTC),
        source=source,
        ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise HTTPException(400, f"{name}: must be a whole number from {low} to {high}")
    return int(raw)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def _confirmations(web: WebContext, pending: list[Subscriber]) -> BackgroundTask | None:
    if not pending:
        return None
    return BackgroundTask(subscribers.send_confirmations, web.settings, web.engine, web.transport)


async def list_subscribers(request: Request) -> Response:
    """List or search subscribers, in the order they were added.
    ---
    parameters:
      - {name: status, in: query, schema: {type: string, enum: [pending, active, unsubscribed, bounced, complained]}}
      - {name: q, in: query, description: part of the address or the name, schema: {type: string}}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
      - {name: offset, in: query, schema: {type: integer, minimum: 0, default: 0}}
    responses:
      200: {description: "{total, items: [subscriber]}"}
      400: {description: a parameter is not valid}
    """
    web = web_context(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise HTTPException(400, f"status: must be one of {', '.join(STATUSES)}")
    query = request.query_params.get("q") or None
    if query is not None and len(query) > 320:
        raise HTTPException(400, "q: at most 320 characters")
    limit = _int_param(request, "limit", 100, 1, 1000)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    total, items = await run_in_threadpool(
        lambda: subscribers.search(web.engine, status=status, query=query, limit=limit, offset=offset)
    )
    return JSONResponse({"total": total, "items": [subscriber_json(s) for s in items]})


async def add_subscriber(request: Request) -> Response:
    """Add an address. `confirmed: true` when you hold the person's consent (else a confirmation mail goes out).
    ---
    requestBody:
      content:
        application/json:
          schema:
            type: object
            required: [email]
            properties:
              email: {type: string}
              name: {type: string}
              frequency: {type: string, enum: [FREQUENCIES]}
              tags: {type: array, items: {type: string}}
              confirmed: {type: boolean}
    responses:
      201: {description: "added: {outcome, subscriber}"}
      200: {description: "already there (outcome exists) or activated"}
      400: {description: a field is not valid}
      409: {description: "the address unsubscribed, bounced or complained: not resubscribed"}
    """
    web = web_context(request)
    fields, _ = await read_fields(request)
    confirmed = fields.get("confirmed", False)
    if not isinstance(confirmed, bool):
        raise HTTPException(400, "confirmed: must be true or false")
    try:
        subscription = subscribers.subscription_request(
            fields.get("email"), fields.get("name"), fields.get("frequency"), fields.get("tags")
        )
    except InvalidInput as exc:
        raise BadInput(exc) from None
    consent = _operator_consent(request, "operator-api")
    result = await run_in_threadpool(
        lambda: subscribers.add(web.engine, subscription, confirmed=confirmed, consent=consent)
    )
    status = {AddOutcome.ADDED: 201, AddOutcome.SUPPRESSED: 409}.get(result.outcome, 200)
    return JSONResponse(
        {"outcome": result.outcome.value, "subscriber": subscriber_json(result.subscriber)},
        status_code=status,
        background=_confirmations(web, [result.subscriber] if result.needs_confirmation else []),
    )


async def _subscriber_or_404(request: Request) -> Subscriber:
    subscriber = await run_in_threadpool(subscribers.get, web_context(request).engine, request.path_params["id"])
    if subscriber is None:
        raise HTTPException(404, "no such subscriber")
    return subscriber


async def get_subscriber(request: Request) -> Response:
    """One subscriber.
    ---
    responses:
      200: {description: the subscriber}
      404: {description: no such subscriber}
    """
    return JSONResponse(subscriber_json(await _subscriber_or_404(request)))


async def remove_subscriber(request: Request) -> Response:
    """Unsubscribe (kept as a suppression), or with `forget=true` erase the address entirely.
    ---
    parameters:
      - {name: forget, in: query, schema: {type: boolean, default: false}}
    responses:
      200: {description: the subscriber as it now is (or was, when forgotten)}
      404: {description: no such subscriber}
    """
    web = web_context(request)
    subscriber = await _subscriber_or_404(request)
    removed = await run_in_threadpool(
        lambda: subscribers.remove(web.engine, subscriber.email, datetime.now(UTC), forget=_flag(request, "forget"))
    )
    if removed is None:
        raise HTTPException(404, "no such subscriber")
    return JSONResponse(subscriber_json(removed))


async def counts(request: Request) -> Response:
    """Number of subscribers by status.
    ---
    responses:
      200: {description: "{pending, active, unsubscribed, bounced, complained}"}
    """
    web = web_context(request)
    return JSONResponse(await run_in_threadpool(subscribers.counts, web.engine))


async def import_subscribers(request: Request) -> Response:
    """Import a CSV (header row with at least `email`; also name, frequency, tags, status). Bad rows are
    reported by line and skipped; unsubscribed/bounced addresses are never resubscribed.
    ---
    parameters:
      - {name: confirmed, in: query, description: you hold these people's consent (else they get a confirmation mail), schema: {type: boolean, default: false}}
    requestBody:
      content:
        text/csv: {schema: {type: string}}
    responses:
      200: {description: "{added, activated, existing, suppressed, problems: [{line, reason}]}"}
      400: {description: the file cannot be read as a whole}
    """
    web = web_context(request)
    confirmed = _flag(request, "confirmed")
    data = await request.body()
    consent = _operator_consent(request, "operator-import")
    try:
        report = await run_in_threadpool(
            lambda: subscribers.import_csv(web.engine, data, confirmed=confirmed, consent=consent)
        )
    except ImportFileError as exc:
        raise HTTPException(400, str(exc)) from None
    return JSONResponse(report.summary(), background=_confirmations(web, report.to_confirm))


async def export_subscribers(request: Request) -> Response:
    """Every subscriber as CSV, suppressions included.
    ---
    responses:
      200: {description: CSV with a header row, content: {text/csv: {schema: {type: string}}}}
    """
    web = web_context(request)
    buffer = io.StringIO()
    await run_in_threadpool(subscribers.export_csv, web.engine, buffer)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="subscribers.csv"', "cache-control": "no-store"},
    )


_api_routes = [
    Route("/subscribers", list_subscribers, methods=["GET"]),
    Route("/subscribers", add_subscriber, methods=["POST"]),
    Route("/subscribers/counts", counts, methods=["GET"]),
    Route("/subscribers/export", export_subscribers, methods=["GET"]),
    Route("/subscribers/import", import_subscribers, methods=["POST"]),
    Route("/subscribers/{id:int}", get_subscriber, methods=["GET"]),
    Route("/subscribers/{id:int}", remove_subscriber, methods=["DELETE"]),
]


# The cadences the API accepts are the registry's (the description is YAML in the docstring).
add_subscriber.__doc__ = (add_subscriber.__doc__ or "").replace("[FREQUENCIES]", f"[{', '.join(FREQUENCIES)}]")


def api_routes(admin_token: str) -> list[BaseRoute]:
    """The /api routes; none at all (so 404) when no admin token is configured."""
    if not admin_token:
        return []
    mount = Mount("/api", routes=_api_routes, middleware=[Middleware(AdminAuth, token=admin_token)])
    schema = SchemaGenerator(
        {
            "openapi": "3.0.3",
            "info": {"title": "feedsvc admin API", "version": __version__},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        }
    ).get_schema([mount])

    async def openapi(request: Request) -> Response:
        web_context(request).operator_only.require(request)
        return JSONResponse(schema)

    return [Route("/api/openapi.json", openapi, methods=["GET"]), mount]

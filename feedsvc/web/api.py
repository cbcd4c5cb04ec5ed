"""The admin API under /api/, behind `Authorization: Bearer <web.admin_token>` (no token configured: no API).

Every endpoint reads its path, query and body through a declared pydantic model and answers with one; the
OpenAPI document at /api/openapi.json is generated from the same table of operations and models that makes
the routes, so that what it says is what the server does.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, create_model
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from feedsvc import __version__, subscriptions
from feedsvc.subscriptions import AddOutcome, Consent, ImportFileError, ImportReport, Subscriber
from feedsvc.vocabulary import STATUSES
from feedsvc.web import forms
from feedsvc.web.context import Handler, WebContext, route, web_context
from feedsvc.web.forms import Flag, Id, Offset, PageSize, SearchText, Status
from feedsvc.web.pages import SubscribeFields
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


# --- what the endpoints read ----------------------------------------------------------------------------------


class ListQuery(BaseModel):
    status: Status | None = None
    q: SearchText = ""
    limit: PageSize = 100
    offset: Offset = 0


class SubscriberPath(BaseModel):
    id: Id


class RemoveQuery(BaseModel):
    forget: Flag = False


class ImportQuery(BaseModel):
    confirmed: Flag = False


class AdminSubscription(SubscribeFields):
    """An address added on the operator's word; `confirmed`: the operator holds the person's consent."""

    confirmed: StrictBool = False


# --- what they answer ------------------------------------------------------------------------------------------


class SubscriberJson(BaseModel):
    id: int
    email: str
    name: str
    status: Status
    frequency: str
    tags: list[str]
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None
    status_reason: str
    consent_at: datetime | None
    consent_ip: str
    consent_user_agent: str
    consent_source: str


class AddedJson(BaseModel):
    outcome: AddOutcome
    subscriber: SubscriberJson


class ListJson(BaseModel):
    total: int
    items: list[SubscriberJson]


CountsJson = create_model("CountsJson", **dict.fromkeys(STATUSES, (int, ...)))  # type: ignore[call-overload]


class ImportProblem(BaseModel):
    line: int
    reason: str


class ImportJson(BaseModel):
    """`ImportReport.summary()`."""

    imported: int
    pending: int
    updated: int
    skipped: int
    refused: list[ImportProblem]


class ErrorJson(BaseModel):
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False})
    error: str
    field: str = ""


def subscriber_json(subscriber: Subscriber) -> dict[str, Any]:
    return SubscriberJson.model_validate(subscriber, from_attributes=True).model_dump(mode="json")


def _json(model: type[BaseModel], value: dict[str, Any], **options: Any) -> JSONResponse:
    """`value` as `model` says (checked, so the answer never strays from the API description)."""
    return JSONResponse(model.model_validate(value).model_dump(mode="json"), **options)


def operator_consent(request: Request, source: str) -> Consent:
    return Consent(
        at=datetime.now(UTC),
        source=source,
        ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )


def confirmations_task(web: WebContext, due: bool) -> BackgroundTask | None:
    if not due:
        return None
    return BackgroundTask(subscriptions.send_confirmations, web.settings, web.engine, web.transport)


# --- the endpoints ---------------------------------------------------------------------------------------------


async def list_subscribers(request: Request) -> Response:
    web = web_context(request)
    params = forms.query(ListQuery, request)
    total, items = await run_in_threadpool(
        lambda: subscriptions.search(
            web.engine, status=params.status, query=params.q or None, limit=params.limit, offset=params.offset
        )
    )
    return _json(ListJson, {"total": total, "items": [subscriber_json(s) for s in items]})


async def add_subscriber(request: Request) -> Response:
    web = web_context(request)
    if forms.media_type(request) != forms.JSON_TYPE:
        raise HTTPException(415, "send application/json")
    fields = forms.parse_json_object(await request.body())
    added = forms.validated(AdminSubscription, fields)
    consent = operator_consent(request, "operator-api")
    result = await run_in_threadpool(
        lambda: subscriptions.add(web.engine, added.request(), confirmed=added.confirmed, consent=consent)
    )
    status = {AddOutcome.ADDED: 201, AddOutcome.SUPPRESSED: 409}.get(result.outcome, 200)
    return _json(
        AddedJson,
        {"outcome": result.outcome, "subscriber": subscriber_json(result.subscriber)},
        status_code=status,
        background=confirmations_task(web, result.needs_confirmation),
    )


async def _subscriber_or_404(request: Request) -> Subscriber:
    subscriber_id = forms.path(SubscriberPath, request).id
    subscriber = await run_in_threadpool(subscriptions.get, web_context(request).engine, subscriber_id)
    if subscriber is None:
        raise HTTPException(404, "no such subscriber")
    return subscriber


async def get_subscriber(request: Request) -> Response:
    return _json(SubscriberJson, subscriber_json(await _subscriber_or_404(request)))


async def remove_subscriber(request: Request) -> Response:
    web = web_context(request)
    forget = forms.query(RemoveQuery, request).forget
    subscriber = await _subscriber_or_404(request)
    removed = await run_in_threadpool(
        lambda: subscriptions.remove(web.engine, subscriber.email, datetime.now(UTC), forget=forget)
    )
    if removed is None:
        raise HTTPException(404, "no such subscriber")
    return _json(SubscriberJson, subscriber_json(removed))


async def counts(request: Request) -> Response:
    web = web_context(request)
    return _json(CountsJson, await run_in_threadpool(subscriptions.counts, web.engine))


async def import_subscribers(request: Request) -> Response:
    web = web_context(request)
    confirmed = forms.query(ImportQuery, request).confirmed
    data = await request.body()
    if not data:
        return _json(ImportJson, ImportReport().summary())  # an empty file imports nothing
    consent = operator_consent(request, "operator-import")
    try:
        report = await run_in_threadpool(
            lambda: subscriptions.import_csv(web.engine, data, confirmed=confirmed, consent=consent)
        )
    except ImportFileError as exc:
        raise HTTPException(400, str(exc)) from None
    return _json(ImportJson, report.summary(), background=confirmations_task(web, report.pending > 0))


async def export_subscribers(request: Request) -> Response:
    web = web_context(request)
    buffer = io.StringIO()
    await run_in_threadpool(subscriptions.export_csv, web.engine, buffer)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="subscribers.csv"', "cache-control": "no-store"},
    )


# --- the table of operations: routes and the API description ---------------------------------------------------

CSV = ("text/csv", {"type": "string"})
CSV_IMPORT = ("text/csv", {"type": "string", "pattern": forms.CSV_PATTERN})
Raw = tuple[str, dict[str, Any]]  # a body as it is: media type and schema
_ERRORS = {
    400: "a parameter or a field is not valid (the answer names it)",
    401: "no valid `Authorization: Bearer <web.admin_token>` header",
    404: "no such subscriber",
    409: "the address unsubscribed, bounced or complained: not resubscribed",
    413: "the request body is too large",
    415: "the body is not of the media type this operation reads",
    503: "the store is busy or unreachable: try again after `Retry-After` seconds",
}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # under /api
    handler: Handler
    summary: str
    answers: dict[int, tuple[str, type[BaseModel] | Raw]]  # success statuses: description, what they carry
    errors: tuple[int, ...] = (400,)
    path_model: type[BaseModel] | None = None
    query_model: type[BaseModel] | None = None
    body: type[BaseModel] | Raw | None = None  # a model read from JSON, or a body read as it is
    description: str = ""
    headers: dict[str, Any] = field(default_factory=dict)


OPERATIONS = [
    Operation(
        "get", "/subscribers", list_subscribers, "List or search subscribers, in the order they were added",
        {200: ("this page of the subscribers that match, and how many match in all", ListJson)},
        query_model=ListQuery,
        description="`q`: part of the address or the name, any case.",
    ),
    Operation(
        "post", "/subscribers", add_subscriber, "Add an address",
        {
            201: ("added (a confirmation mail goes out unless `confirmed`)", AddedJson),
            200: ("already there (outcome `exists`) or activated", AddedJson),
            409: (_ERRORS[409], AddedJson),
        },
        errors=(400, 413, 415),
        body=AdminSubscription,
        description="`confirmed: true` when you hold the person's consent; else they get a confirmation mail.",
    ),
    Operation(
        "get", "/subscribers/counts", counts, "Number of subscribers by status",
        {200: ("subscribers by status", CountsJson)}, errors=(),
    ),
    Operation(
        "get", "/subscribers/export", export_subscribers, "Every subscriber as CSV, suppressions included",
        {200: ("CSV with a header row", CSV)}, errors=(),
    ),
    Operation(
        "post", "/subscribers/import", import_subscribers, "Import a CSV",
        {200: ("what was imported; bad rows by line", ImportJson)},
        errors=(400, 413),
        query_model=ImportQuery,
        body=CSV_IMPORT,
        description=(
            "A header row with at least `email` (also name, frequency, tags, status and the other columns of the "
            "export, which restores its list). Bad rows are refused by line and skipped; unsubscribed or bounced "
            "addresses are never resubscribed. `confirmed`: you hold the consent of the people on rows without a "
            "status (else they get a confirmation mail). No body or an empty one imports nothing; a file that "
            "cannot be read as a whole (no `email` column, a column named twice, a header that is not CSV, not "
            "UTF-8) is refused with 400 and nothing of it is imported; a quote never closed is refused at its line "
            "with nothing after it imported."
        ),
    ),
    Operation(
        "get", "/subscribers/{id}", get_subscriber, "One subscriber",
        {200: ("the subscriber", SubscriberJson)}, errors=(400, 404), path_model=SubscriberPath,
    ),
    Operation(
        "delete", "/subscribers/{id}", remove_subscriber, "Unsubscribe, or with `forget=true` erase the address",
        {200: ("the subscriber as it now is (or was, when forgotten)", SubscriberJson)},
        errors=(400, 404), path_model=SubscriberPath, query_model=RemoveQuery,
        description="Unsubscribed, the address is kept as a suppression; forgotten, it is gone for good.",
    ),
]
# The path as the router matches it: ids are ASCII digits (bounds and all else: the path model).
_ROUTE_PATHS = {"/subscribers/{id}": "/subscribers/{id:int}"}


def _schema_of(model: type[BaseModel], definitions: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions.update(schema.pop("$defs", {}))
    definitions[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _parameters(model: type[BaseModel], where: str) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        # An optional parameter is left out, never sent as null.
        prop = next((p for p in prop.get("anyOf", ()) if p.get("type") != "null"), prop) | (
            {"default": prop["default"]} if prop.get("default") is not None else {}
        )
        prop.pop("title", None)
        parameters.append({"name": name, "in": where, "required": where == "path" or name in required, "schema": prop})
    return parameters


def _content(answer: type[BaseModel] | Raw, definitions: dict[str, Any]) -> dict[str, Any]:
    if isinstance(answer, tuple):
        media, schema = answer
        return {media: {"schema": schema}}
    return {"application/json": {"schema": _schema_of(answer, definitions)}}


def openapi_document() -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        parameters = []
        if operation.path_model:
            parameters += _parameters(operation.path_model, "path")
        if operation.query_model:
            parameters += _parameters(operation.query_model, "query")
        responses: dict[str, Any] = {
            str(status): {"description": description, "content": _content(answer, definitions)}
            for status, answer_description in operation.answers.items()
            for description, answer in [answer_description]
        }
        for status in (*operation.errors, 401, 503):
            responses[str(status)] = {"description": _ERRORS[status], "content": _content(ErrorJson, definitions)}
        responses["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        responses["503"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        entry: dict[str, Any] = {
            "operationId": operation.handler.__name__,
            "summary": operation.summary,
            "parameters": parameters,
            "responses": responses,
        }
        if operation.description:
            entry["description"] = operation.description
        if operation.body is not None:
            # A JSON body is required; a raw one may be left out (an empty CSV imports nothing).
            required = not isinstance(operation.body, tuple)
            entry["requestBody"] = {"required": required, "content": _content(operation.body, definitions)}
        paths.setdefault(f"/api{operation.path}", {})[operation.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "feedsvc admin API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": definitions,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _routes() -> list[BaseRoute]:
    handlers: dict[str, dict[str, Handler]] = {}
    for operation in OPERATIONS:
        path = _ROUTE_PATHS.get(operation.path, operation.path)
        handlers.setdefault(path, {})[operation.method] = operation.handler
    return [route(path, **by_method) for path, by_method in handlers.items()]


def api_routes(admin_token: str) -> list[BaseRoute]:
    """The /api routes; none at all (so 404) when no admin token is configured."""
    if not admin_token:
        return []
    mount = Mount("/api", routes=_routes(), middleware=[Middleware(AdminAuth, token=admin_token)])
    document = openapi_document()

    async def openapi(request: Request) -> Response:
        web_context(request).operator_only.require(request)
        return JSONResponse(document)

    return [Route("/api/openapi.json", openapi, methods=["GET"]), mount]

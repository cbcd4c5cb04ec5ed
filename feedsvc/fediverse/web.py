"""The fediverse's HTTP routes: WebFinger, NodeInfo, the actor, its inboxes, outbox and collections, the posts.

`routes(settings)` is empty when `[fediverse] enabled` is off. `Fediverse` (on `app.state.fediverse`) holds the
key pair, the HTTP client for actor fetches and `wake`, which the service points at its delivery loop so that an
Accept goes out at once.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedsvc import __version__
from feedsvc.config import Settings
from feedsvc.fediverse import keys, network, objects
from feedsvc.fediverse.inbox import Inbox
from feedsvc.fediverse.objects import ACTIVITY_JSON, Urls
from feedsvc.store import fediverse as store

JRD_JSON = "application/jrd+json"


class Fediverse:
    def __init__(self, settings: Settings, engine) -> None:
        self.settings = settings
        self.engine = engine
        self.urls = Urls.of(settings)
        self.keys = keys.load_or_create(settings.store.dir)
        self._http: httpx.AsyncClient | None = None
        self._inbox: Inbox | None = None
        self.wake: Callable[[], None] = lambda: None

    @property
    def inbox(self) -> Inbox:
        if self._inbox is None:
            self._http = network.client(self.settings, connections=16)
            self._inbox = Inbox(self.settings, self.engine, network.Actors(self.settings, self.keys, self._http))
        return self._inbox

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def follower_count(request: Request) -> int:
    with _fediverse(request).engine.connect() as connection:
        return store.follower_count(connection)


def _fediverse(request: Request) -> Fediverse:
    return request.app.state.fediverse


def activity_json(document: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(document, ensure_ascii=False), status_code=status, media_type=ACTIVITY_JSON,
                    headers={"access-control-allow-origin": "*"})


def _in_thread(request: Request, operation, *args):
    def run():
        with _fediverse(request).engine.connect() as connection:
            return operation(connection, *args)

    return asyncio.to_thread(run)


async def webfinger(request: Request) -> Response:
    fediverse = _fediverse(request)
    urls = fediverse.urls
    resource = request.query_params.get("resource", "")
    if not resource:
        return JSONResponse({"error": "the resource parameter is missing"}, status_code=400)
    if resource.removeprefix("acct:").lower() != urls.account.lower() and resource != urls.actor:
        return JSONResponse({"error": f"no such account here: {resource}"}, status_code=404)
    document = objects.webfinger(urls, fediverse.settings.site.url)
    return Response(json.dumps(document), media_type=JRD_JSON, headers={"access-control-allow-origin": "*"})


async def nodeinfo_links(request: Request) -> Response:
    base = _fediverse(request).urls.base
    return JSONResponse({"links": [{"rel": "http://nodeinfo.diaspora.software/ns/schema/2.1", "href": f"{base}/nodeinfo/2.1"}]})


async def nodeinfo(request: Request) -> Response:
    total, _ = await _in_thread(request, lambda connection: store.live_objects(connection, offset=0, limit=0))
    return JSONResponse(objects.nodeinfo(__version__, total),
                        media_type='application/json; profile="http://nodeinfo.diaspora.software/ns/schema/2.1#"')


async def actor(request: Request) -> Response:
    fediverse = _fediverse(request)
    return activity_json(objects.actor(fediverse.settings, fediverse.urls, fediverse.keys.public_pem))


async def inbox(request: Request) -> Response:
    fediverse = _fediverse(request)
    body = await request.body()  # at most [fediverse] max_body_bytes: BodyLimit answers 413 past it (INBOX_PATHS)
    client = request.client.host if request.client else "unknown"
    if await asyncio.to_thread(fediverse.inbox.rate_limited, client, datetime.now(UTC)):
        return JSONResponse({"error": "too many requests from this host; try again in a minute"}, status_code=429,
                            headers={"retry-after": "60"})
    # What the sender signed: the public URL it posted to, whatever proxy is in front.
    url = fediverse.urls.base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    answer = await fediverse.inbox.receive(request.method, url, dict(request.headers), body)
    if answer.queued:
        fediverse.wake()
    return JSONResponse({"status" if answer.status < 400 else "error": answer.message}, status_code=answer.status)


async def outbox(request: Request) -> Response:
    fediverse = _fediverse(request)
    urls = fediverse.urls
    size = fediverse.settings.fediverse.outbox_page_size
    page_param = request.query_params.get("page")
    if page_param is None:
        total, _ = await _in_thread(request, lambda connection: store.live_objects(connection, offset=0, limit=0))
        return activity_json({"@context": objects.CONTEXT, "id": urls.outbox, "type": "OrderedCollection",
                              "totalItems": total, "first": f"{urls.outbox}?page=1",
                              "last": f"{urls.outbox}?page={max(1, math.ceil(total / size))}"})
    if not page_param.isdigit() or int(page_param) < 1:
        return JSONResponse({"error": "page must be a number from 1"}, status_code=400)
    page = int(page_param)
    total, items = await _in_thread(request, lambda connection: store.live_objects(connection, offset=(page - 1) * size, limit=size))
    document: dict[str, Any] = {
        "@context": objects.CONTEXT, "id": f"{urls.outbox}?page={page}", "type": "OrderedCollectionPage",
        "partOf": urls.outbox, "totalItems": total,
        "orderedItems": [
            objects.activity("Create", urls, item.object, activity_id=f"{item.object['id']}#create") for item in items
        ],
    }
    if page * size < total:
        document["next"] = f"{urls.outbox}?page={page + 1}"
    if page > 1:
        document["prev"] = f"{urls.outbox}?page={page - 1}"
    return activity_json(document)


async def followers(request: Request) -> Response:
    urls = _fediverse(request).urls
    count = await _in_thread(request, store.follower_count)
    # The count only: who follows is the followers' business.
    return activity_json({"@context": objects.CONTEXT, "id": urls.followers, "type": "OrderedCollection", "totalItems": count})


async def following(request: Request) -> Response:
    urls = _fediverse(request).urls
    return activity_json({"@context": objects.CONTEXT, "id": urls.following, "type": "OrderedCollection", "totalItems": 0,
                          "orderedItems": []})


async def post(request: Request) -> Response:
    post_id = unquote(request.path_params["post_id"])
    item = await _in_thread(request, store.published, post_id)
    if item is None:
        return JSONResponse({"error": "no such post"}, status_code=404)
    if item.deleted_at is not None:
        return activity_json(objects.with_context(objects.tombstone(_fediverse(request).urls, post_id, item.deleted_at)), 410)
    return activity_json(objects.with_context(item.object))


INBOX_PATHS = ("/fediverse/actor/inbox", "/fediverse/inbox")


def routes(settings: Settings) -> list[Route]:
    if not settings.fediverse.enabled:
        return []
    return [
        Route("/.well-known/webfinger", webfinger, methods=["GET"]),
        Route("/.well-known/nodeinfo", nodeinfo_links, methods=["GET"]),
        Route("/nodeinfo/2.1", nodeinfo, methods=["GET"]),
        Route("/fediverse/actor", actor, methods=["GET"]),
        *(Route(path, inbox, methods=["POST"]) for path in INBOX_PATHS),
        Route("/fediverse/actor/outbox", outbox, methods=["GET"]),
        Route("/fediverse/actor/followers", followers, methods=["GET"]),
        Route("/fediverse/actor/following", following, methods=["GET"]),
        Route("/fediverse/posts/{post_id:path}", post, methods=["GET"]),
    ]

"""What an incoming activity does. The web route hands over the request; this checks it and acts.

Order of checks, cheapest first, so bad input changes nothing and costs little: size, rate per host, JSON,
blocklist, the actor URL's address, the signature (against the actor's key, fetched and cached), the key's owner
being the activity's actor. Then: Follow -> follower stored and an Accept queued; Undo{Follow} and Delete of the
actor -> follower removed; anything else -> accepted and ignored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urldefrag, urlsplit

from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.fediverse import objects
from feedsvc.fediverse.network import Actors, FetchFailed, RefusedAddress, check_address, inboxes_of
from feedsvc.fediverse.objects import Urls
from feedsvc.fediverse.signatures import KeyGone, SignatureError, key_id_of, verify
from feedsvc.logging import fields
from feedsvc.store import fediverse as store
from feedsvc.store import rate_limits

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    message: str
    queued: bool = False  # an activity (an Accept) was queued: the delivery loop should wake


def _id_of(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


class Inbox:
    def __init__(self, settings: Settings, engine: Engine, actors: Actors) -> None:
        self.settings = settings
        self.engine = engine
        self.actors = actors
        self.urls = Urls.of(settings)

    def rate_limited(self, client_host: str, now: datetime) -> bool:
        with self.engine.begin() as connection:
            decision = rate_limits.hit(
                connection, f"fediverse-inbox:{client_host}", limit=self.settings.fediverse.inbox_rate_limit,
                window=timedelta(minutes=1), now=now,
            )
        return not decision.allowed

    async def receive(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """`url`: the full public URL the sender posted to (what it signed)."""
        fediverse = self.settings.fediverse
        try:
            activity = json.loads(body)
        except ValueError:
            return Answer(400, "the body is not JSON")
        if not isinstance(activity, dict) or not isinstance(activity.get("type"), str):
            return Answer(400, "the body is not an ActivityPub activity (no type)")
        actor = _id_of(activity.get("actor"))
        if not actor:
            return Answer(400, "the activity names no actor")
        host = urlsplit(actor).hostname or ""
        if await self._blocked(actor, host):
            return Answer(403, f"{actor} is blocked")
        try:
            await check_address(actor, allow_private=fediverse.allow_private_addresses)
        except RefusedAddress as exc:
            return Answer(400, f"the actor URL is refused: {exc}")
        owners: dict[str, str] = {}

        async def fetch_key(key_id: str, fresh: bool) -> str:
            owners[key_id], pem = await self.actors.public_key(key_id, fresh)
            return pem

        try:
            verified = await verify(method, url, headers, body, fetch_key, max_age=fediverse.signature_max_age)
        except SignatureError as exc:
            if isinstance(exc, KeyGone) and self._gone_actor_deletes_itself(activity, actor, key_id_of(headers)):
                return await self._remove(actor, "deleted itself")
            log.info("fediverse.inbox_refused", extra=fields(actor=actor, reason=str(exc)))
            return Answer(401, f"signature refused: {exc}")
        if urldefrag(owners[verified.key_id]).url != actor:
            return Answer(401, f"the key {verified.key_id} belongs to {owners[verified.key_id]}, not to the actor {actor}")
        return await self._act(activity, actor, host)

    async def _blocked(self, actor: str, host: str) -> bool:
        def check() -> bool:
            with self.engine.connect() as connection:
                return store.is_blocked(connection, actor, host)

        return await asyncio.to_thread(check)

    def _gone_actor_deletes_itself(self, activity: dict[str, Any], actor: str, key_id: str) -> bool:
        # A deleted account's key is gone with it (410): its Delete cannot be verified, and needs no trust to
        # act on, since it only removes that account (whose server says it is gone).
        return (
            urldefrag(key_id).url == actor
            and activity["type"] == "Delete"
            and _id_of(activity.get("object")) == actor
        )

    async def _act(self, activity: dict[str, Any], actor: str, host: str) -> Answer:
        kind = activity["type"]
        inner = activity.get("object")
        if kind == "Follow" and _id_of(inner) == self.urls.actor:
            return await self._follow(activity, actor, host)
        if kind == "Undo" and isinstance(inner, dict) and inner.get("type") == "Follow":
            return await self._remove(actor, "unfollowed")
        if kind == "Delete" and _id_of(inner) == actor:
            return await self._remove(actor, "deleted itself")
        return Answer(202, f"{kind} accepted and ignored")

    async def _follow(self, activity: dict[str, Any], actor: str, host: str) -> Answer:
        try:
            document = await self.actors.get(actor)
            inbox, delivery_inbox = inboxes_of(document)
            for address in {inbox, delivery_inbox}:
                await check_address(address, allow_private=self.settings.fediverse.allow_private_addresses)
        except (FetchFailed, RefusedAddress) as exc:
            return Answer(400, f"cannot follow back: {exc}")
        now = datetime.now(UTC)
        follow_id = _id_of(activity.get("id")) or ""
        accept = objects.activity(
            "Accept", self.urls, {k: v for k, v in activity.items() if k != "@context"},
            activity_id=f"{self.urls.actor}#accepts/{uuid.uuid4().hex}", to=[actor],
        )

        def store_follow() -> None:
            with self.engine.begin() as connection:
                store.add_follower(connection, actor=actor, inbox=inbox, delivery_inbox=delivery_inbox, host=host,
                                   follow_id=follow_id, now=now)
                store.queue_activity(connection, accept["id"], json.dumps(accept), now, inboxes=[inbox])

        await asyncio.to_thread(store_follow)
        log.info("fediverse.followed", extra=fields(actor=actor))
        return Answer(202, "followed", queued=True)

    async def _remove(self, actor: str, why: str) -> Answer:
        def remove() -> bool:
            with self.engine.begin() as connection:
                return store.remove_follower(connection, actor)

        removed = await asyncio.to_thread(remove)
        if removed:
            log.info("fediverse.unfollowed", extra=fields(actor=actor, reason=why))
        return Answer(202, f"{why}: follower removed" if removed else f"{why}: was not a follower")

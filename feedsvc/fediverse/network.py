"""Outgoing HTTP for the fediverse: the guard against private addresses, signed GETs of actors, the key cache.

A remote server names URLs (its actor, its inbox, its key) that feedsvc then requests. Unless
`[fediverse] allow_private_addresses` is on, a URL whose host resolves to a loopback, private, link-local or
otherwise non-public address is refused before any connection, so an actor cannot make feedsvc reach the
machine's own network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urldefrag, urlsplit

import httpx

from feedsvc import __version__
from feedsvc.config import Settings
from feedsvc.fediverse.keys import KeyPair
from feedsvc.fediverse.objects import ACTIVITY_JSON, LD_JSON, Urls
from feedsvc.fediverse.signatures import KeyGone, SignatureError, sign_cavage

# Actor documents are small; a bigger answer is refused rather than read.
MAX_ACTOR_BYTES = 512 * 1024
CACHED_ACTORS = 4096


class RefusedAddress(Exception):
    """A URL is not http(s), or its host resolves to an address feedsvc must not request."""


class FetchFailed(Exception):
    """An actor could not be fetched or is not a usable actor document."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def user_agent(urls: Urls) -> str:
    return f"feedsvc/{__version__} (+{urls.base})"


async def check_address(url: str, *, allow_private: bool) -> None:
    """Refuse `url` unless it is http(s) and every address its host resolves to is public (or private is allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedAddress(f"{url!r} is not an http(s) URL")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefusedAddress(f"{parts.hostname} does not resolve: {exc.strerror}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise RefusedAddress(
                f"{parts.hostname} resolves to {address}, a private or loopback address "
                "(allowed only with [fediverse] allow_private_addresses)"
            )


def client(settings: Settings, *, connections: int) -> httpx.AsyncClient:
    fediverse = settings.fediverse
    return httpx.AsyncClient(
        timeout=fediverse.timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"user-agent": user_agent(Urls.of(settings))},
        follow_redirects=False,
    )


class Actors:
    """Fetches actor documents with a signed GET (servers in authorized-fetch mode require one) and keeps them
    for `key_cache_seconds`, in a bounded cache."""

    def __init__(self, settings: Settings, keys: KeyPair, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.keys = keys
        self.http = http
        self.urls = Urls.of(settings)
        self._cache: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    async def get(self, url: str, *, fresh: bool = False) -> dict[str, Any]:
        url = urldefrag(url).url
        cached = self._cache.get(url)
        if cached and not fresh and time.monotonic() - cached[0] < self.settings.fediverse.key_cache_seconds:
            self._cache.move_to_end(url)
            return cached[1]
        document = await self._fetch(url)
        self._cache[url] = (time.monotonic(), document)
        while len(self._cache) > CACHED_ACTORS:
            self._cache.popitem(last=False)
        return document

    async def _fetch(self, url: str) -> dict[str, Any]:
        try:
            await check_address(url, allow_private=self.settings.fediverse.allow_private_addresses)
        except RefusedAddress as exc:
            raise FetchFailed(str(exc)) from None
        request = self.http.build_request("GET", url, headers={"accept": f"{ACTIVITY_JSON}, {LD_JSON}"})
        sign_cavage(request, self.keys.private_key, self.urls.key_id)
        try:
            response = await self.http.send(request, stream=True)
            try:
                if response.status_code != 200:
                    raise FetchFailed(f"fetching {url} answered {response.status_code}", response.status_code)
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ACTOR_BYTES:
                        raise FetchFailed(f"{url} answered more than {MAX_ACTOR_BYTES} bytes")
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise FetchFailed(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise FetchFailed(f"{url} did not answer JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("id"), str):
            raise FetchFailed(f"{url} did not answer an ActivityPub document")
        return document

    async def public_key(self, key_id: str, fresh: bool) -> tuple[str, str]:
        """(owner actor URL, PEM) of the key `key_id` names, from its actor's document."""
        try:
            document = await self.get(key_id, fresh=fresh)
        except FetchFailed as exc:
            error = KeyGone if exc.status == 410 else SignatureError
            raise error(f"the key {key_id} cannot be fetched: {exc}") from None
        key = document.get("publicKey")
        if isinstance(key, list):
            key = next((item for item in key if isinstance(item, dict) and item.get("id") == key_id), None)
        if not isinstance(key, dict) or not isinstance(key.get("publicKeyPem"), str):
            raise SignatureError(f"{key_id} names no public key")
        if key.get("id") != key_id:
            raise SignatureError(f"the document at {key_id} holds the key {key.get('id')!r}, not {key_id}")
        owner = key.get("owner") or document.get("id")
        return str(owner), key["publicKeyPem"]


def inboxes_of(document: dict[str, Any]) -> tuple[str, str]:
    """(own inbox, the inbox to deliver to: its server's shared inbox when it has one)."""
    inbox = document.get("inbox")
    if not isinstance(inbox, str):
        raise FetchFailed(f"{document.get('id')} has no inbox")
    endpoints = document.get("endpoints")
    shared = endpoints.get("sharedInbox") if isinstance(endpoints, dict) else None
    return inbox, shared if isinstance(shared, str) and shared else inbox

"""Delivering activities: claim due POSTs under a lease, sign each, POST it, record what became of it.

Waves of `[fediverse] concurrency` deliveries: a wave is marked `sending` in one transaction just before its
POSTs, and their outcomes are written in one transaction right after, so a kill -9 repeats at most the POSTs of
the wave in flight (rows left `sending`, sent again once their lease runs out). No more than
`max_requests_per_host` requests go to one host at a time. 2xx: sent. 410 Gone: the followers at that inbox are
removed. Any other 4xx but 408/429: failed (the server refuses it for good). Anything else: retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine

from feedsvc import retry
from feedsvc.config import Settings
from feedsvc.fediverse import network
from feedsvc.fediverse.keys import KeyPair
from feedsvc.fediverse.objects import ACTIVITY_JSON, LD_JSON, Urls
from feedsvc.fediverse.signatures import sign_cavage
from feedsvc.logging import fields
from feedsvc.store import fediverse as store

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    gone: int = 0


@dataclass(frozen=True, slots=True)
class _Outcome:
    delivery: store.Claimed
    status: int | None  # None: no answer (connection refused, timeout, refused address)
    error: str


async def deliver(
    settings: Settings, engine: Engine, keys: KeyPair, *, worker_id: str, stop: asyncio.Event | None = None
) -> DeliveryReport:
    """POST every delivery due now; return what became of them. `stop` ends after the wave in flight."""
    fediverse = settings.fediverse
    stop = stop or asyncio.Event()
    report = DeliveryReport()
    lease = timedelta(seconds=fediverse.lease_seconds)
    per_host: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(fediverse.max_requests_per_host))
    bodies: dict[int, bytes] = {}
    urls = Urls.of(settings)

    def in_transaction(operation, *args, **kwargs):
        with engine.begin() as connection:
            return operation(connection, *args, **kwargs)

    async with network.client(settings, connections=fediverse.concurrency) as http:
        try:
            while not stop.is_set():
                now = datetime.now(UTC)
                batch = await asyncio.to_thread(
                    in_transaction, store.claim, worker_id, now=now, lease_until=now + lease, limit=fediverse.batch_size
                )
                if not batch:
                    break
                for start in range(0, len(batch), fediverse.concurrency):
                    if stop.is_set():
                        break
                    wave = batch[start : start + fediverse.concurrency]
                    attempts = await asyncio.to_thread(
                        in_transaction, _start_wave, worker_id, [item.id for item in wave], datetime.now(UTC) + lease
                    )
                    for item in wave:
                        if item.activity not in bodies:
                            bodies[item.activity] = await asyncio.to_thread(in_transaction, _body, item.activity)
                    by_inbox: dict[str, list[store.Claimed]] = {}
                    for item in wave:  # claimed in the order they were queued
                        if item.id in attempts:
                            by_inbox.setdefault(item.inbox, []).append(item)
                    posted = await asyncio.gather(*(
                        _post_in_order(settings, http, keys, urls, items, bodies, per_host) for items in by_inbox.values()
                    ))
                    outcomes = [outcome for inbox_outcomes in posted for outcome in inbox_outcomes]
                    await asyncio.to_thread(in_transaction, _record, settings, worker_id, outcomes, attempts, report)
                # Bodies of finished activities are not needed again: memory stays flat over a long queue.
                bodies.clear()
        finally:
            await asyncio.to_thread(in_transaction, store.release, worker_id)
    if report.sent or report.retried or report.failed or report.gone:
        log.info("fediverse.delivered", extra=fields(sent=report.sent, retried=report.retried, failed=report.failed,
                                                     gone=report.gone))
    return report


def _start_wave(connection, worker_id: str, ids: list[int], lease_until: datetime) -> dict[int, int]:
    # The wave's claims are renewed with it: a batch slower than its lease is never taken over mid-way.
    store.renew(connection, worker_id, lease_until)
    return store.start_sending(connection, worker_id, ids)


def _body(connection, activity: int) -> bytes:
    return store.activity_body(connection, activity).encode()


async def _post_in_order(
    settings: Settings, http: httpx.AsyncClient, keys: KeyPair, urls: Urls, items: list[store.Claimed],
    bodies: dict[int, bytes], per_host: defaultdict[str, asyncio.Semaphore],
) -> list[_Outcome]:
    """One inbox's deliveries of a wave, one after another in the order they were queued: sent side by side,
    a post's Delete could reach a server before its Create or Update, which would then show it again."""
    return [await _post(settings, http, keys, urls, item, bodies[item.activity], per_host) for item in items]


async def _post(
    settings: Settings, http: httpx.AsyncClient, keys: KeyPair, urls: Urls, item: store.Claimed, body: bytes,
    per_host: defaultdict[str, asyncio.Semaphore],
) -> _Outcome:
    try:
        await network.check_address(item.inbox, allow_private=settings.fediverse.allow_private_addresses)
    except network.RefusedAddress as exc:
        return _Outcome(item, 400, str(exc))
    async with per_host[urlsplit(item.inbox).netloc]:
        request = http.build_request("POST", item.inbox, content=body, headers={"content-type": LD_JSON, "accept": ACTIVITY_JSON})
        sign_cavage(request, keys.private_key, urls.key_id)
        try:
            response = await http.send(request)
        except httpx.HTTPError as exc:
            return _Outcome(item, None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        return _Outcome(item, response.status_code, "" if response.is_success else f"{response.status_code} {response.text[:200]}")


def _record(
    connection, settings: Settings, worker_id: str, outcomes: list[_Outcome], attempts: dict[int, int], report: DeliveryReport
) -> None:
    now = datetime.now(UTC)
    sent: list[int] = []
    retries: list[store.Retry] = []
    gone: list[tuple[int, str]] = []
    fediverse = settings.fediverse
    for outcome in outcomes:
        delivery_id, status = outcome.delivery.id, outcome.status
        if status is not None and 200 <= status < 300:
            sent.append(delivery_id)
        elif status == 410:
            gone.append((delivery_id, outcome.delivery.inbox))
        elif status is not None and 400 <= status < 500 and status not in (408, 429):
            retries.append(store.Retry(delivery_id, outcome.error, None))
        else:
            attempt = attempts.get(delivery_id, 1)
            next_at = now + retry.backoff(fediverse.retry_base_seconds, attempt) if attempt < fediverse.max_attempts else None
            retries.append(store.Retry(delivery_id, outcome.error, next_at))
    store.record(connection, worker_id, sent=sent, retries=retries, gone=gone, now=now)
    report.sent += len(sent)
    report.gone += len(gone)
    report.failed += sum(1 for item in retries if item.next_attempt_at is None)
    report.retried += sum(1 for item in retries if item.next_attempt_at is not None)

"""The loop that drains a delivery queue for as long as the service runs: the mail queue (`mail.queue.drain`) by
default, the fediverse's with its own `drain_pass`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.logging import fields
from feedsvc.mail.queue import drain
from feedsvc.mail.transport import Transport

log = logging.getLogger(__name__)


class DeliveryLoop:
    """Drains the queue until stopped: when woken (new editions) and every `drain_interval` seconds."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        transport: Transport,
        worker_id: str,
        drain_pass: Callable[[asyncio.Event], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.transport = transport
        self.worker_id = worker_id
        # One pass over a queue: the mail queue's by default.
        self.drain_pass = drain_pass or (
            lambda stop: drain(self.settings, self.engine, self.transport, worker_id=self.worker_id, stop=stop)
        )
        self.running = False
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def alive(self) -> bool:
        # A pass over a long queue takes as long as it takes; the loop is alive while it has not ended.
        return self.running

    async def run(self, stop: asyncio.Event) -> None:
        """`stop` makes the current pass finish its in-flight messages, release its claims and return."""
        interval = self.settings.scheduler.drain_interval
        self.running = True
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    # drain logs what it did; a failure (store down…) is logged and retried after the interval.
                    await self.drain_pass(stop)
                except Exception:
                    log.exception("deliveries.drain_failed", extra=fields(worker=self.worker_id))
                waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
                await asyncio.wait(waiters, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
        finally:
            self.running = False

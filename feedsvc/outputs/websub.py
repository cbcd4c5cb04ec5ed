"""The WebSub output: tell the hub (`feeds.websub_hub`) which feeds changed so it pushes them to readers.

The ping is a form POST `hub.mode=publish&hub.url=<feed url>`, one per changed feed. A hub that is down or
answers 5xx/429 is asked again with exponential backoff; any other 4xx means the hub refuses this feed and
asking again cannot help.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from feedsvc.config import Settings
from feedsvc.logging import fields

if TYPE_CHECKING:
    from feedsvc.outputs import Reacts, Rebuild

log = logging.getLogger(__name__)



class HubRefused(Exception):
    """The hub answered with a client error: the ping is wrong or unwelcome, not worth repeating."""


def feed_urls(settings: Settings, written: Iterable[Path]) -> list[str]:
    """Public URLs of the feed files among `written` (paths inside `feeds.output_dir`), in a stable order."""
    # Imported on use: the feeds package (feedgen, lxml) is start-up that `digest send`, which loads every output
    # of the registry, does not need.
    from feedsvc.feeds.formats import FEED_FILES

    output = settings.feeds.output_dir.resolve()
    urls = set()
    for path in written:
        if path.name not in FEED_FILES:
            continue
        try:
            relative = path.resolve().relative_to(output)
        except ValueError:
            continue
        urls.add(f"{settings.site.url}/{relative.as_posix()}")
    return sorted(urls)


class HubPinger:
    def __init__(self, hub: str, *, attempts: int = 5, backoff: float = 1.0, timeout: float = 10.0) -> None:
        self.hub = hub
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout

    def _post(self, feed_url: str) -> int:
        body = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": feed_url}).encode()
        request = urllib.request.Request(
            self.hub,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "feedsvc"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise HubRefused(f"hub answered {exc.code} {exc.reason}") from None
            raise

    async def ping_one(self, feed_url: str) -> bool:
        """Ping for one feed, retrying transient failures; True once the hub accepted it."""
        for attempt in range(1, self.attempts + 1):
            try:
                status = await asyncio.to_thread(self._post, feed_url)
            except HubRefused as exc:
                log.warning("websub.refused", extra=fields(hub=self.hub, feed=feed_url, reason=str(exc)))
                return False
            except (OSError, urllib.error.URLError) as exc:
                reason = str(exc)
            else:
                log.info("websub.pinged", extra=fields(hub=self.hub, feed=feed_url, status=status, attempt=attempt))
                return True
            if attempt < self.attempts:
                delay = self.backoff * 2 ** (attempt - 1)
                log.info(
                    "websub.retry",
                    extra=fields(hub=self.hub, feed=feed_url, attempt=attempt, reason=reason, delay_s=delay),
                )
                await asyncio.sleep(delay)
        log.warning("websub.gave_up", extra=fields(hub=self.hub, feed=feed_url, attempts=self.attempts, reason=reason))
        return False

    async def ping(self, urls: Iterable[str]) -> dict[str, bool]:
        """Ping for every feed URL concurrently; maps each URL to whether the hub accepted it."""
        urls = list(urls)
        results = await asyncio.gather(*(self.ping_one(url) for url in urls))
        return dict(zip(urls, results, strict=True))


class WebSubOutput:
    name = "websub"
    reacts_to: Reacts = "feeds"
    # The hub's retries take seconds; nothing after the ping waits for it.
    detached = True

    def wanted(self, settings: Settings) -> bool:
        return bool(settings.feeds.websub_hub)

    async def run(self, rebuild: Rebuild) -> int:
        """The number of changed feeds the hub accepted."""
        urls = feed_urls(rebuild.settings, rebuild.written)
        if not urls or rebuild.dry_run:
            return 0
        accepted = await HubPinger(rebuild.settings.feeds.websub_hub).ping(urls)
        return sum(accepted.values())

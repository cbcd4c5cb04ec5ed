"""The fediverse output: queue Create/Update/Delete activities for the posts announced since the last rebuild (the
fediverse delivery loop POSTs them to the followers' inboxes)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from feedsvc.config import Settings

if TYPE_CHECKING:
    from feedsvc.outputs import Reacts, Rebuild


class FediverseOutput:
    name = "fediverse"
    reacts_to: Reacts = "posts"
    detached = False

    def wanted(self, settings: Settings) -> bool:
        return settings.fediverse.enabled

    async def run(self, rebuild: Rebuild) -> int:
        """The number of deliveries queued; the service wakes its fediverse loop when there are any."""
        from feedsvc.fediverse.outbox import publish_to_followers  # with the store, as the digests output

        assert rebuild.engine is not None, "run_outputs gives a post output a store"
        if rebuild.dry_run:
            return 0
        federated = await asyncio.to_thread(
            publish_to_followers, rebuild.settings, rebuild.engine, rebuild.scan, rebuild.now
        )
        return federated.deliveries

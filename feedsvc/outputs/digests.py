"""The digests output: announce what is newly published and create the editions due, with their deliveries
(the mail queue sends them)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from feedsvc.config import Settings

if TYPE_CHECKING:
    from feedsvc.outputs import Reacts, Rebuild


class DigestsOutput:
    name = "digests"
    reacts_to: Reacts = "posts"
    detached = False

    def wanted(self, settings: Settings) -> bool:
        return True

    async def run(self, rebuild: Rebuild) -> int:
        """The number of editions created; the service wakes its delivery loop when there are any."""
        from feedsvc.digests import run_due  # with the store: not loaded by `feedsvc build`, which has none

        assert rebuild.engine is not None, "run_outputs gives a post output a store"
        rebuild.editions = await asyncio.to_thread(
            run_due,
            rebuild.settings,
            rebuild.engine,
            rebuild.scan,
            rebuild.now,
            include_archive=rebuild.include_archive,
            dry_run=rebuild.dry_run,
        )
        return len(rebuild.editions)

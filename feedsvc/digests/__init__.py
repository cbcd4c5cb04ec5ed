"""Digests: what is new, for whom, when. Announces new posts and turns them into editions and deliveries.

The mail queue (`feedsvc.mail.queue`) sends the deliveries; the rebuild's digests output (`feedsvc.outputs`)
calls `run_due`, and the scheduler fires at the times of the cadences' calendars (`feedsvc.cadences`).
"""

from feedsvc.digests.announce import Announced, announce
from feedsvc.digests.editions import EditionSummary, run_due

__all__ = [
    "Announced",
    "EditionSummary",
    "announce",
    "run_due",
]

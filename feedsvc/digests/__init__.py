"""Digests: what is new, for whom, when. Announces new posts and turns them into editions and deliveries.

The mail queue (`feedsvc.mail.queue`) sends the deliveries; the scheduler calls `run_due` and fires at the
times `schedules()` describes.
"""

from feedsvc.digests.announce import Announced, announce
from feedsvc.digests.editions import EditionSummary, run_due
from feedsvc.digests.schedule import DigestSchedule, next_run_times, schedules

__all__ = [
    "Announced",
    "DigestSchedule",
    "EditionSummary",
    "announce",
    "next_run_times",
    "run_due",
    "schedules",
]

"""The wait before the next attempt of a send that failed, shared by the mail and the fediverse queues."""

from __future__ import annotations

import random
from datetime import timedelta

# Longest wait between two attempts, whatever the backoff says.
MAX_BACKOFF = timedelta(hours=12)


def backoff(base_seconds: float, attempts: int) -> timedelta:
    """Exponential backoff with jitter: base·2^(attempts-1), scaled by a random 50–100 %, at most MAX_BACKOFF."""
    seconds = base_seconds * 2 ** (attempts - 1) * random.uniform(0.5, 1.0)
    return min(timedelta(seconds=seconds), MAX_BACKOFF)

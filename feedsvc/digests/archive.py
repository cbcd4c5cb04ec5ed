"""Where the web copy of an edition lives: `/archive/<date>-<frequency>-<hash>/`.

The address is known when the edition is rendered, before it has a row id, so its mail can link to it ("view
in browser"); it is found again from the address alone: the date and frequency narrow the sent editions to a
few, and the hash of the edition's unique key picks the one.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, time, timedelta

from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.store import editions
from feedsvc.store.editions import SentEdition

ARCHIVE_PATH = "/archive/"
# Editions listed on the archive index, newest first (years of daily digests).
INDEX_LIMIT = 1000
_SLUG = re.compile(r"(\d{4}-\d{2}-\d{2})-(instant|daily|weekly)-([0-9a-f]{12})")


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def edition_slug(settings: Settings, key: str, frequency: str, period_end: datetime) -> str:
    """The edition's name in its address: the day it is for (in the site's timezone), its cadence, a hash."""
    day = period_end.astimezone(settings.site.tz).date().isoformat()
    return f"{day}-{frequency}-{_key_hash(key)}"


def edition_path(settings: Settings, edition: SentEdition) -> str:
    return f"{ARCHIVE_PATH}{edition_slug(settings, edition.key, edition.frequency, edition.period_end)}/"


def edition_url(settings: Settings, key: str, frequency: str, period_end: datetime) -> str | None:
    """The absolute address of the edition's web copy; None when `[web] archive` is off."""
    if not settings.web.archive:
        return None
    return f"{settings.web.base_url}{ARCHIVE_PATH}{edition_slug(settings, key, frequency, period_end)}/"


def find_edition(settings: Settings, engine: Engine, slug: str) -> SentEdition | None:
    """The sent edition named `slug`, or None (no such edition, not sent yet, or not a slug at all)."""
    match = _SLUG.fullmatch(slug)
    if match is None:
        return None
    day_text, frequency, wanted = match.groups()
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        return None
    start = datetime.combine(day, time(), settings.site.tz)
    with engine.connect() as connection:
        candidates = editions.sent_editions(
            connection,
            limit=INDEX_LIMIT,
            frequency=frequency,
            ending_from=start,
            ending_before=datetime.combine(day + timedelta(days=1), time(), settings.site.tz),
        )
    return next((edition for edition in candidates if _key_hash(edition.key) == wanted), None)


def archived_editions(engine: Engine) -> list[SentEdition]:
    with engine.connect() as connection:
        return editions.sent_editions(connection, limit=INDEX_LIMIT)

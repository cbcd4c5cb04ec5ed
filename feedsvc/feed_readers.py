"""Who reads the feeds: hosted readers' own subscriber counts, and distinct direct fetchers, per feed.

Hosted readers (Feedly, Inoreader, NewsBlur, Feedbin, The Old Reader, BazQux, ...) fetch a feed once for all
their users and put the number in their User-Agent ("12 subscribers", "1 subscriber", "1,234 subscribers");
some add their own id of the feed (NewsBlur's /site/<id>/, Feedbin's feed-id:<id>, The Old Reader's feed-id=),
since one feed may be known to them under several URLs. The estimate for a reader is the latest count of each
of its feed ids over a rolling week, summed. Every other client counts once per feed: a keyed hash of its
address and User-Agent, never the address itself.

Requests are tallied in memory and written to the store in one transaction at most once a minute, so a busy
feed costs no database work per request; a process that stops loses at most that minute of tallies.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from feedsvc.store import feed_readers as store

log = logging.getLogger(__name__)

WINDOW_DAYS = 7
FLUSH_SECONDS = 60.0
# Past this many distinct clients in memory the tally is written early, which bounds its memory.
MAX_PENDING_CLIENTS = 50_000
# What each client lately seen comes to (see Tally.observe) is remembered for this many clients at most.
MAX_KNOWN_CLIENTS = 10_000

# Reader name -> what identifies it in a User-Agent (case-insensitive).
HOSTED_READERS = {
    "Feedly": r"feedly",
    "Inoreader": r"inoreader",
    "NewsBlur": r"newsblur",
    "Feedbin": r"feedbin",
    "The Old Reader": r"theoldreader",
    "BazQux": r"bazqux",
    "Feedspot": r"feedspot",
    "Netvibes": r"netvibes",
    "Bloglovin": r"bloglovin",
    "Feed Wrangler": r"feed ?wrangler",
    "Feeder": r"feeder\.co",
}
_READERS = [(name, re.compile(pattern, re.IGNORECASE)) for name, pattern in HOSTED_READERS.items()]
# "1 subscriber", "12 subscribers", "1,234 subscribers", "1.234 readers", "1 234 subscribers"
_COUNT = re.compile(r"(\d{1,3}(?:[,.\u00a0\u202f ]\d{3})+|\d+)\s*(?:subscribers?|readers?)\b", re.IGNORECASE)
_FEED_ID = re.compile(r"(?:feed-?id[:=]\s*|/site/)([\w-]{1,128})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HostedCount:
    reader: str
    subscribers: int
    reader_feed_id: str  # "" when the reader names none


def hosted_count(user_agent: str) -> HostedCount | None:
    """The count a hosted reader states in its User-Agent; None for every other client."""
    found = _COUNT.search(user_agent)
    if found is None:
        return None
    reader = next((name for name, pattern in _READERS if pattern.search(user_agent)), None)
    if reader is None:  # a reader not listed: named by its first product token
        reader = re.split(r"[/;( ]", user_agent.strip(), maxsplit=1)[0][:64] or "unknown"
    feed_id = _FEED_ID.search(user_agent)
    return HostedCount(reader, int(re.sub(r"\D", "", found.group(1))), feed_id.group(1) if feed_id else "")


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


class Tally:
    """Counts feed requests in memory and writes them to the store in batches."""

    def __init__(self, engine: Engine, key: str, *, flush_seconds: float | None = None) -> None:
        self._engine = engine
        self._key = hashlib.sha256(b"feedsvc.feed-readers\x00" + key.encode()).digest()
        self._flush_seconds = FLUSH_SECONDS if flush_seconds is None else flush_seconds
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str, str], tuple[int, datetime]] = {}
        self._clients: set[tuple[str, str, str]] = set()
        self._flushed_at = time.monotonic()
        self._flushing = False
        # (address, User-Agent) -> its hosted reader's count, or the keyed hash that counts it as a direct fetcher.
        self._known: dict[tuple[str, str], HostedCount | str] = {}
        self._today = (datetime.min.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC), "")  # from, until, day

    def observe(self, feed: str, client: str, user_agent: str, now: datetime) -> bool:
        """Count one request; True when it is time to write the tally (call `flush`, off the event loop)."""
        # Each request's own work, once per day or per client, as a feed is polled by the same clients again and
        # again: the day's name, the User-Agent's patterns and the hash, made each time, were a third of the
        # instructions of a 304 answered by the fast path (`web/server.py`).
        start, end, day = self._today
        if not start <= now < end:
            start = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), UTC)
            end, day = start + timedelta(days=1), _day(start)
            self._today = (start, end, day)
        known = self._known.get((client, user_agent))
        if known is None:
            if len(self._known) >= MAX_KNOWN_CLIENTS:
                self._known.clear()
            known = self._known[(client, user_agent)] = hosted_count(user_agent) or self._fetcher(client, user_agent)
        with self._lock:
            if isinstance(known, HostedCount):
                self._counts[(day, feed, known.reader, known.reader_feed_id)] = (known.subscribers, now)
            else:
                self._clients.add((day, feed, known))
            due = (
                time.monotonic() - self._flushed_at >= self._flush_seconds or len(self._clients) >= MAX_PENDING_CLIENTS
            )
            if due and not self._flushing:
                self._flushing = True
                return True
        return False

    def _fetcher(self, client: str, user_agent: str) -> str:
        return hashlib.blake2b(f"{client}\x00{user_agent}".encode(), key=self._key, digest_size=16).hexdigest()

    def flush(self) -> None:
        """Write what was tallied since the last time (and forget what is older than the window)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            clients, self._clients = self._clients, set()
        try:
            with self._engine.begin() as connection:
                store.record_counts(connection, [
                    {"day": day, "feed": feed, "reader": reader, "reader_feed_id": feed_id, "subscribers": number,
                     "seen_at": seen_at}
                    for (day, feed, reader, feed_id), (number, seen_at) in counts.items()
                ])
                store.record_fetchers(connection, [{"day": d, "feed": f, "client": c} for d, f, c in clients])
                store.forget_before(connection, _day(datetime.now(UTC) - timedelta(days=WINDOW_DAYS + 1)))
        except Exception:
            log.warning("feed readers: tally not written, kept for the next try", exc_info=True)
            with self._lock:
                for key, value in counts.items():
                    self._counts.setdefault(key, value)
                self._clients |= clients
        finally:
            with self._lock:
                self._flushed_at = time.monotonic()
                self._flushing = False


@dataclass(frozen=True, slots=True)
class FeedAudience:
    feed: str
    readers: list[tuple[str, int]]  # hosted reader, its subscribers
    direct: int  # distinct other clients

    @property
    def total(self) -> int:
        return sum(number for _, number in self.readers) + self.direct


def audiences(engine: Engine, now: datetime) -> list[FeedAudience]:
    """Per feed, over the last WINDOW_DAYS days: hosted readers' latest counts and distinct direct fetchers."""
    since = _day(now - timedelta(days=WINDOW_DAYS - 1))
    with engine.connect() as connection:
        counts = store.latest_counts(connection, since)
        direct = store.distinct_fetchers(connection, since)
    feeds = sorted({feed for feed, _, _ in counts} | set(direct))
    return [
        FeedAudience(feed, [(reader, number) for f, reader, number in counts if f == feed], direct.get(feed, 0))
        for feed in feeds
    ]

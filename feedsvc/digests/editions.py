"""Editions and deliveries: which posts each subscriber gets, in which mail, for which period.

A period is a window of announcements handed to the subscribers of one frequency: one batch for instant
subscribers, [end of the previous period, scheduled time) for the periodic cadences (daily, weekly, monthly:
their calendars in `feedsvc.cadences`). Its row is written before
its deliveries and completed after them, so a restart (or a second scheduler) redoes it with the same window,
and unique keys make every edition and every delivery exist once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from feedsvc.cadences import INSTANT, Calendar, calendars
from feedsvc.config import Settings
from feedsvc.digests.announce import announce
from feedsvc.digests.archive import edition_url
from feedsvc.logging import fields
from feedsvc.posts import Post, Scan, tag_slug
from feedsvc.store import announcements, editions
from feedsvc.store.announcements import Announcement
from feedsvc.store.editions import Period, Recipient

# Subscribers read and deliveries written per transaction: memory stays flat with 100,000 subscribers.
CHUNK = 1000

log = logging.getLogger("feedsvc.digests")

# One run at a time per process (the service's jobs may overlap); other processes are kept apart by unique keys.
_run_lock = threading.Lock()
# The published posts of the last run on each store whose announcing was committed (`announce`'s `since`).
_last_announced: weakref.WeakKeyDictionary[Engine, tuple[Post, ...]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class EditionSummary:
    frequency: str
    period_key: str  # e.g. "daily:2026-11-23T08:00:00", "instant:<batch>"
    edition_key: str  # period key + hash of the post ids
    edition_id: int
    post_ids: tuple[str, ...]
    deliveries: int  # delivery rows this call created (0 when an earlier run had created them)


@dataclass(frozen=True, slots=True)
class News:
    """An announced post as the selection sees it."""

    post: Post
    first_seen_at: datetime
    tag_slugs: frozenset[str]


def run_due(
    settings: Settings,
    engine: Engine,
    scan: Scan,
    now: datetime,
    *,
    include_archive: bool = False,
    dry_run: bool = False,
) -> list[EditionSummary]:
    """Announce what is new in `scan`, then create every edition due at `now` with its deliveries.

    `dry_run`: do all of it in one transaction and roll it back (nothing is stored, nothing gets sent)."""
    with _run_lock, engine.connect() as connection:
        commit: Callable[[], None] = (lambda: None) if dry_run else connection.commit
        try:
            published = scan.published(now)
            since = None if dry_run else _last_announced.get(engine)
            announced = announce(connection, published, now, include_archive=include_archive, since=since)
            commit()
            if not dry_run:
                _last_announced[engine] = tuple(published)
            if announced.post_ids or announced.released:
                log.info(
                    "digest.announced",
                    extra=fields(
                        posts=len(announced.post_ids) + announced.released,
                        batch=announced.batch,
                        archive=announced.first_run,
                        mailed=announced.mailable,
                    ),
                )
            for new_id, announced_id in announced.renamed.items():
                log.info("digest.renamed", extra=fields(post=new_id, announced_as=announced_id))
            posts = {post.id: post for post in published}
            summaries = _instant(settings, connection, posts, now, commit)
            for calendar in calendars(settings):
                summaries += _periodic(settings, connection, calendar, posts, now, commit)
            return summaries
        finally:
            connection.rollback()


def _instant(
    settings: Settings, connection: Connection, posts: Mapping[str, Post], now: datetime, commit: Callable[[], None]
) -> list[EditionSummary]:
    summaries: list[EditionSummary] = []
    for batch in announcements.unfinished_batches(connection):
        batch_posts = announcements.in_batch(connection, batch)
        # An instant period is the moment its batch was seen: its subscribers are those confirmed by then.
        times = [item.first_seen_at for item in batch_posts]
        period = editions.open_period(connection, f"{INSTANT}:{batch}", INSTANT, min(times), max(times), now)
        commit()
        summaries += _fill(settings, connection, period, batch_posts, posts, now, commit)
    return summaries


def _periodic(
    settings: Settings,
    connection: Connection,
    calendar: Calendar,
    posts: Mapping[str, Post],
    now: datetime,
    commit: Callable[[], None],
) -> list[EditionSummary]:
    summaries: list[EditionSummary] = []
    while True:
        last = editions.latest_period(connection, calendar.name)
        if last is not None and last.completed_at is None:
            period = last  # interrupted: finish it with the window it was given
        else:
            due = calendar.latest_run(now)
            # Contiguous windows: after downtime, one period covers everything since the last one.
            start = last.period_end if last else announcements.archive_recorded_at(connection)
            if start is None or due <= start:
                return summaries
            key = calendar.period_key(due)
            period = editions.open_period(connection, key, calendar.name, start, due, now)
            commit()
        window = announcements.in_window(connection, period.period_start, period.period_end)
        summaries += _fill(settings, connection, period, window, posts, now, commit)


def _fill(
    settings: Settings,
    connection: Connection,
    period: Period,
    announced: Sequence[Announcement],
    posts: Mapping[str, Post],
    now: datetime,
    commit: Callable[[], None],
) -> list[EditionSummary]:
    """Queue the period's mail for each of its subscribers, then mark the period complete."""
    candidates = news(announced, posts)
    # One edition per distinct set of posts, rendered once, however many subscribers share it.
    by_post_set: dict[tuple[str, ...], int] = {}
    created: Counter[int] = Counter()  # new deliveries per edition id
    after_id = 0
    while candidates:
        page = editions.recipients(
            connection, period.frequency, confirmed_by=period.period_end, after_id=after_id, limit=CHUNK
        )
        if not page:
            break
        rows = []
        for recipient in page:
            chosen = posts_for(recipient, candidates)
            if not chosen:
                continue
            post_ids = tuple(post.id for post in chosen)
            if post_ids not in by_post_set:
                by_post_set[post_ids] = _edition(settings, connection, period, chosen, now)
            rows.append(
                {
                    "key": f"{period.key}:sub:{recipient.id}",
                    "edition_id": by_post_set[post_ids],
                    "subscriber_id": recipient.id,
                    "state": "queued",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "last_error": "",
                    "created_at": now,
                }
            )
        # Rows that exist already (a resumed period, another scheduler) are skipped, not counted.
        created.update(editions.insert_deliveries(connection, rows))
        commit()
        after_id = page[-1].id
    if created:
        editions.refresh_queue_statistics(connection)
    editions.complete_period(connection, period.key, now)
    commit()
    summaries = [
        EditionSummary(period.frequency, period.key, _edition_key(period, ids), edition_id, ids, created[edition_id])
        for ids, edition_id in by_post_set.items()
    ]
    for summary in summaries:
        log.info(
            "digest.edition",
            extra=fields(edition=summary.edition_key, posts=len(summary.post_ids), queued=summary.deliveries),
        )
    return summaries


def news(announced: Iterable[Announcement], posts: Mapping[str, Post]) -> list[News]:
    """The announced posts that can be mailed, in `reading_order`: posts since deleted or turned back into
    drafts (absent from `posts`) are not."""
    found = [
        News(posts[item.post_id], item.first_seen_at, frozenset(tag_slug(tag) for tag in posts[item.post_id].tags))
        for item in announced
        if item.post_id in posts
    ]
    return sorted(found, key=lambda item: reading_key(item.post))


_DIGITS = re.compile(r"(\d+)")


def _natural(text: str) -> tuple[str | int, ...]:
    """"Part 10" after "Part 9": runs of digits compare as numbers (they sit at the odd places of the split)."""
    return tuple(int(piece) if index % 2 else piece for index, piece in enumerate(_DIGITS.split(text.casefold())))


def reading_key(post: Post) -> tuple[float, tuple[str | int, ...], tuple[str | int, ...]]:
    """A digest's order: newest first; posts of the same time by title, then by slug, numbers in their natural
    order (#1, #2, … #10), so a series published at once reads in sequence."""
    return (-post.date.timestamp(), _natural(post.title), _natural(post.slug))


def posts_for(recipient: Recipient, candidates: Sequence[News]) -> list[Post]:
    """The posts this subscriber gets: first seen since they confirmed (a post dated earlier but saved after
    is news to them too), and matching their tag filter."""
    wanted = set(recipient.tags)
    return [
        candidate.post
        for candidate in candidates
        if candidate.first_seen_at >= recipient.confirmed_at and (not wanted or wanted & candidate.tag_slugs)
    ]


def _edition_key(period: Period, post_ids: Sequence[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(post_ids)).encode()).hexdigest()[:16]
    return f"{period.key}:{digest}"


def _edition(settings: Settings, connection: Connection, period: Period, chosen: Sequence[Post], now: datetime) -> int:
    key = _edition_key(period, [post.id for post in chosen])
    existing = editions.edition_id(connection, key)
    if existing is not None:
        return existing
    # Imported when an edition is made: the templates, Babel, lxml and css-inline are most of a `digest send`'s
    # start-up on the runs (most of them) that only send what is queued.
    from feedsvc.mail.render import render_edition

    web_copy = edition_url(settings, key, period.frequency, period.period_end)
    rendered = render_edition(settings, chosen, period.frequency, period.period_start, period.period_end, web_copy)
    return editions.insert_edition(
        connection,
        key=key,
        frequency=period.frequency,
        period_start=period.period_start,
        period_end=period.period_end,
        post_ids=[post.id for post in chosen],
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        created_at=now,
    )

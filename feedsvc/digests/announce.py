"""What is new: a post is announced once, the first time it is seen published.

A post without `slug` or `id` takes its id from its file name, so a renamed file comes back under a new id. It is
the same post when an announced post left the published set in the same scan with the same title and date: its
announcement then moves to the new id (keeping its batch and time) and nothing is announced again. Each
announcement follows its post's title and date as they are edited, so a post renamed long after it was announced is
still recognised."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from feedsvc.cadences import PERIODIC
from feedsvc.logging import fields
from feedsvc.posts import Post, replaced_places, tag_slug
from feedsvc.store import announcements, editions

log = logging.getLogger("feedsvc.digests")


@dataclass(frozen=True, slots=True)
class Announced:
    batch: str
    post_ids: frozenset[str]  # announced by this call (empty when nothing was new)
    first_run: bool  # the existing blog was recorded as the archive
    mailable: bool  # whether these posts will be mailed (False for the archive without --include-archive)
    released: int  # archive posts made mailable by include_archive on a later run
    renamed: dict[str, str]  # new post id -> the id it was announced under (renamed files)


def new_batch(now: datetime) -> str:
    # Sortable by eye, unique across processes.
    return f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


# Posts edited in place since the last committed pass, at most, for which that pass's posts are compared rather
# than every announcement read back.
_MAX_EDITED = 64


def announce(
    connection: Connection,
    published: Sequence[Post],
    now: datetime,
    *,
    include_archive: bool = False,
    since: Sequence[Post] | None = None,
) -> Announced:
    """Record the published posts never announced before, in one batch (the caller commits).

    The first run records the existing blog as the archive: not mailed unless `include_archive`. Later, with
    `include_archive`, posts recorded that way become news of now.

    `since`: the published posts of this process's last pass on this store that was committed. When only some of
    them were edited in place since (the same posts in the same places, `replaced_places`), every post is
    announced already: only the edited ones are looked up, for a new title or date. Reading every announcement
    back was most of a rebuild's work in the service at 50,000 posts (about 300 ms)."""
    batch = new_batch(now)
    first_run = announcements.archive_recorded_at(connection) is None
    edited = None if since is None or first_run or include_archive else replaced_places(since, published)
    if edited is not None and len(edited) <= _MAX_EDITED:
        posts = [published[place] for place in edited]
        known = announcements.identities(connection, [post.id for post in posts])
        _amend_edited(connection, known, posts)
        return Announced(batch, frozenset(), first_run=False, mailable=True, released=0, renamed={})
    known = announcements.identities(connection)
    _amend_edited(connection, known, published)
    unknown, renamed = unannounced(known, published)
    for post in unknown:
        if len(post.id) > announcements.ID_MAX_CHARS:
            log.warning(
                "digest.not_announced",
                extra=fields(file=str(post.source), reason=f"id longer than {announcements.ID_MAX_CHARS} characters"),
            )
    for post in unknown:
        if post.id in renamed:
            slug = post.slug[: announcements.ID_MAX_CHARS]
            announcements.amend(connection, renamed[post.id], post_id=post.id, slug=slug, url=post.url)
    floor = announcement_floor(connection)
    mailable = include_archive or not first_run
    rows = [
        {
            "post_id": post.id,
            "slug": post.slug[: announcements.ID_MAX_CHARS],
            "title": post.title,
            "url": post.url,
            "tags": [tag_slug(tag) for tag in post.tags],
            "published_at": post.date,
            "announced_at": now if first_run else announced_at(post.date, floor, now),
            "first_seen_at": now,
            "batch": batch,
            "mailable": int(mailable),
        }
        for post in unknown
        if post.id not in renamed and len(post.id) <= announcements.ID_MAX_CHARS
    ]
    inserted = announcements.insert_new(connection, rows)
    released = 0
    if first_run:
        announcements.record_archive(connection, now)
    elif include_archive:
        released = announcements.release_archive(connection, batch, now)
    return Announced(batch, frozenset(inserted), first_run, mailable, released, renamed)


def _amend_edited(connection: Connection, known: Mapping[str, tuple[str, datetime]], posts: Sequence[Post]) -> None:
    """Each announcement follows its post's title and date as they are edited."""
    for post in posts:
        if post.id in known and known[post.id] != (post.title, post.date):
            announcements.amend(connection, post.id, title=post.title, published_at=post.date)


def unannounced(
    known: Mapping[str, tuple[str, datetime]], published: Sequence[Post]
) -> tuple[list[Post], dict[str, str]]:
    """The published posts not announced under their id, and among them the renamed ones: new post id ->
    the id it was announced under (an announced post no longer published, with the same title and date)."""
    published_ids = {post.id for post in published}
    gone = {identity: post_id for post_id, identity in known.items() if post_id not in published_ids}
    unknown = [post for post in published if post.id not in known]
    renamed: dict[str, str] = {}
    for post in unknown:
        announced_id = gone.pop((post.title, post.date), None)
        if announced_id is not None:
            renamed[post.id] = announced_id
    return unknown, renamed


def announcement_floor(connection: Connection) -> datetime | None:
    """The end of the latest period already handed out (or of the archive): see `announced_at`."""
    return editions.latest_period_end(connection, (announcements.ARCHIVE_KEY, *PERIODIC))


def announced_at(published_at: datetime, floor: datetime | None, now: datetime) -> datetime:
    """When a newly seen post counts as news: its publication time, but never before the end of a period
    already handed out (a back-dated post found late is news of the next period) and never after now.

    So `digest send` run at 08:00:05 by cron still puts a post published at 07:00 into the 08:00 digest."""
    start = max(published_at, floor) if floor else published_at
    return min(start, now)

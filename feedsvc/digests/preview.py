"""The next digest a subscriber would get, as a complete message, without storing or sending anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine

from feedsvc.cadences import CADENCES
from feedsvc.config import Settings
from feedsvc.digests.announce import announced_at, announcement_floor, unannounced
from feedsvc.digests.editions import news, posts_for, reading_key
from feedsvc.mail.message import message_id_for, personalise
from feedsvc.mail.render import render_edition
from feedsvc.posts import Post, Scan
from feedsvc.store import announcements, editions
from feedsvc.store.announcements import Announcement
from feedsvc.store.editions import Recipient
from feedsvc.subscriptions import find
from feedsvc.tokens import preferences_url, tokens_for, unsubscribe_url

# Without news, the preview shows this many of the newest posts, so the templates can still be checked.
SAMPLE_POSTS = 3


class PreviewError(ValueError):
    """The preview cannot be made; the message says why."""


@dataclass(frozen=True, slots=True)
class Preview:
    to_email: str
    frequency: str
    posts: tuple[Post, ...]
    sample: bool  # nothing new for this reader: shown with the newest posts instead
    message: bytes  # the complete RFC 5322 message


def preview(settings: Settings, engine: Engine, scan: Scan, now: datetime, *, email: str | None = None) -> Preview:
    """The digest `email` (a subscriber) would get next; without `email`, the next daily digest for a reader
    with no tag filter, addressed to the site's author."""
    published = scan.published(now)
    if email:
        subscriber = find(engine, email)
        if subscriber is None:
            raise PreviewError(f"no subscriber with the address {email}")
        recipient = Recipient(subscriber.id, subscriber.tags, subscriber.confirmed_at or now)
        to_email, to_name, frequency = subscriber.email, subscriber.name, subscriber.frequency
        link_key = subscriber.link_key
    else:
        recipient = Recipient(0, (), datetime.min.replace(tzinfo=UTC))
        to_email, to_name, frequency = settings.site.author_email or settings.mail.from_address, "", "daily"
        link_key = ""  # no row: the sample's links open nothing
    with engine.connect() as connection:
        pending = _pending(connection, published, frequency, now)
    chosen = posts_for(recipient, news(pending, {post.id: post for post in published}))
    sample = not chosen
    if sample:
        chosen = sorted(published, key=reading_key)[:SAMPLE_POSTS]
    if not chosen:
        raise PreviewError("there is no published post to preview a digest with")
    start = min(post.date for post in chosen)
    rendered = render_edition(settings, chosen, frequency, start, now)
    tokens = tokens_for(settings)
    message = personalise(
        settings,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        to_email=to_email,
        to_name=to_name,
        unsubscribe_url=unsubscribe_url(settings, tokens, recipient.id, link_key),
        preferences_url=preferences_url(settings, tokens, recipient.id, link_key),
        message_id=message_id_for(settings, f"preview:{frequency}:{recipient.id}:{now.isoformat()}"),
    )
    return Preview(to_email, frequency, tuple(chosen), sample, message)


def _pending(connection: Connection, published: list[Post], frequency: str, now: datetime) -> list[Announcement]:
    """What the next `frequency` edition would hold: announced but not yet handed out, plus what the next
    run would announce (read only: nothing is recorded)."""
    archive = announcements.archive_recorded_at(connection)
    if archive is None:
        return []  # the first run records the existing blog as the archive: nothing is news yet
    if not CADENCES[frequency].periodic:
        pending = [item for batch in announcements.unfinished_batches(connection) for item in announcements.in_batch(connection, batch)]
    else:
        last = editions.latest_period(connection, frequency)
        start = archive if last is None else last.period_start if last.completed_at is None else last.period_end
        pending = announcements.in_window(connection, start, None)
    unknown, renamed = unannounced(announcements.identities(connection), published)
    floor = announcement_floor(connection)
    fresh = [
        Announcement(post.id, post.date, announced_at(post.date, floor, now), now, "") for post in unknown if post.id not in renamed
    ]
    return pending + fresh

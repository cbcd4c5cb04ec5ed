"""Which posts go out to followers, and as what: the fediverse's counterpart of the digest announcements.

Called after each rebuild's announcements (`publish_to_followers`). A post the digest rules announced (never the
archive found at first start, drafts or future posts before their time) and not yet published to the fediverse
goes out as `Create`; a published one whose object changed (an edit) as `Update`; one no longer published
(unpublished, made a draft, deleted) as `Delete` of a `Tombstone`. The first call records what is already
published as the archive: served and listed in the outbox, never pushed. The object, the activity and its
deliveries are written in one transaction, so a crash leaves a post either fully queued or not at all (and the
next rebuild queues it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.fediverse import objects
from feedsvc.fediverse.objects import Urls
from feedsvc.logging import fields
from feedsvc.posts import Post, Scan
from feedsvc.posts.readers import split
from feedsvc.posts.render import rendered
from feedsvc.posts.source import SourceError, decode
from feedsvc.store import announcements
from feedsvc.store import fediverse as store

log = logging.getLogger(__name__)

STARTED = "started"


@dataclass(frozen=True, slots=True)
class Federated:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    deliveries: int = 0  # deliveries queued by this call

    @property
    def any(self) -> bool:
        return bool(self.deliveries)


def publish_to_followers(settings: Settings, engine: Engine, scan: Scan, now: datetime) -> Federated:
    """Queue Create/Update/Delete for what changed since the last call (nothing when the fediverse is off)."""
    if not settings.fediverse.enabled:
        return Federated()
    urls = Urls.of(settings)
    published = {post.id: post for post in scan.published(now)}
    created = updated = deleted = queued = 0
    with engine.connect() as connection:
        first_run = store.state(connection, STARTED) is None
        known = store.known_objects(connection)
        announced = published.keys() & announcements.identities(connection).keys()
        for post_id in sorted(announced):
            post = published[post_id]
            before = known.get(post_id)
            source_version = "{}:{}".format(*post.version)
            if before is not None and not before.deleted and before.source_version == source_version:
                continue  # the file is as it was: nothing to render
            obj = objects.post_object(settings, urls, post, rendered(post), untitled=is_untitled(post))
            digest = objects.digest(obj)
            kind = "Create" if before is None or before.deleted else "Update"
            if kind == "Update" and before is not None and before.digest == digest:
                # Saved again without a change that shows (a touch, a comment in front matter).
                store.save_object(connection, post_id=post_id, digest=digest, source_version=source_version, obj=obj,
                                  published_at=post.date, updated_at=None)
                connection.commit()
                continue
            if kind == "Update":
                obj["updated"] = objects.iso(now)
            store.save_object(connection, post_id=post_id, digest=digest, source_version=source_version, obj=obj,
                              published_at=post.date, updated_at=now if kind == "Update" else None)
            if not first_run:
                queued += _queue(connection, urls, kind, obj, f"{obj['id']}#{kind.lower()}-{digest[:16]}", now)
                created += kind == "Create"
                updated += kind == "Update"
            connection.commit()
        for post_id, item in known.items():
            if item.deleted or post_id in published:
                continue
            store.mark_deleted(connection, post_id, now)
            queued += _queue(connection, urls, "Delete", objects.tombstone(urls, post_id, now),
                             f"{urls.post(post_id)}#delete-{int(now.timestamp())}", now)
            deleted += 1
            connection.commit()
        if first_run:
            store.set_state(connection, STARTED, now.isoformat())
            connection.commit()
    result = Federated(created, updated, deleted, queued)
    if created or updated or deleted:
        log.info("fediverse.published", extra=fields(creates=created, updates=updated, deletes=deleted, deliveries=queued))
    return result


def is_untitled(post: Post) -> bool:
    """Written as a status: no front matter, and a first line that is text, not a heading (feedsvc still takes
    it as the title, for feeds and mails)."""
    try:
        source = split(decode(post.source.read_bytes()))
    except (OSError, SourceError):
        return False
    first = next((line.strip() for line in source.body.splitlines() if line.strip()), "")
    return source.meta is None and not first.startswith("#")


def _queue(connection, urls: Urls, kind: str, obj: dict, activity_id: str, now: datetime) -> int:
    activity = objects.activity(kind, urls, obj, activity_id=activity_id)
    return store.queue_activity(connection, activity_id, json.dumps(activity, ensure_ascii=False), now)


"""The ActivityPub documents feedsvc serves and sends: the actor, WebFinger, NodeInfo, posts and activities.

Data only: each function turns settings and posts into JSON-ready dicts, with no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

from feedsvc.config import Settings
from feedsvc.posts import Post, tag_slug
from feedsvc.posts.render import Rendered

ACTIVITY_JSON = "application/activity+json"
LD_JSON = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
PUBLIC = "https://www.w3.org/ns/activitystreams#Public"
CONTEXT: list[Any] = [
    "https://www.w3.org/ns/activitystreams",
    "https://w3id.org/security/v1",
    {
        "toot": "http://joinmastodon.org/ns#",
        "discoverable": "toot:discoverable",
        "indexable": "toot:indexable",
        "attributionDomains": {"@id": "toot:attributionDomains", "@type": "@id"},
        "Hashtag": "https://www.w3.org/ns/activitystreams#Hashtag",
    },
]
# A post without a title and with at most this many characters of text is a Note (a status), not an Article.
NOTE_MAX_CHARS = 500


@dataclass(frozen=True, slots=True)
class Urls:
    """Every URL of the actor, under the service's public URL."""

    base: str
    handle: str

    @classmethod
    def of(cls, settings: Settings) -> Urls:
        return cls(settings.web.base_url, settings.fediverse.handle)

    @property
    def host(self) -> str:
        return urlsplit(self.base).netloc

    @property
    def account(self) -> str:
        return f"{self.handle}@{self.host}"

    @property
    def actor(self) -> str:
        return f"{self.base}/fediverse/actor"

    @property
    def key_id(self) -> str:
        return f"{self.actor}#main-key"

    @property
    def inbox(self) -> str:
        return f"{self.actor}/inbox"

    @property
    def shared_inbox(self) -> str:
        return f"{self.base}/fediverse/inbox"

    @property
    def outbox(self) -> str:
        return f"{self.actor}/outbox"

    @property
    def followers(self) -> str:
        return f"{self.actor}/followers"

    @property
    def following(self) -> str:
        return f"{self.actor}/following"

    def post(self, post_id: str) -> str:
        return f"{self.base}/fediverse/posts/{quote(post_id, safe='')}"


def actor(settings: Settings, urls: Urls, public_pem: str) -> dict[str, Any]:
    fediverse = settings.fediverse
    document: dict[str, Any] = {
        "@context": CONTEXT,
        "id": urls.actor,
        "type": "Person",
        "preferredUsername": fediverse.handle,
        "name": fediverse.display_name or settings.site.title,
        "summary": fediverse.summary or settings.site.description,
        "url": settings.site.url,
        "inbox": urls.inbox,
        "outbox": urls.outbox,
        "followers": urls.followers,
        "following": urls.following,
        "endpoints": {"sharedInbox": urls.shared_inbox},
        "manuallyApprovesFollowers": False,
        "discoverable": True,
        "indexable": True,
        "attributionDomains": [urlsplit(settings.site.url).hostname],
        "publicKey": {"id": urls.key_id, "owner": urls.actor, "publicKeyPem": public_pem},
    }
    if fediverse.icon:
        document["icon"] = {"type": "Image", "url": fediverse.icon}
    return document


def webfinger(urls: Urls, profile_url: str) -> dict[str, Any]:
    return {
        "subject": f"acct:{urls.account}",
        "aliases": [urls.actor],
        "links": [
            {"rel": "self", "type": ACTIVITY_JSON, "href": urls.actor},
            {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": profile_url},
        ],
    }


def nodeinfo(version: str, local_posts: int) -> dict[str, Any]:
    return {
        "version": "2.1",
        "software": {"name": "feedsvc", "version": version, "homepage": "https://github.com/feedsvc/feedsvc"},
        "protocols": ["activitypub"],
        "services": {"inbound": [], "outbound": ["atom1.0", "rss2.0"]},
        "openRegistrations": False,
        "usage": {"users": {"total": 1, "activeMonth": 1, "activeHalfyear": 1}, "localPosts": local_posts},
        "metadata": {},
    }


def _plain_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def post_object(
    settings: Settings, urls: Urls, post: Post, html: Rendered, *, untitled: bool = False
) -> dict[str, Any]:
    """The post (its `html` as `posts.render.rendered` gives it) as an `Article`, addressed to the public and the
    followers; as a `Note` (a status, its first line part of the text) when `untitled` and at most
    NOTE_MAX_CHARS long."""
    content = html.content_html
    is_note = untitled and len(post.title) + len(_plain_text(content)) <= NOTE_MAX_CHARS
    if is_note:
        content = f"<p>{_escape(post.title)}</p>{content}"
    tags = [
        {"type": "Hashtag", "href": f"{settings.site.url}/tags/{tag_slug(tag)}/", "name": f"#{tag_slug(tag).replace('-', '')}"}
        for tag in post.tags
    ]
    document: dict[str, Any] = {
        "id": urls.post(post.id),
        "type": "Note" if is_note else "Article",
        "attributedTo": urls.actor,
        "url": post.url,
        "published": iso(post.date),
        "to": [PUBLIC],
        "cc": [urls.followers],
        "content": content,
        "mediaType": "text/html",
        "tag": tags,
    }
    if not is_note:
        document["name"] = post.title
        document["summary"] = html.summary_html
        # Servers that show only Notes (Mastodon before 4.x shows Articles as a link) show this.
        document["preview"] = {
            "type": "Note",
            "attributedTo": urls.actor,
            "content": f'<p><a href="{post.url}">{_escape(post.title)}</a></p>{html.summary_html}',
        }
    if post.updated and post.updated > post.date:
        document["updated"] = iso(post.updated)
    if post.image:
        document["image"] = {"type": "Image", "url": post.image}
        document["attachment"] = [{"type": "Image", "url": post.image, "name": post.title}]
    return document


def digest(obj: dict[str, Any]) -> str:
    """What tells an edit: a hash of the object as it would be sent."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def activity(kind: str, urls: Urls, obj: dict[str, Any] | str, *, activity_id: str, to: list[str] | None = None) -> dict[str, Any]:
    return {
        "@context": CONTEXT,
        "id": activity_id,
        "type": kind,
        "actor": urls.actor,
        "to": to if to is not None else [PUBLIC],
        "cc": [] if to is not None else [urls.followers],
        "object": obj,
    }


def tombstone(urls: Urls, post_id: str, now: datetime) -> dict[str, Any]:
    return {"id": urls.post(post_id), "type": "Tombstone", "deleted": iso(now)}


def with_context(obj: dict[str, Any]) -> dict[str, Any]:
    return {"@context": CONTEXT, **obj}


def iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")

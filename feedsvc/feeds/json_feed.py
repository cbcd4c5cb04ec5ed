"""JSON Feed 1.1, written with the standard library's C encoder."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from feedsvc.feeds.items import FeedSet, Item, plain_text, xml_text

if TYPE_CHECKING:
    from feedsvc.feeds.render import FeedRenderer

FILE_NAME = "feed.json"
MEDIA_TYPE = "application/feed+json"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


def render_json(renderer: FeedRenderer, feed: FeedSet, items: list[Item]) -> bytes:
    document: dict[str, object] = {
        "version": JSON_FEED_VERSION,
        "title": xml_text(feed.title),
        "home_page_url": renderer.home,
        "feed_url": renderer.url(feed, FILE_NAME),
        "description": renderer.description,
        "language": renderer.site.language,
        "authors": [{"name": renderer.author}],
    }
    if renderer.hub:
        document["hubs"] = [{"type": "WebSub", "url": renderer.hub}]
    document["items"] = []
    # No indent: json's C encoder only runs without one, and feeds are for programs. Each item is encoded once
    # per version and reused by every feed it is in and by later rebuilds (encoding the full posts of a feed
    # again was a tenth of a one-edit rebuild's CPU); the document is what `json.dumps` gives with the items in.
    head = json.dumps(document, ensure_ascii=False).encode()
    assert head.endswith(_NO_ITEMS)
    encoded = b", ".join(renderer.prepared(item, _encoded_item) for item in items)
    return b"%s[%s]}\n" % (head[: -len(_NO_ITEMS)], encoded)


_NO_ITEMS = b"[]}"


def _encoded_item(item: Item) -> bytes:
    return json.dumps(_json_item(item), ensure_ascii=False).encode()


def _json_item(item: Item) -> dict[str, object]:
    document: dict[str, object] = {
        "id": item.id,
        "url": item.url,
        "title": item.title,
        "content_html": item.content_html,
    }
    summary = plain_text(item.summary_html)
    if summary:
        document["summary"] = summary
    if item.image:
        document["image"] = item.image
    document["date_published"] = item.published.isoformat()
    if item.updated:
        document["date_modified"] = item.updated.isoformat()
    document["authors"] = [{"name": item.author}]
    if item.tags:
        document["tags"] = list(item.tags)
    return document

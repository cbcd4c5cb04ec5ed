"""RSS 2.0 (feedgen): `<description>` is the summary, `<content:encoded>` the full post, `dc:creator` the
author."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feedgen.ext.base import BaseExtension

from feedsvc.feeds.items import FeedSet, Item

if TYPE_CHECKING:
    from feedsvc.feeds.render import FeedRenderer

FILE_NAME = "rss.xml"
MEDIA_TYPE = "application/rss+xml"
ATOM_NS = "http://www.w3.org/2005/Atom"


class _RssHub(BaseExtension):
    """feedgen writes only the self atom:link into RSS; this adds `<atom:link rel="hub">` for WebSub."""

    hub = ""

    def extend_ns(self) -> dict[str, str]:
        return {"atom": ATOM_NS}

    def extend_rss(self, feed):
        channel = feed.find("channel")
        # Right after the self link, where readers look for it.
        position = list(channel).index(channel.find(f"{{{ATOM_NS}}}link")) + 1
        link = channel.makeelement(f"{{{ATOM_NS}}}link", {"href": self.hub, "rel": "hub"})
        channel.insert(position, link)
        return feed


def render_rss(renderer: FeedRenderer, feed: FeedSet, items: list[Item]) -> bytes:
    generator = renderer.generator(feed, items, FILE_NAME, MEDIA_TYPE)
    generator.load_extension("dc", atom=False, rss=True)  # dc:creator: RSS <author> must be an email address
    if renderer.hub:
        generator.register_extension("websub", _RssHub, atom=False, rss=True)
        generator.websub.hub = renderer.hub
    for item in items:
        generator.add_entry(renderer.prepared(item, renderer.feed_entry), order="append")
    return generator.rss_str(pretty=True)

"""Atom 1.0 (feedgen): the full post as `content`, the summary as `summary`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feedsvc.feeds.items import FeedSet, Item

if TYPE_CHECKING:
    from feedsvc.feeds.render import FeedRenderer

FILE_NAME = "atom.xml"
MEDIA_TYPE = "application/atom+xml"


def render_atom(renderer: FeedRenderer, feed: FeedSet, items: list[Item]) -> bytes:
    generator = renderer.generator(feed, items, FILE_NAME, MEDIA_TYPE)
    for item in items:
        generator.add_entry(renderer.prepared(item, renderer.feed_entry), order="append")
    return generator.atom_str(pretty=True)

"""The feedgen entry of an item, which RSS and Atom share: each format writes only its own fields of it, so one
entry per item serves both (and every feed the item is in, through `FeedRenderer.prepared`)."""

from __future__ import annotations

from feedgen.entry import FeedEntry
from feedgen.ext.dc import DcEntryExtension

from feedsvc.feeds.items import Item


def feed_entry(item: Item) -> FeedEntry:
    entry = FeedEntry()
    entry.guid(item.id, permalink=False)
    entry.title(item.title)
    entry.link(href=item.url, rel="alternate", type="text/html")
    entry.published(item.published)
    entry.updated(item.last_change)
    if item.tags:
        entry.category([{"term": name} for name in item.tags])
    # RSS <description> is the summary, <content:encoded> the full post. description() first: it also sets Atom's
    # content, which content() then sets right (Atom <content type="html">; summary() leaves RSS's description).
    entry.description(item.summary_html or item.content_html)
    entry.content(item.content_html, type="html")
    if item.summary_html:
        entry.summary(item.summary_html, type="html")
    entry.author(name=item.author)  # Atom <author>; RSS <author> must be an email address, so without one:
    entry.register_extension("dc", DcEntryExtension, atom=False, rss=True)
    entry.dc.dc_creator(item.author)  # RSS dc:creator
    return entry

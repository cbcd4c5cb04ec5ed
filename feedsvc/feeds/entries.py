"""The feedgen entry of an item, which RSS and Atom share: each format writes only its own fields of it, so one
entry per item serves both (and every feed the item is in, through `FeedRenderer.prepared`)."""

from __future__ import annotations

import copy

from feedgen.entry import FeedEntry
from feedgen.ext.dc import DcEntryExtension
from lxml.etree import _Element

from feedsvc.feeds.items import Item


class _ReusedEntry(FeedEntry):
    """A feedgen entry that builds its RSS and Atom elements once and hands each feed a copy: in a writer that
    writes again and again (the service's build child), each rebuild writes the feeds of an edited post again, and
    building their entries' elements field by field was most of it (one edit at 10,000 posts: 20 of 38 ms of CPU;
    lxml copies an element in C). An entry is never changed once made (`feed_entry`), so its elements never go
    stale. Kept elements cost memory (a cold build of 1,000 posts: +20 MiB over its processes) and save a
    single write nothing, so a writer that writes once makes plain entries."""

    _rss: _Element | None = None
    _atom: _Element | None = None

    def rss_entry(self, extensions: bool = True) -> _Element:
        if self._rss is None:
            self._rss = super().rss_entry(extensions)
        return copy.deepcopy(self._rss)

    def atom_entry(self, extensions: bool = True) -> _Element:
        if self._atom is None:
            self._atom = super().atom_entry(extensions)
        return copy.deepcopy(self._atom)


def feed_entry(item: Item, *, keep_elements: bool = False) -> FeedEntry:
    entry = _ReusedEntry() if keep_elements else FeedEntry()
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

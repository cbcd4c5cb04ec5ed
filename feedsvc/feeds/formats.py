"""The feed formats: one entry each (file name, media type, label, render function), read by the writer, the
HTTP feed server (`web/feed_server.py`), the WebSub output and the home page's list of feeds.

A new format is a module beside `rss.py` with its FILE_NAME, MEDIA_TYPE and a render function, and one entry
in `FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from feedsvc.feeds import atom, json_feed, rss

if TYPE_CHECKING:
    from feedsvc.feeds.items import FeedSet, Item
    from feedsvc.feeds.render import FeedRenderer


@dataclass(frozen=True, slots=True)
class FeedFormat:
    file_name: str  # in the output folder and in its URL: rss.xml, tags/<slug>/rss.xml
    media_type: str  # the Content-Type it is served with (plus "; charset=utf-8") and its <link type>
    label: str  # how people know it ("RSS"), on the home page and in `feedsvc build`
    render: Callable[[FeedRenderer, FeedSet, list[Item]], bytes]


FORMATS: tuple[FeedFormat, ...] = (
    FeedFormat(rss.FILE_NAME, rss.MEDIA_TYPE, "RSS", rss.render_rss),
    FeedFormat(atom.FILE_NAME, atom.MEDIA_TYPE, "Atom", atom.render_atom),
    FeedFormat(json_feed.FILE_NAME, json_feed.MEDIA_TYPE, "JSON Feed", json_feed.render_json),
)
BY_FILE_NAME = {feed_format.file_name: feed_format for feed_format in FORMATS}
FEED_FILES = tuple(BY_FILE_NAME)

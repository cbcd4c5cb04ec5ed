"""Feeds: RSS 2.0 and Atom 1.0 (feedgen) and JSON Feed 1.1 for the whole site and for each tag.

Layout inside `feeds.output_dir` (served at the site root): one file per format of `formats.FORMATS`
(`rss.xml`, `atom.xml`, `feed.json`), and the same under `tags/<tag slug>/`. The bytes depend only on the
settings and the published posts — feed dates come from the posts, never the clock — so a rebuild with
unchanged input rewrites nothing.

Modules: `items` (a post as every format shows it, tag groups), one module per format (`rss`, `atom`,
`json_feed`), `entries` (the feedgen entry RSS and Atom share), `formats` (the registry), `render` (a feed in
every format, each item's entries made once and reused), `writer` (files and `build`).
"""

from feedsvc.feeds.atom import FILE_NAME as ATOM_FILE
from feedsvc.feeds.formats import BY_FILE_NAME, FEED_FILES, FORMATS, FeedFormat
from feedsvc.feeds.items import Item, TagGroup, tag_counts, tag_groups
from feedsvc.feeds.json_feed import FILE_NAME as JSON_FILE
from feedsvc.feeds.render import FeedRenderer
from feedsvc.feeds.rss import FILE_NAME as RSS_FILE
from feedsvc.feeds.writer import TAGS_DIR, BuildResult, FeedsReport, FeedWriter, build, replace_files

__all__ = [
    "ATOM_FILE",
    "BY_FILE_NAME",
    "FEED_FILES",
    "FORMATS",
    "JSON_FILE",
    "RSS_FILE",
    "TAGS_DIR",
    "BuildResult",
    "FeedFormat",
    "FeedRenderer",
    "FeedWriter",
    "FeedsReport",
    "Item",
    "TagGroup",
    "build",
    "replace_files",
    "tag_counts",
    "tag_groups",
]

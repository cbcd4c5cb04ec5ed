"""The feeds' bytes: one FeedSet rendered in every format of the registry, items prepared once per post."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import replace
from functools import partial
from typing import TypeVar
from urllib.parse import quote

from feedgen.feed import FeedGenerator

from feedsvc.config import Settings
from feedsvc.feeds.entries import feed_entry
from feedsvc.feeds.formats import FORMATS
from feedsvc.feeds.items import FeedSet, Item, _item_or_failure, feed_updated, xml_text
from feedsvc.parallel import fork_map
from feedsvc.posts import Post
from feedsvc.posts.render import Rendered, RenderedStore

# Items to render at once (a cold build) from which the rendering is shared over the CPUs.
_PARALLEL_RENDER_MIN = 200
# This process renders a larger share than a forked one, which starts later (the fork copies the page tables of a
# process holding every post, whose pages it then copies as it touches them) and sends its items back pickled:
# with even shares, this process waited 100 ms for it at 10,000 posts and 140 ms at 50,000.
_OWN_RENDER_SHARE = 1.25

T = TypeVar("T")


class FeedRenderer:
    """Turns one FeedSet into the bytes of its file in each format of `FORMATS`."""

    def __init__(self, settings: Settings, *, keep_elements: bool = False) -> None:
        """`keep_elements`: for a renderer that renders again and again, keep the XML of each entry (`entries`)."""
        self.site = settings.site
        # The feedgen entry of an item, which RSS and Atom share (`prepared` keeps one per item).
        self.feed_entry = partial(feed_entry, keep_elements=keep_elements)
        self.hub = settings.feeds.websub_hub
        self.home = f"{self.site.url}/"
        self.description = xml_text(self.site.description or self.site.title)
        self.author = xml_text(self.site.author or self.site.title)
        # Post id -> (post, item or why it cannot be rendered): a post object the collection hands over again is
        # not prepared again.
        self._items: dict[str, tuple[Post, Item | str]] = {}
        # (what makes it, item id, its categories) -> (the item, what was made of it): see `prepared`.
        self._prepared: dict[tuple[object, str, tuple[str, ...]], tuple[Item, object]] = {}
        # The posts' HTML from the last write of any process (a `feedsvc build` after one edit renders one post).
        self._store = RenderedStore(settings.store.dir / "rendered-posts.jsonl")

    def url(self, feed: FeedSet, filename: str) -> str:
        folder = f"{feed.folder}/" if feed.folder else ""
        return f"{self.site.url}/{quote(folder)}{filename}"  # a tag slug may hold non-ASCII letters

    def render(self, feed: FeedSet) -> dict[str, bytes]:
        items = [self.item(post) for post in feed.posts]
        if feed.tag is not None:
            # A tag feed's size must not grow with how many other tags its posts carry.
            category = (xml_text(feed.tag),)
            items = [replace(item, tags=category) for item in items]
        return {feed_format.file_name: feed_format.render(self, feed, items) for feed_format in FORMATS}

    def prepare(self, posts: Sequence[Post]) -> dict[str, str]:
        """Prepare the items of these posts that are not ready yet: rendering their HTML is most of a cold build,
        so a large batch of them is shared out over the CPUs. Returns the posts that cannot be rendered
        (post id -> why), which must be left out of the feeds."""
        missing = {
            post.id: post
            for post in posts
            if (cached := self._items.get(post.id)) is None or cached[0] is not post
        }
        posts_to_render = []
        for post in missing.values():
            stored = self._store.get(post)
            if stored is None:
                posts_to_render.append(post)
            else:
                self._items[post.id] = (post, _item_or_failure(post, self.author, stored))
        items = fork_map(
            partial(_item_or_failure, default_author=self.author, html=None),
            posts_to_render,
            min_items=_PARALLEL_RENDER_MIN,
            own_share=_OWN_RENDER_SHARE,
        )
        for post, item in zip(posts_to_render, items, strict=True):
            self._items[post.id] = (post, item)
            if isinstance(item, Item):
                self._store.put(post, Rendered(item.content_html, item.summary_html))
        outcomes = {post.id: self._items[post.id][1] for post in posts}
        return {post_id: outcome for post_id, outcome in outcomes.items() if isinstance(outcome, str)}

    def item(self, post: Post) -> Item:
        cached = self._items.get(post.id)
        if cached is None or cached[0] is not post:
            cached = self._items[post.id] = (post, Item.of(post, self.author))
        assert isinstance(cached[1], Item), "a post that cannot be rendered is kept out of every feed"
        return cached[1]

    def prepared(self, item: Item, make: Callable[[Item], T]) -> T:
        """What `make` makes of an item (a feedgen entry, a JSON Feed item), made once per version of the item and
        of its categories and reused by every feed and format it appears in, and by the next builds: a rebuild
        after one edit makes only the edited post's again."""
        key = (make, item.id, item.tags)
        cached = self._prepared.get(key)
        if cached is None or cached[0] != item:
            cached = self._prepared[key] = (item, make(item))
        return cached[1]  # type: ignore[return-value]

    def keep_only(self, post_ids: Container[str]) -> None:
        """Drop the prepared items of posts no longer published; keep the HTML of the others on disk."""
        for post_id in [post_id for post_id in self._items if post_id not in post_ids]:
            del self._items[post_id]
        live = {item.id for _, item in self._items.values() if isinstance(item, Item)}
        for key in [key for key, (item, _) in self._prepared.items() if item.id not in live]:
            del self._prepared[key]
        self._store.save(
            lambda: (
                (post, Rendered(item.content_html, item.summary_html))
                for post, item in self._items.values()
                if isinstance(item, Item)
            ),
            len(self._items),
        )

    def generator(self, feed: FeedSet, items: list[Item], filename: str, media_type: str) -> FeedGenerator:
        generator = FeedGenerator()
        generator.id(self.url(feed, filename))
        generator.title(xml_text(feed.title))
        generator.description(self.description)  # RSS <description>, Atom <subtitle>
        generator.author(name=self.author, email=self.site.author_email or None)
        generator.language(self.site.language)
        generator.generator("feedsvc")
        generator.docs("")
        generator.updated(feed_updated(items))
        # Order matters: feedgen takes the RSS channel <link> from the last link given.
        generator.link(href=self.url(feed, filename), rel="self", type=media_type)
        if self.hub:
            generator.link(href=self.hub, rel="hub")
        generator.link(href=self.home, rel="alternate", type="text/html")
        return generator

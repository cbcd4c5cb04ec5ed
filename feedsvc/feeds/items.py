"""A post as every feed format shows it (`Item`), the feeds' groups of posts (site-wide, one per tag) and the
text clean-ups all formats share."""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from feedsvc.posts import Post, tag_slug
from feedsvc.posts.model import failure, pickled_by_position
from feedsvc.posts.render import Rendered, rendered

# An empty feed still needs a date; a fixed one keeps its bytes stable.
EMPTY_FEED_DATE = datetime(1970, 1, 1, tzinfo=UTC)

# Characters XML 1.0 forbids (C0 controls except tab/newline/return, lone surrogates, U+FFFE/U+FFFF): lxml refuses
# them and readers choke on them, so they are dropped from every text that goes into a feed.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TAG = re.compile(r"<[^>]*>")
# Tags that end a line of text; the others (<em>, <a>...) sit inside a word's spacing and leave none of their own.
_BREAKING_TAG = re.compile(r"</?(?:p|br|div|li|h[1-6]|tr|td|th|blockquote|pre|figure|figcaption|hr|img)\b[^>]*>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def xml_text(text: str) -> str:
    return _XML_ILLEGAL.sub("", text)


def plain_text(fragment: str) -> str:
    """The text of an HTML fragment on one line (JSON Feed's `summary` is plain text)."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub("", _BREAKING_TAG.sub(" ", xml_text(fragment))))).strip()


def entry_id(post_id: str) -> str:
    """The id of a post in all three formats. Atom needs an IRI: an id set by hand that is not a URI gets a
    `urn:` prefix (the default ids are `urn:uuid:` already)."""
    return post_id if _URI_SCHEME.match(post_id) else f"urn:feedsvc:{post_id}"


@dataclass(slots=True)
class TagGroup:
    """One tag's feed: its display name (as the newest post spells it) and its newest posts."""

    name: str
    posts: list[Post] = field(default_factory=list)


def tag_groups(posts: Iterable[Post], limit: int, only: set[str] | None = None) -> dict[str, TagGroup]:
    """Tag slug -> newest `limit` posts with that tag (posts come newest first); `only` restricts the slugs."""
    groups: dict[str, TagGroup] = {}
    # With `only`, the walk stops once each of those tags has its `limit` posts.
    wanted = None if only is None else set(only)
    for post in posts:
        if wanted is not None and not wanted:
            break
        for slug, name in _tag_slugs(post.tags):
            if wanted is not None and slug not in wanted:
                continue
            group = groups.get(slug)
            if group is None:
                group = groups[slug] = TagGroup(name)
            if len(group.posts) < limit:
                group.posts.append(post)
            elif wanted is not None:
                wanted.discard(slug)
    return groups


def tag_counts(posts: Iterable[Post]) -> dict[str, tuple[str, int]]:
    """Tag slug -> (its name as the newest post spells it, how many posts have it), as `tag_groups` without a
    limit would tell, counted by tag combination (posts share few): what `feedsvc build` prints."""
    combinations = Counter(post.tags for post in posts)  # in the order each first appears: newest first
    counts: dict[str, tuple[str, int]] = {}
    for tags, count in combinations.items():
        for slug, name in _tag_slugs(tags):
            counts[slug] = (counts[slug][0], counts[slug][1] + count) if slug in counts else (name, count)
    return counts


_slugged: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}


def _tag_slugs(tags: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(slug, name) for each distinct tag slug of a post. Posts share a few tag combinations; slugging each
    combination once keeps a 10k-post rebuild fast."""
    slugged = _slugged.get(tags)
    if slugged is None:
        pairs: dict[str, str] = {}
        for name in tags:
            pairs.setdefault(tag_slug(name), name)
        slugged = _slugged[tags] = tuple(pairs.items())
    return slugged


@dataclass(frozen=True, slots=True)
class FeedSet:
    """The three files of one feed (site-wide or one tag) and what goes into them."""

    folder: str  # "" for the site, "tags/<slug>" for a tag
    title: str
    posts: Sequence[Post]
    tag: str | None = None  # the tag of a tag feed, its items' only category


@pickled_by_position  # a cold build's items come back from the rendering processes pickled
@dataclass(frozen=True, slots=True)
class Item:
    """A post as every feed shows it: texts cleaned for XML, dates without microseconds, full HTML rendered."""

    id: str
    url: str
    title: str
    author: str
    tags: tuple[str, ...]
    summary_html: str
    content_html: str
    image: str | None
    published: datetime
    updated: datetime | None

    @classmethod
    def of(cls, post: Post, default_author: str, html: Rendered | None = None) -> Item:
        """`html`: the post's as rendered before (an item's own texts, kept on disk), else it is rendered now."""
        html = rendered(post) if html is None else html
        return cls(
            id=entry_id(post.id),
            url=post.url,
            title=xml_text(post.title).strip() or post.slug or post.id,
            author=xml_text(post.author) or default_author,
            tags=tuple(xml_text(name) for name in post.tags),
            summary_html=xml_text(html.summary_html),
            content_html=xml_text(html.content_html),
            image=post.image,
            published=_date(post.date),
            updated=_date(post.updated) if post.updated else None,
        )

    @property
    def last_change(self) -> datetime:
        return self.updated or self.published


def _item_or_failure(post: Post, default_author: str, html: Rendered | None) -> Item | str:
    try:
        return Item.of(post, default_author, html)
    except Exception as exc:  # one post that breaks the renderer must not keep the others out
        return failure(exc)


def feed_updated(items: Sequence[Item]) -> datetime:
    """A feed's date: the latest date or update among its posts (never the clock, so output is reproducible)."""
    return max((item.last_change for item in items), default=EMPTY_FEED_DATE)


def _date(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)

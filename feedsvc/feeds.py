"""Feeds: RSS 2.0 and Atom 1.0 (feedgen) and JSON Feed 1.1 for the whole site and for each tag.

Layout inside `feeds.output_dir` (served at the site root): `rss.xml`, `atom.xml`, `feed.json`, and the same three
under `tags/<tag slug>/`. The bytes depend only on the settings and the published posts — feed dates come from
the posts, never the clock — so a rebuild with unchanged input rewrites nothing.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import quote

from feedgen.ext.base import BaseExtension
from feedgen.feed import FeedGenerator

from feedsvc.config import Settings
from feedsvc.parallel import fork_map
from feedsvc.posts import Collection, Post, Problem, Scan, tag_slug
from feedsvc.posts.model import failure
from feedsvc.posts.render import rendered

RSS_FILE = "rss.xml"
ATOM_FILE = "atom.xml"
JSON_FILE = "feed.json"
FEED_FILES = (RSS_FILE, ATOM_FILE, JSON_FILE)
TAGS_DIR = "tags"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ATOM_NS = "http://www.w3.org/2005/Atom"

# An empty feed still needs a date; a fixed one keeps its bytes stable.
EMPTY_FEED_DATE = datetime(1970, 1, 1, tzinfo=UTC)

# Characters XML 1.0 forbids (C0 controls except tab/newline/return, lone surrogates, U+FFFE/U+FFFF): lxml refuses
# them and readers choke on them, so they are dropped from every text that goes into a feed.
# Items to render at once (a cold build) from which the rendering is shared over the CPUs.
_PARALLEL_RENDER_MIN = 200
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


@dataclass(slots=True)
class FeedsReport:
    """What a write did, as absolute paths inside `feeds.output_dir`."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    # Why the write stopped early (a full disk, a read-only folder): the feeds not reached keep their last
    # complete version, and the writer's next write is a complete one.
    error: str | None = None
    # Posts left out because they could not be rendered (post id -> why): the others are published all the same.
    failed: dict[str, str] = field(default_factory=dict)

    def count(self, filename: str) -> int:
        """How many feeds of one format (RSS_FILE, ATOM_FILE, JSON_FILE) exist after the write."""
        return sum(1 for path in (*self.written, *self.unchanged) if path.name == filename)


class _RssHub(BaseExtension):
    """feedgen writes only the self atom:link into RSS; this adds `<atom:link rel="hub">` for WebSub."""

    hub = ""

    def extend_ns(self) -> dict[str, str]:
        return {"atom": ATOM_NS}

    def extend_rss(self, feed):  # type: ignore[no-untyped-def]
        channel = feed.find("channel")
        # Right after the self link, where readers look for it.
        position = list(channel).index(channel.find(f"{{{ATOM_NS}}}link")) + 1
        link = channel.makeelement(f"{{{ATOM_NS}}}link", {"href": self.hub, "rel": "hub"})
        channel.insert(position, link)
        return feed


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
    def of(cls, post: Post, default_author: str) -> Item:
        html = rendered(post)
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


class FeedRenderer:
    """Turns one FeedSet into the bytes of its RSS, Atom and JSON files."""

    def __init__(self, settings: Settings) -> None:
        self.site = settings.site
        self.hub = settings.feeds.websub_hub
        self.home = f"{self.site.url}/"
        self.description = xml_text(self.site.description or self.site.title)
        self.author = xml_text(self.site.author or self.site.title)
        # Post id -> (post, item or why it cannot be rendered): a post object the collection hands over again is
        # not prepared again.
        self._items: dict[str, tuple[Post, Item | str]] = {}

    def url(self, feed: FeedSet, filename: str) -> str:
        folder = f"{feed.folder}/" if feed.folder else ""
        return f"{self.site.url}/{quote(folder)}{filename}"  # a tag slug may hold non-ASCII letters

    def render(self, feed: FeedSet) -> dict[str, bytes]:
        items = [self.item(post) for post in feed.posts]
        if feed.tag is not None:
            # A tag feed's size must not grow with how many other tags its posts carry.
            category = (xml_text(feed.tag),)
            items = [replace(item, tags=category) for item in items]
        return {
            RSS_FILE: self.rss(feed, items),
            ATOM_FILE: self.atom(feed, items),
            JSON_FILE: self.json(feed, items),
        }

    def prepare(self, posts: Sequence[Post]) -> dict[str, str]:
        """Prepare the items of these posts that are not ready yet: rendering their HTML is most of a cold build,
        so a large batch of them is shared out over the CPUs. Returns the posts that cannot be rendered
        (post id -> why), which must be left out of the feeds."""
        missing = {
            post.id: post
            for post in posts
            if (cached := self._items.get(post.id)) is None or cached[0] is not post
        }
        posts_to_render = list(missing.values())
        items = fork_map(
            partial(_item_or_failure, default_author=self.author),
            posts_to_render,
            min_items=_PARALLEL_RENDER_MIN,
        )
        for post, item in zip(posts_to_render, items, strict=True):
            self._items[post.id] = (post, item)
        outcomes = {post.id: self._items[post.id][1] for post in posts}
        return {post_id: outcome for post_id, outcome in outcomes.items() if isinstance(outcome, str)}

    def item(self, post: Post) -> Item:
        cached = self._items.get(post.id)
        if cached is None or cached[0] is not post:
            cached = self._items[post.id] = (post, Item.of(post, self.author))
        assert isinstance(cached[1], Item), "a post that cannot be rendered is kept out of every feed"
        return cached[1]

    def forget_except(self, post_ids: Container[str]) -> None:
        """Drop the prepared items of posts no longer published."""
        for post_id in [post_id for post_id in self._items if post_id not in post_ids]:
            del self._items[post_id]

    def rss(self, feed: FeedSet, items: list[Item]) -> bytes:
        generator = self._generator(feed, items, RSS_FILE, "application/rss+xml")
        generator.load_extension(
            "dc", atom=False, rss=True
        )  # dc:creator: RSS <author> must be an email address
        if self.hub:
            generator.register_extension("websub", _RssHub, atom=False, rss=True)
            generator.websub.hub = self.hub
        for item in items:
            entry = self._entry(generator, item)
            entry.dc.dc_creator(item.author)
            # <description> = summary, <content:encoded> = the full post.
            entry.content(item.content_html)
            entry.description(item.summary_html or item.content_html)
        return generator.rss_str(pretty=True)

    def atom(self, feed: FeedSet, items: list[Item]) -> bytes:
        generator = self._generator(feed, items, ATOM_FILE, "application/atom+xml")
        for item in items:
            entry = self._entry(generator, item)
            entry.author(name=item.author)
            entry.content(item.content_html, type="html")
            if item.summary_html:
                entry.summary(item.summary_html, type="html")
        return generator.atom_str(pretty=True)

    def json(self, feed: FeedSet, items: list[Item]) -> bytes:
        document: dict[str, object] = {
            "version": JSON_FEED_VERSION,
            "title": xml_text(feed.title),
            "home_page_url": self.home,
            "feed_url": self.url(feed, JSON_FILE),
            "description": self.description,
            "language": self.site.language,
            "authors": [{"name": self.author}],
        }
        if self.hub:
            document["hubs"] = [{"type": "WebSub", "url": self.hub}]
        document["items"] = [_json_item(item) for item in items]
        # No indent: json's C encoder only runs without one, and feeds are for programs.
        return (json.dumps(document, ensure_ascii=False) + "\n").encode()

    def _generator(self, feed: FeedSet, items: list[Item], filename: str, media_type: str) -> FeedGenerator:
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

    @staticmethod
    def _entry(generator: FeedGenerator, item: Item):  # type: ignore[no-untyped-def]
        entry = generator.add_entry(order="append")
        entry.guid(item.id, permalink=False)
        entry.title(item.title)
        entry.link(href=item.url, rel="alternate", type="text/html")
        entry.published(item.published)
        entry.updated(item.last_change)
        if item.tags:
            entry.category([{"term": name} for name in item.tags])
        return entry


def _item_or_failure(post: Post, default_author: str) -> Item | str:
    try:
        return Item.of(post, default_author)
    except Exception as exc:  # noqa: BLE001 - one post that breaks the renderer must not keep the others out
        return failure(exc)


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


def feed_updated(items: Sequence[Item]) -> datetime:
    """A feed's date: the latest date or update among its posts (never the clock, so output is reproducible)."""
    return max((item.last_change for item in items), default=EMPTY_FEED_DATE)


def _date(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class FeedWriter:
    """Writes the feeds of a collection, rewriting only what changed.

    It remembers the published posts (id -> tags) of its previous write, so posts that became due or
    disappeared since get their tag feeds rewritten even when the caller does not name those tags.
    """

    def __init__(self, settings: Settings) -> None:
        self.output = settings.feeds.output_dir.resolve()
        self.limit = settings.feeds.items
        self.renderer = FeedRenderer(settings)
        self.site_title = settings.site.title
        self._previous: dict[str, tuple[str, ...]] | None = None  # post id -> tags

    def write(self, posts: Sequence[Post], tags: Iterable[str] | None = None) -> FeedsReport:
        """Write the feeds of `posts` (published, newest first).

        `tags=None` rewrites every feed and removes stale tag folders; a set of tag slugs limits the per-tag feeds
        to those (the site-wide feeds are always written). The first write of a writer is always complete.
        """
        current = {post.id: post.tags for post in posts}
        only = (
            None
            if tags is None or self._previous is None
            else set(tags) | _moved_tags(self._previous, current)
        )
        report = FeedsReport()
        self._previous = None  # a failed write leaves the next one complete
        while True:  # a post that cannot be rendered leaves room in its feeds for the next one
            if report.failed:
                posts = [post for post in posts if post.id not in report.failed]
            groups = tag_groups(posts, self.limit, only)
            failed = self.renderer.prepare(
                [*posts[: self.limit], *(post for group in groups.values() for post in group.posts)]
            )
            if not failed:
                break
            report.failed.update(failed)
        feed_sets = [FeedSet("", self.site_title, posts[: self.limit])] + [
            FeedSet(f"{TAGS_DIR}/{slug}", f"{self.site_title}: {group.name}", group.posts, group.name)
            for slug, group in sorted(groups.items())
        ]
        try:
            # Stale tag feeds go first: on a full disk, removing posts is what makes room for the rest.
            stale = self._tag_folders() if only is None else only
            for slug in sorted(stale - groups.keys()):
                self._remove(self.output / TAGS_DIR / slug, report)
            for feed in feed_sets:
                self._write(feed, report)
        except OSError as exc:
            report.error = f"cannot write the feeds in {self.output}: {exc.strerror or exc}"
            return report
        self._previous = {post.id: post.tags for post in posts}
        self.renderer.forget_except(current)
        return report

    def _write(self, feed: FeedSet, report: FeedsReport) -> None:
        folder = self.output / feed.folder
        folder.mkdir(parents=True, exist_ok=True)
        for filename, data in self.renderer.render(feed).items():
            path = folder / filename
            (report.written if write_if_changed(path, data) else report.unchanged).append(path)

    def _tag_folders(self) -> set[str]:
        tags = self.output / TAGS_DIR
        return {entry.name for entry in tags.iterdir() if entry.is_dir()} if tags.is_dir() else set()

    def _remove(self, folder: Path, report: FeedsReport) -> None:
        # Only our own files go; a folder holding anything else is left in place.
        for filename in FEED_FILES:
            path = folder / filename
            if path.is_file():
                path.unlink()
                report.removed.append(path)
        try:
            folder.rmdir()
        except OSError:
            pass


def _moved_tags(previous: dict[str, tuple[str, ...]], current: dict[str, tuple[str, ...]]) -> set[str]:
    """Slugs of the tags of posts that entered or left the published set, or whose tags changed."""
    moved: set[str] = set()
    for post_id, tags in current.items():
        before = previous.get(post_id)
        if before != tags:
            moved.update(slug for slug, _ in _tag_slugs(tags) + _tag_slugs(before or ()))
    for post_id in previous.keys() - current.keys():
        moved.update(slug for slug, _ in _tag_slugs(previous[post_id]))
    return moved


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically replace `path` with `data` unless it already holds exactly these bytes; True when written."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # served by a web server, possibly as another user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


@dataclass(frozen=True, slots=True)
class BuildResult:
    scan: Scan
    published: list[Post]
    report: FeedsReport

    @property
    def problems(self) -> list[Problem]:
        return list(self.scan.problems)

    @property
    def skipped(self) -> list[Problem]:
        """Problems that kept a post out of the feeds."""
        return [problem for problem in self.scan.problems if problem.severity == "error"]


def build(
    settings: Settings,
    collection: Collection | None = None,
    writer: FeedWriter | None = None,
    now: datetime | None = None,
    changed: Iterable[Path] | None = None,
) -> BuildResult:
    """One pass: scan the posts, write the feeds of those published at `now`. The CLI and the service call this;
    the service keeps its Collection and FeedWriter between calls so each pass only redoes what changed, and
    passes the files its watcher reported (`changed`) so the scan need not walk the whole folder."""
    collection = collection or Collection(settings)
    writer = writer or FeedWriter(settings)
    scan = collection.scan(changed)
    published = scan.published(now or datetime.now(UTC))
    report = writer.write(published, tags=scan.changed_tags)
    if report.failed:
        # What could not be rendered is a problem of its file, and is kept out of mails as well as feeds.
        problems = [
            collection.site.problem(
                post.source, None, f"cannot be rendered: {report.failed[post.id]}; not published"
            )
            for post in published
            if post.id in report.failed
        ]
        scan = scan.excluding(set(report.failed), problems)
        published = [post for post in published if post.id not in report.failed]
    return BuildResult(scan, published, report)

"""Writing the feeds into `feeds.output_dir`, rewriting only what changed, and `build`: scan, then write."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from feedsvc.config import Settings
from feedsvc.feeds.formats import FEED_FILES
from feedsvc.feeds.items import FeedSet, _tag_slugs, tag_groups
from feedsvc.feeds.render import FeedRenderer
from feedsvc.parallel import fork_map
from feedsvc.posts import Collection, Post, Problem, Scan

TAGS_DIR = "tags"
# Feeds to write at once (a complete write) from which the writing is shared over the CPUs.
_PARALLEL_WRITE_MIN = 16


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
        """How many feeds of one format (a file name of `FORMATS`) exist after the write."""
        return sum(1 for path in (*self.written, *self.unchanged) if path.name == filename)


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
        self._write_error: OSError | None = None  # the first failure of this process's part of a write

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
        except OSError as exc:
            report.error = f"cannot write the feeds in {self.output}: {exc.strerror or exc}"
            return report
        # Many feeds (a complete write) are rendered and written by several processes: feedgen's XML and the
        # fsync of each file are most of what is left of a cold build once the posts are parsed and rendered.
        self._write_error = None
        for written, unchanged, error in fork_map(self._write, feed_sets, min_items=_PARALLEL_WRITE_MIN):
            report.written += written
            report.unchanged += unchanged
            if error is not None and report.error is None:
                report.error = f"cannot write the feeds in {self.output}: {error.strerror or error}"
        if report.error is not None:
            return report
        self._previous = {post.id: post.tags for post in posts} if report.failed else current
        self.renderer.keep_only(current)
        return report

    def _write(self, feed: FeedSet) -> tuple[list[Path], list[Path], OSError | None]:
        """Write one feed's files: those written, those unchanged, and why it stopped. After a failure the process
        writes nothing more, so the feeds it has not reached keep their last complete version."""
        written: list[Path] = []
        unchanged: list[Path] = []
        if self._write_error is not None:
            return written, unchanged, None
        try:
            folder = self.output / feed.folder
            folder.mkdir(parents=True, exist_ok=True)
            for filename, data in self.renderer.render(feed).items():
                path = folder / filename
                (written if write_if_changed(path, data) else unchanged).append(path)
        except OSError as exc:
            self._write_error = exc
        return written, unchanged, self._write_error

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
        with contextlib.suppress(OSError):
            folder.rmdir()


def _moved_tags(previous: dict[str, tuple[str, ...]], current: dict[str, tuple[str, ...]]) -> set[str]:
    """Slugs of the tags of posts that entered or left the published set, or whose tags changed."""
    moved: set[str] = set()
    # (id, tags) pairs in one and not the other: a post that came or went, or both versions of one whose tags
    # changed. A set operation in C rather than a loop over every published post on each rebuild.
    for _, tags in previous.items() ^ current.items():
        moved.update(slug for slug, _ in _tag_slugs(tags))
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

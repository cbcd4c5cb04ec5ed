"""Writing the feeds into `feeds.output_dir`, rewriting only what changed, and `build`: scan, then write."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from feedsvc.config import Settings
from feedsvc.feeds.formats import FEED_FILES
from feedsvc.feeds.items import FeedSet, _tag_slugs, tag_groups
from feedsvc.feeds.render import FeedRenderer
from feedsvc.parallel import fork_map_shares
from feedsvc.posts import Collection, Post, Problem, Scan, replaced_places

TAGS_DIR = "tags"
# Feeds to write at once (a complete write) from which the writing is shared over the CPUs.
_PARALLEL_WRITE_MIN = 16
# Feeds whose files are replaced together (`replace_files`): their bytes are held in memory until then.
_BATCH_FEEDS = 8
# Files synced at once, at most.
_SYNC_THREADS = 8

# What happened to each feed of a write: files written, files unchanged, the error that stopped the write.
_Outcome = tuple[list[Path], list[Path], OSError | None]


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

    It remembers the published posts of its previous write, so posts that became due or
    disappeared since get their tag feeds rewritten even when the caller does not name those tags.
    """

    def __init__(self, settings: Settings, *, rewrites: bool = False) -> None:
        """`rewrites`: this writer will write again and again (the service's build child), and keeps more of what
        it made between writes."""
        self.output = settings.feeds.output_dir.resolve()
        self.limit = settings.feeds.items
        self.renderer = FeedRenderer(settings, keep_elements=rewrites)
        self.site_title = settings.site.title
        self._previous: tuple[Post, ...] | None = None  # the published posts of the last complete write
        self._published_ids: set[str] = set()  # their ids

    def write(self, posts: Sequence[Post], tags: Iterable[str] | None = None) -> FeedsReport:
        """Write the feeds of `posts` (published, newest first).

        `tags=None` rewrites every feed and removes stale tag folders; a set of tag slugs limits the per-tag feeds
        to those (the site-wide feeds are always written). The first write of a writer is always complete.
        """
        previous = self._previous
        places = None if previous is None else replaced_places(previous, posts)
        only = None if tags is None or previous is None else set(tags) | _moved_tags(previous, posts, places)
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
        for written, unchanged, error in fork_map_shares(
            self._write, feed_sets, min_items=_PARALLEL_WRITE_MIN
        ):
            report.written += written
            report.unchanged += unchanged
            if error is not None and report.error is None:
                report.error = f"cannot write the feeds in {self.output}: {error.strerror or error}"
        if report.error is not None:
            return report
        if places is None or report.failed:
            self._published_ids = {post.id for post in posts}
        self._previous = tuple(posts)
        self.renderer.keep_only(self._published_ids)
        return report

    def _write(self, feeds: list[FeedSet]) -> list[_Outcome]:
        """Write these feeds' files, `_BATCH_FEEDS` feeds at a time (`replace_files`): for each feed, the files
        written, those unchanged, and why it stopped. After a failure nothing more is written, so the feeds not
        reached keep their last complete version."""
        outcomes: list[_Outcome] = [([], [], None) for _ in feeds]
        for start in range(0, len(feeds), _BATCH_FEEDS):
            files: list[tuple[Path, bytes]] = []
            owners: list[int] = []  # the feed each file belongs to
            stopped = False
            for index in range(start, min(start + _BATCH_FEEDS, len(feeds))):
                folder = self.output / feeds[index].folder
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # the feeds before it are still written
                    outcomes[index] = ([], [], exc)
                    stopped = True
                    break
                for filename, data in self.renderer.render(feeds[index]).items():
                    files.append((folder / filename, data))
                    owners.append(index)
            replaced, error = replace_files(files)
            for (path, _), owner, new in zip(files, owners, replaced, strict=False):
                written, unchanged, _ = outcomes[owner]
                (written if new else unchanged).append(path)
            if error is not None:
                failed = owners[len(replaced)]
                outcomes[failed] = (*outcomes[failed][:2], error)
            if error is not None or stopped:
                break
        return outcomes

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


def _moved_tags(previous: Sequence[Post], current: Sequence[Post], places: list[int] | None) -> set[str]:
    """Slugs of the tags of posts that entered or left the published set, or whose tags changed; `places`: see
    `replaced_places`."""
    moved: set[str] = set()
    if places is not None:
        for place in places:
            if previous[place].tags != current[place].tags:
                moved.update(slug for slug, _ in _tag_slugs((*previous[place].tags, *current[place].tags)))
        return moved
    # (id, tags) pairs in one and not the other: a post that came or went, or both versions of one whose tags
    # changed. A set operation in C rather than a loop over every published post.
    before = {post.id: post.tags for post in previous}
    after = {post.id: post.tags for post in current}
    for _, tags in before.items() ^ after.items():
        moved.update(slug for slug, _ in _tag_slugs(tags))
    return moved


def replace_files(files: Sequence[tuple[Path, bytes]]) -> tuple[list[bool], OSError | None]:
    """Atomically replace each path with its bytes unless it already holds exactly these bytes. Returns whether
    each file was written (False: unchanged), for the files in place before any error, and the error that stopped
    the rest; no file is renamed after an error, and no temporary file is left.

    The new versions are all written, synced to disk together, then renamed into place in order: one fsync after
    another waited for a journal commit each (the 9 files of a one-edit rebuild: 4 to 50 ms, with other writers on
    the disk), where fsyncs running at once share one."""
    outcomes: list[bool | None] = [None] * len(files)  # None: not in place (yet)
    pending: list[tuple[int, str, int]] = []  # index of the file, its temporary file, that file's descriptor
    error: OSError | None = None
    try:
        for index, (path, data) in enumerate(files):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size == len(data) and path.read_bytes() == data:
                    outcomes[index] = False
                    continue
            descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            pending.append((index, temporary, descriptor))
            with open(descriptor, "wb", closefd=False) as file:
                file.write(data)
        _sync([descriptor for _, _, descriptor in pending])
        for index, temporary, _ in pending:
            os.chmod(temporary, 0o644)  # served by a web server, possibly as another user
            os.replace(temporary, files[index][0])
            outcomes[index] = True
    except OSError as exc:
        error = exc
    finally:
        for index, temporary, descriptor in pending:
            with contextlib.suppress(OSError):
                os.close(descriptor)
            if outcomes[index] is None:
                Path(temporary).unlink(missing_ok=True)
    done: list[bool] = []
    for outcome in outcomes:
        if outcome is None:
            break
        done.append(outcome)
    return done, error


def _sync(descriptors: list[int]) -> None:
    if len(descriptors) < 2:
        for descriptor in descriptors:
            os.fsync(descriptor)
        return
    # fsync lets go of the GIL. The pool's threads end with the `with`: a fork after it finds none.
    with ThreadPoolExecutor(min(len(descriptors), _SYNC_THREADS)) as pool:
        for _ in pool.map(os.fsync, descriptors):
            pass


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

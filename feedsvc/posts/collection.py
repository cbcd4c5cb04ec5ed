"""The post collection: an incremental scan of the posts folder, with a parse cache that survives restarts."""

from __future__ import annotations

import bisect
import errno
import os
import pickle
import re
import stat
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from feedsvc import __version__
from feedsvc.config import Settings
from feedsvc.parallel import collector_paused, fork_chunks
from feedsvc.posts.fields import Site
from feedsvc.posts.model import (
    Post,
    Problem,
    brief,
    is_published,
    pickled_by_position,
    problem_order,
    shown_path,
    tag_slug,
)
from feedsvc.posts.parse import read_post
from feedsvc.posts.readers import convention_for

_CACHE_VERSION = 3  # bump when what a cache entry holds changes
# Hidden files and editors' scratch files: vim (.x.swp, x~, 4913), emacs (.#x, #x#), JetBrains (x___jb_tmp___),
# backups and partial downloads. The watcher uses the same rule, so such a file never triggers a rebuild.
_IGNORED_NAME = re.compile(r"(^[.#]|~$|\.sw[a-p]$|^4913$|\.(tmp|bak|part|crdownload)$|___jb_\w+___$)")


@dataclass
class Scan:
    posts: list[Post]  # newest first
    problems: list[Problem]
    changed_ids: set[str]
    changed_tags: set[str]
    # The places in `posts` (ascending) of the drafts and of the posts with an expiry date: the only posts that
    # a date at or before `now` does not make published. Then the posts dated after `now` are a prefix of
    # `posts`, and the others are published but for these, so neither question looks at every post (each was
    # asked several times per rebuild: 20 ms each at 50,000 posts). None: not known, every post is looked at.
    held: Sequence[int] | None = None

    def published(self, now: datetime) -> list[Post]:
        if self.held is None:
            return [post for post in self.posts if is_published(post, now)]
        begin = _first_due(self.posts, now)
        published: list[Post] = []
        for place in self.held:
            if place >= begin and not is_published(self.posts[place], now):
                published += self.posts[begin:place]
                begin = place + 1
        return published + self.posts[begin:]

    def next_publication(self, now: datetime) -> datetime | None:
        """When the published posts next change: a post's date comes, or its expiry date (Hugo's)."""
        if self.held is None:
            moments = [
                moment
                for post in self.posts
                if not post.draft
                for moment in (post.date, post.expires)
                if moment is not None and moment > now
            ]
        else:
            due = _first_due(self.posts, now)
            held = [self.posts[place] for place in self.held]
            moments = [post.date for post in self.posts[:due] if not post.draft]
            moments += [post.expires for post in held if not post.draft and post.expires and post.expires > now]
        return min(moments, default=None)

    def excluding(self, post_ids: set[str], problems: list[Problem]) -> Scan:
        """This scan without these posts, which the `problems` found later (at rendering) keep out."""
        return Scan(
            [post for post in self.posts if post.id not in post_ids],
            sorted([*self.problems, *problems], key=problem_order),
            self.changed_ids,
            self.changed_tags,
        )


@dataclass(frozen=True)
class _Bounds:
    """What the walk may read: files whose path, links resolved, is inside the posts folder, and never
    feedsvc's own config file, store folder or feeds output folder (even when they sit inside it)."""

    root: str  # the posts folder, links resolved
    own: dict[str, str]  # folder of feedsvc's own inside `root`, links resolved -> what it is
    config: str | None  # the config file, links resolved
    config_file: tuple[int, int] | None  # its device and inode: a hard link to it is refused too

    @classmethod
    def of(cls, settings: Settings) -> _Bounds:
        root = os.path.realpath(settings.posts.dir)
        own = {
            os.path.realpath(settings.store.dir): "the store folder (store.dir)",
            os.path.realpath(settings.feeds.output_dir): "the feeds output folder (feeds.output_dir)",
        }
        config = os.path.realpath(settings.config_path) if settings.config_path else None
        try:
            config_file = _file_id(os.stat(config)) if config else None
        except OSError:
            config_file = None
        inside = {folder: what for folder, what in own.items() if _is_below(folder, root)}
        return cls(root, inside, config, config_file)

    def named_in(self, real_folder: str) -> frozenset[str]:
        """The names in `real_folder` (its path, links resolved) that `refusal` could refuse by their path: the config
        file and feedsvc's own folders, where they sit right there. Any other entry that is no link is refused
        only as a hard link to the config file (`is_config_file`)."""
        paths = [self.config, *self.own] if self.config else list(self.own)
        return frozenset(os.path.basename(path) for path in paths if os.path.dirname(path) == real_folder)

    def is_config_file(self, info: os.stat_result) -> bool:
        return self.config_file is not None and _file_id(info) == self.config_file

    def refusal(self, real: str, info: os.stat_result, linked: bool) -> str | None:
        """Why the file or folder at `real` (its path, links resolved) must not be read, or None."""
        if linked and not (real == self.root or _is_below(real, self.root)):
            return "symlink to a place outside the posts folder (posts.dir); not read"
        if real == self.config or self.is_config_file(info):
            return "is feedsvc's config file; never read as a post"
        for folder, what in self.own.items():
            # Only a link can lead below one of these without passing through it: a plain entry is checked
            # as the walk meets it.
            if real == folder or (linked and _is_below(real, folder)):
                return f"is {what} or inside it; never read as posts"
        return None

    def plainly_inside(self, path: Path, relative: str, info: os.stat_result) -> bool:
        """Whether a file a watcher reported is reached without a link and passes `refusal`."""
        real = os.path.realpath(path)
        if real != os.path.join(self.root, *relative.split("/")):
            return False
        return self.refusal(real, info, linked=True) is None

    def opened_refusal(self, path: Path, walked: os.stat_result, opened: os.stat_result) -> str | None:
        """Why an opened file must not be read: it is not the file the walk let through, and where its path
        leads now is refused (a link swapped in between the walk and the read)."""
        if _file_id(opened) == _file_id(walked):
            return None
        real = os.path.realpath(path)
        try:
            now = os.stat(real)
        except OSError:
            now = None
        if now is None or _file_id(now) != _file_id(opened):
            return "changed while it was being read; read again on the next change"
        return self.refusal(real, opened, linked=True)


def _file_id(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _is_below(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


@pickled_by_position
@dataclass(frozen=True, slots=True)
class _Entry:
    """What a file of this size and mtime parsed to."""

    size: int
    mtime_ns: int
    post: Post | None
    problems: tuple[Problem, ...]
    # The post's date as a timestamp, to sort 10,000 posts without asking a time zone 10,000 times.
    timestamp: float = 0.0


class _Share:
    """What one share of a large parse found: (relative path, parsed or not, problems not to cache) for each
    of its files, {relative path: entry}, and those entries pickled once, for the parse cache's snapshot and,
    from a forked process, for the way back (only the pickle is sent: the parent unpickles it once)."""

    __slots__ = ("entries", "found", "pickled")

    def __init__(
        self, found: list[tuple[str, bool, list[Problem]]], entries: dict[str, _Entry], pickled: bytes
    ) -> None:
        self.found = found
        self.entries = entries
        self.pickled = pickled

    def __reduce__(self) -> tuple[object, ...]:
        return _unpickled_share, (self.found, self.pickled)


def _unpickled_share(found: list[tuple[str, bool, list[Problem]]], pickled: bytes) -> _Share:
    return _Share(found, pickle.loads(pickled), pickled)


@dataclass
class _Found:
    files: dict[str, os.stat_result] = field(default_factory=dict)  # relative path -> stat
    problems: list[Problem] = field(default_factory=list)


class Collection:
    def __init__(self, settings: Settings, cache_path: Path | None = None) -> None:
        self.settings = settings
        self.site = Site.from_settings(settings)
        self.convention = convention_for(self.site)
        # What parsing depends on besides the file: entries made under other settings or code are not used.
        fingerprint = (
            __version__,
            _CACHE_VERSION,
            self.site.fingerprint,
            self.convention.fingerprint,
            settings.posts.max_file_bytes,
        )
        self.bounds = _Bounds.of(settings)
        self.cache = _Cache(cache_path or settings.store.dir / "posts-cache.pickle", fingerprint)
        self.parses = 0  # files this Collection looked into (the others came from the cache)
        self._entries: dict[str, _Entry] | None = None
        self._found: _Found | None = None  # files and problems seen by the last walk
        # Files of `_found` no scan could read (they have no entry): tried again on every scan.
        self._unread: set[str] = set()
        self._current: _Posts | None = None
        self._lock = threading.Lock()

    def scan(self, changed: Iterable[Path] | None = None) -> Scan:
        """Read what changed since the last scan. `changed`: paths a file watcher reported; then only they are
        looked at (the first scan, or a folder among them, still walks the whole posts folder)."""
        with self._lock:
            if self._entries is None:
                self._entries = self.cache.load()
            looked = None
            if changed is not None and self._found is not None:
                looked = self._look_at(self._found, changed)
            if looked is None:
                self._found = self._find()
            assert self._found is not None
            return self._scan(self._found, looked)

    def _scan(self, found: _Found, looked: set[str] | None) -> Scan:
        """`looked`: the only paths that changed since the last scan (None after a walk: any may have)."""
        assert self._entries is not None
        problems = list(found.problems)
        if looked is None:
            gone = self._entries.keys() - found.files.keys()
            candidates = found.files
        else:
            # Every other file still matches its entry, or has none because no scan could read it yet: those are
            # tried again on every scan, as after a walk. Not comparing 10,000 unchanged files keeps a one-file
            # rebuild cheap.
            gone = {
                relative for relative in looked if relative in self._entries and relative not in found.files
            }
            retried = (looked | self._unread) & found.files.keys()
            candidates = {relative: found.files[relative] for relative in sorted(retried)}
        changes: dict[str, _Entry | None] = dict.fromkeys(gone)
        stale = []
        for relative, info in candidates.items():
            entry = self._entries.get(relative)
            if entry is None or (entry.size, entry.mtime_ns) != (info.st_size, info.st_mtime_ns):
                stale.append((relative, info))
        parsed_files, pickled = self._parse_all(stale)
        for relative, parsed, failures in parsed_files:
            problems += failures
            if parsed is not None or relative in self._entries:
                changes[relative] = parsed
        before = {relative: self._entries.get(relative) for relative in changes}
        _apply(self._entries, changes)
        if looked is None:
            self._unread = set(found.files.keys() - self._entries.keys())
        else:
            self._unread = {relative for relative in retried if relative not in self._entries}
        # After a cold parse, the pickles of its shares are the cache's snapshot as they are.
        if pickled is not None and sum(1 for _, parsed, _ in parsed_files if parsed is not None) < len(self._entries):
            pickled = None
        if changes or self.cache.stale:
            problems += self.cache.save(self._entries, changes, self.site, pickled)

        if changes or self._current is None:
            previous = self._current
            edited = _edited_in_place(previous, before, changes) if previous else None
            if edited:
                self._current, changed_ids, changed_tags = edited
            else:
                self._current = self._unique_posts()
                changed_ids, changed_tags = _changes(previous.by_id if previous else None, self._current.by_id)
        else:
            changed_ids, changed_tags = set(), set()
        problems += self._current.problems
        problems.sort(key=problem_order)
        return Scan(list(self._current.posts), problems, changed_ids, changed_tags, self._current.held)

    def _look_at(self, found: _Found, paths: Iterable[Path]) -> set[str] | None:
        """Update `found` for these paths alone: the relative paths of the post files among them, or None when one
        needs a full walk (a folder, a link...)."""
        extensions = self._extensions()
        looked: set[str] = set()
        for path in paths:
            path = Path(path)
            if not path.is_relative_to(self.site.posts_dir):
                continue
            relative = path.relative_to(self.site.posts_dir).as_posix()
            try:
                info = path.lstat()
            except FileNotFoundError:
                info = None
            except OSError:
                return None
            if info is not None and not stat.S_ISREG(info.st_mode):
                return None  # a folder appeared or went, a symlink, a device: let the walk sort it out
            if not self._is_post_file(relative, extensions):
                if info is None and any(known.startswith(relative + "/") for known in found.files):
                    return None  # a folder of posts went away
                continue
            if info is not None and not self.bounds.plainly_inside(path, relative, info):
                return None  # reached through a link, or one of feedsvc's own files: the walk's rules apply
            found.problems = [problem for problem in found.problems if problem.path != path]
            looked.add(relative)
            if info is None:
                found.files.pop(relative, None)
            else:
                found.files[relative] = info
        return looked

    def _find(self) -> _Found:
        found = _Found()
        root = self.site.posts_dir
        try:
            top = root.stat()
        except OSError as exc:
            found.problems.append(
                self.site.problem(root, None, f"posts folder cannot be read: {_reason(exc)}")
            )
            return found
        extensions = self._extensions()
        self._walk(root, self.bounds.root, "", extensions, {(top.st_dev, top.st_ino)}, found)
        return found

    def _walk(
        self,
        folder: Path,
        real_folder: str,
        prefix: str,
        extensions: tuple[str, ...],
        seen: set[tuple[int, int]],
        found: _Found,
    ) -> None:
        """Walk `folder`, whose path with every link resolved is `real_folder`."""
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            found.problems.append(self.site.problem(folder, None, f"folder cannot be read: {_reason(exc)}"))
            return
        named = self.bounds.named_in(real_folder)
        for entry in entries:
            name = entry.name
            if is_ignored_name(name):
                continue
            relative = prefix + name
            is_post = name.lower().endswith(extensions) and self.convention.is_post_file(relative)
            if not is_post and not (_is_folder(entry) and self.convention.walks(relative)):
                continue  # images and other files beside the posts: not even a stat
            try:
                info = entry.stat()
            except OSError as exc:
                if is_post:
                    found.problems.append(
                        self.site.problem(Path(entry.path), None, _stat_failure(entry, exc))
                    )
                continue
            # The common case, a plain post file: only a hard link to the config file is refused, and its path is
            # not made (50,000 joins and checks were a fifth of walking a folder of 50,000 posts).
            plain_file = stat.S_ISREG(info.st_mode) and name not in named and not entry.is_symlink()
            if plain_file and not self.bounds.is_config_file(info):
                if is_post:
                    found.files[relative] = info
                continue
            linked = entry.is_symlink()
            real = os.path.realpath(entry.path) if linked else os.path.join(real_folder, name)
            refusal = self.bounds.refusal(real, info, linked)
            if refusal is not None:
                # A link is someone's doing; one of feedsvc's folders in the posts folder is the config's.
                severity = "warning" if stat.S_ISDIR(info.st_mode) and not linked else "error"
                found.problems.append(self.site.problem(Path(entry.path), None, refusal, severity))
                continue
            if stat.S_ISDIR(info.st_mode):
                if is_post:
                    found.problems.append(
                        self.site.problem(
                            Path(entry.path),
                            None,
                            "is a folder, not a post file (the posts inside it are read)",
                        )
                    )
                if (info.st_dev, info.st_ino) not in seen:  # a symlink back up the tree is walked once
                    seen.add((info.st_dev, info.st_ino))
                    self._walk(Path(entry.path), real, relative + "/", extensions, seen, found)
            elif is_post:
                if stat.S_ISREG(info.st_mode):
                    found.files[relative] = info
                else:
                    found.problems.append(self.site.problem(Path(entry.path), None, "not a regular file"))

    def _extensions(self) -> tuple[str, ...]:
        extensions = self.convention.extensions or self.settings.posts.extensions
        return tuple(extension.lower() for extension in extensions)

    def _is_post_file(self, relative: str, extensions: tuple[str, ...]) -> bool:
        parts = relative.split("/")
        return (
            not any(is_ignored_name(part) for part in parts)
            and relative.lower().endswith(extensions)
            and all(self.convention.walks("/".join(parts[:depth])) for depth in range(1, len(parts)))
            and self.convention.is_post_file(relative)
        )

    def _parse_all(
        self, stale: list[tuple[str, os.stat_result]]
    ) -> tuple[list[tuple[str, _Entry | None, list[Problem]]], list[bytes] | None]:
        """Parse these files: (relative path, entry, problems not to cache) for each, and with a large parse, the
        pickles of {relative path: entry} of its shares. A large cold parse (a first build, a cache made
        under other settings) is shared out over the CPUs; each process pickles what it parsed once, for both
        the way back and the parse cache."""
        self.parses += len(stale)
        root = self.site.posts_dir

        def parse(relative: str, info: os.stat_result) -> tuple[str, _Entry | None, list[Problem]]:
            problems: list[Problem] = []
            return relative, self._parse(root / relative, info, problems), problems

        def parse_share(files: list[tuple[str, os.stat_result]]) -> _Share:
            parsed = [parse(*file) for file in files]
            entries = {relative: entry for relative, entry, _ in parsed if entry is not None}
            found = [(relative, entry is not None, problems) for relative, entry, problems in parsed]
            return _Share(found, entries, pickle.dumps(entries, pickle.HIGHEST_PROTOCOL))

        if len(stale) < _PARALLEL_PARSE_MIN:
            return [parse(*file) for file in stale], None
        results: list[tuple[str, _Entry | None, list[Problem]]] = []
        pickled: list[bytes] = []
        # The entries live as long as the collection and hold no reference cycles: kept out of the cyclic
        # collector's later passes (over 50,000 posts, one took 250 ms while they were being sorted). An edit
        # replaces entries and posts without a cycle, so the old ones are still freed.
        with collector_paused(keep=True):
            shares = fork_chunks(
                parse_share, stale, min_items=_PARALLEL_PARSE_MIN, own_share=_OWN_PARSE_SHARE, pieces=_PARSE_PIECES
            )
            for share in shares:
                entries = share.entries
                results += [
                    (relative, entries[relative] if ok else None, problems)
                    for relative, ok, problems in share.found
                ]
                pickled.append(share.pickled)
        return results, pickled

    def _parse(self, path: Path, info: os.stat_result, problems: list[Problem]) -> _Entry | None:
        """Parse one file; None (and a problem, not cached) when it cannot be read at all."""
        limit = self.settings.posts.max_file_bytes
        if info.st_size > limit:
            return _Entry(
                info.st_size,
                info.st_mtime_ns,
                None,
                (
                    self.site.problem(
                        path,
                        None,
                        f"file is {info.st_size} bytes, over posts.max_file_bytes ({limit}); not read",
                    ),
                ),
            )
        try:
            with path.open("rb") as file:
                # The file opened must be one the walk let through: not a link swapped in since.
                refusal = self.bounds.opened_refusal(path, info, os.fstat(file.fileno()))
                if refusal is not None:
                    problems.append(self.site.problem(path, None, refusal))
                    return None
                # Asking for exactly what stat said (read(n) allocates n bytes up front); more only if it grew.
                data = file.read(info.st_size + 1)
                if len(data) > info.st_size:
                    data += file.read(limit + 1 - len(data))
        except OSError as exc:
            problems.append(self.site.problem(path, None, f"cannot read the file: {_reason(exc)}"))
            return None
        if len(data) > limit:
            problems.append(
                self.site.problem(path, None, f"file is over posts.max_file_bytes ({limit}); not read")
            )
            return None
        post, found = read_post(path, data, info.st_mtime_ns, self.convention)
        return _Entry(
            info.st_size, info.st_mtime_ns, post, tuple(found), post.date.timestamp() if post else 0.0
        )

    def _unique_posts(self) -> _Posts:
        """Every parsed post whose URL and id no earlier file (in path order) uses, newest first. Posts may share
        a slug where their URLs differ (a URL pattern with the date in it)."""
        assert self._entries is not None
        by_url: dict[str, Post] = {}
        by_id: dict[str, Post] = {}
        ranked: list[tuple[float, str, Post]] = []
        problems: list[Problem] = []
        for relative in sorted(self._entries):
            entry = self._entries[relative]
            problems += entry.problems
            post = entry.post
            if post is None:
                continue
            clash = (
                None  # the common case, without making the tuples below for each of 10,000 posts
                if post.url not in by_url and post.id not in by_id
                else next(
                    (what, index[key])
                    for key, index, what in ((post.url, by_url, "URL"), (post.id, by_id, "id"))
                    if key in index
                )
            )
            if clash is not None:
                what, first = clash
                # A URL clash is most often a slug used twice: say it in the words of the file.
                shown = f"slug {brief(post.slug)}" if what == "URL" and first.slug == post.slug else (
                    f"{what} {brief(post.url if what == 'URL' else post.id)}"
                )
                other = shown_path(first.source, self.site.root)
                problems.append(
                    self.site.problem(post.source, None, f"duplicate {shown}: {other} already uses it; skipped")
                )
            else:
                by_url[post.url] = by_id[post.id] = post
                ranked.append((entry.timestamp, post.slug, post))
        ranked.sort(reverse=True)
        posts = [post for _, _, post in ranked]
        return _Posts(posts, by_id, problems, _held(posts))


@dataclass(frozen=True)
class _Posts:
    """The posts of the last scan that changed anything, and the problems their files have."""

    posts: list[Post]
    by_id: dict[str, Post]
    problems: list[Problem]
    held: tuple[int, ...]  # see `Scan.held`


def _held(posts: Sequence[Post]) -> tuple[int, ...]:
    return tuple(place for place, post in enumerate(posts) if post.draft or post.expires is not None)


def _first_due(posts: Sequence[Post], now: datetime) -> int:
    """The place of the first post dated at or before `now` in `posts`, newest first."""
    return bisect.bisect_left(posts, True, key=lambda post: post.date <= now)


def _place(posts: Sequence[Post], post: Post) -> int | None:
    """Where `post` (this object) is in `posts`, newest first (by date, then slug); None if it is not there."""
    timestamp = post.date.timestamp()
    place = bisect.bisect_left(posts, -timestamp, key=lambda other: -other.date.timestamp())
    while place < len(posts) and posts[place].date.timestamp() == timestamp:  # the posts of the same date
        if posts[place] is post:
            return place
        place += 1
    return None


def _edited_in_place(
    current: _Posts, before: dict[str, _Entry | None], after: dict[str, _Entry | None]
) -> tuple[_Posts, set[str], set[str]] | None:
    """The common case of a rebuild, files edited with their URL and id kept: the new posts take the old ones'
    places without going over every file again (10,000 posts: 1 ms instead of 30; each old post is found by its
    date). None when anything else changed (a file added, removed, broken or renamed, a URL or id changed, a
    duplicate involved)."""
    replaced: dict[int, Post] = {}  # place in `current.posts` -> the new version of its post
    olds: list[Post] = []  # in the order of `replaced`
    paths: set[Path] = set()
    new_problems: list[Problem] = []
    for relative, entry in after.items():
        old_entry = before.get(relative)
        old = old_entry.post if old_entry else None
        new = entry.post if entry else None
        if (
            entry is None
            or old is None
            or new is None
            or (old.url, old.id) != (new.url, new.id)
            or current.by_id.get(old.id) is not old
            or (place := _place(current.posts, old)) is None
        ):
            return None
        replaced[place] = new
        olds.append(old)
        paths.add(old.source)
        new_problems += entry.problems
    posts = list(current.posts)
    for place, new in replaced.items():
        posts[place] = new
    if any(
        (new.date, new.slug) != (old.date, old.slug) for old, new in zip(olds, replaced.values(), strict=True)
    ):
        posts.sort(key=lambda post: (post.date.timestamp(), post.slug), reverse=True)  # nearly sorted: cheap
        held = _held(posts)
    else:
        held_places = set(current.held).difference(replaced)
        held_places.update(place for place, new in replaced.items() if new.draft or new.expires is not None)
        held = tuple(sorted(held_places))
    by_id = dict(current.by_id)
    changed_ids: set[str] = set()
    changed_tags: set[str] = set()
    for new in replaced.values():
        old = by_id[new.id]
        by_id[new.id] = new
        if old != new:
            changed_ids.add(new.id)
            changed_tags.update(tag_slug(tag) for tag in (*old.tags, *new.tags))
    problems = [problem for problem in current.problems if problem.path not in paths] + new_problems
    return _Posts(posts, by_id, problems, held), changed_ids, changed_tags


def _changes(previous: dict[str, Post] | None, current: dict[str, Post]) -> tuple[set[str], set[str]]:
    if previous is None:
        return set(current), {tag_slug(tag) for post in current.values() for tag in post.tags}
    changed = {
        post_id
        for post_id in previous.keys() | current.keys()
        if (old := previous.get(post_id)) is not (new := current.get(post_id)) and old != new
    }
    tags = {
        tag_slug(tag)
        for post_id in changed
        for post in (previous.get(post_id), current.get(post_id))
        if post is not None
        for tag in post.tags
    }
    return changed, tags


def is_ignored_name(name: str) -> bool:
    """Whether a file or folder name is hidden or an editor's scratch file, never a post."""
    return _IGNORED_NAME.search(name) is not None


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _stat_failure(entry: os.DirEntry[str], exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop: the link points back to itself"
    if entry.is_symlink() and exc.errno == errno.ENOENT:
        return f"dangling symlink: its target {brief(os.readlink(entry.path))} does not exist"
    return f"cannot read the file: {_reason(exc)}"


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


# Deltas appended before the snapshot is rewritten, at least (see `_Cache`).
_MIN_DELTAS = 50


class _Cache:
    """A pickle of {relative path: _Entry}: a full snapshot, then appended deltas (one per changing scan).

    Appending keeps a one-file rescan cheap with 10,000 posts; the snapshot is rewritten when the deltas
    outnumber a twentieth of the entries, so its cost spread over the rescans stays the same whatever the size
    (rewritten every 50 deltas, it was a fifth of a one-edit rebuild's CPU at 50,000 posts), and a load replays
    at most a twentieth as many deltas as the snapshot has entries.
    A cache that is corrupt, from other code or made under other settings is ignored: all is parsed again.
    Entries are keyed by size and mtime, so a delta lost in a crash only costs re-parsing those files.
    """

    def __init__(self, path: Path, fingerprint: tuple[object, ...]) -> None:
        self.path = path
        self.header = fingerprint
        self.stale = True  # the file on disk does not (yet) hold what we have
        self._deltas = 0
        self._size = 0

    def load(self) -> dict[str, _Entry]:
        try:
            with self.path.open("rb") as file:
                if pickle.load(file) != self.header:
                    return {}
                entries: dict[str, _Entry] = {}
                for _ in range(pickle.load(file)):  # the snapshot, in parts
                    entries.update(pickle.load(file))
                self.stale = False
                while self._load_delta(file, entries):
                    self._deltas += 1
        except Exception:  # an unreadable snapshot: every file is parsed again
            return {}
        self._size = len(entries)
        return entries

    def _load_delta(self, file: BinaryIO, entries: dict[str, _Entry]) -> bool:
        try:
            header, changes = pickle.load(file)
        except EOFError:
            return False
        except Exception:  # a delta cut short by a crash: keep what came before it
            self.stale = True  # and rewrite the file, or later deltas would land after the broken one
            return False
        if header != self.header:  # appended by a process running with other settings
            self.stale = True
            return False
        _apply(entries, changes)
        return True

    def save(
        self,
        entries: dict[str, _Entry],
        changes: dict[str, _Entry | None],
        site: Site,
        pickled: list[bytes] | None = None,
    ) -> list[Problem]:
        """`pickled`: pickles of dictionaries that together are `entries`, written as the snapshot if one is."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.stale or self._deltas > max(_MIN_DELTAS, self._size // 20) or len(changes) * 4 > self._size:
                # A name of our own: another process (the service, a `feedsvc build`) may be writing too.
                temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
                with temporary.open("wb") as file:
                    pickle.dump(self.header, file, pickle.HIGHEST_PROTOCOL)
                    parts = pickled or [pickle.dumps(entries, pickle.HIGHEST_PROTOCOL)]
                    pickle.dump(len(parts), file, pickle.HIGHEST_PROTOCOL)
                    for part in parts:
                        file.write(part)
                os.replace(temporary, self.path)
                self._deltas, self._size, self.stale = 0, len(entries), False
            else:
                with self.path.open("ab") as file:
                    file.write(pickle.dumps((self.header, changes), pickle.HIGHEST_PROTOCOL))
                self._deltas += 1
        except (OSError, pickle.PicklingError) as exc:
            self.stale = True
            return [site.problem(self.path, None, f"cannot write the posts cache: {exc}", "warning")]
        return []


# Cold parses of at least this many files go to several processes (below it, starting them costs more).
_PARALLEL_PARSE_MIN = 2000
# This process parses a smaller share than each forked one, as it also unpickles theirs (callgrind: a post
# costs about 525k instructions to parse and pickle, 92k to unpickle).
_OWN_PARSE_SHARE = 0.82
# Each share is parsed in this many pieces, so this process unpickles the others' pieces between its own
# rather than all at the end (`fork_chunks`); a piece of 50,000 posts' parse is about half a megabyte.
_PARSE_PIECES = 16


def _apply(entries: dict[str, _Entry], changes: dict[str, _Entry | None]) -> None:
    for relative, entry in changes.items():
        if entry is None:
            entries.pop(relative, None)
        else:
            entries[relative] = entry

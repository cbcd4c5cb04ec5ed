"""Serving the feed files (one per format of `feeds.FORMATS`, and tags/<tag>/…) from `feeds.output_dir`.

The hot path answers from memory: each feed file is held with its strong ETag, Last-Modified and its four possible
answers (`Answer`; the gzip body is compressed once, at the first request for it), so a GET does no compression and
a 304 touches no file and no database. `FeedsMiddleware` sends them through ASGI; the HTTP server's fast path (`feedsvc.web.server`)
writes the same answers itself, and both count them with the same `FeedRoute`.

Freshness: the feeds are written atomically (temp file + rename) by the builder, possibly in another process
(`feedsvc build`). An entry is re-checked with one `os.stat` at most once per `recheck_seconds` (the key is
mtime, size and inode, so a rename is always seen); the service also calls `refresh()` after each build of
its own so new feeds are served at once. Only files with a feed name are served, only from inside the folder.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path
from typing import cast

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from feedsvc.feeds.formats import FORMATS
from feedsvc.metrics import HTTP_REQUESTS, LoopCounts

# Told of each feed read: (URL path, client address or "", User-Agent or b"").
Observer = Callable[[str, str, bytes], None]

# File name -> Content-Type: only these files are served.
CONTENT_TYPES = {feed_format.file_name: f"{feed_format.media_type}; charset=utf-8".encode() for feed_format in FORMATS}


@dataclass(frozen=True, slots=True)
class Answer:
    """One of a feed file's four answers (plain or gzip, 200 or 304), made once per version of the file."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    # The headers as uvicorn writes them ("name: value\r\n" each): what the server's fast path sends.
    header_lines: bytes


def _answer(status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> Answer:
    return Answer(status, headers, body, b"".join(b"%s: %s\r\n" % header for header in headers))


@dataclass(slots=True)
class FeedFile:
    stat_key: tuple[int, int, int]  # mtime_ns, size, inode
    modified: int  # Last-Modified, whole seconds since the epoch
    etag: bytes
    gzip_etag: bytes
    body: bytes
    plain: Answer  # 200 without compression
    not_modified: Answer
    gzip_not_modified: Answer
    _gzip_headers: list[tuple[bytes, bytes]]  # of the 200 with gzip, but its length
    _gzip: Answer | None = None

    def gzip(self) -> Answer:
        """200 with gzip, compressed when first asked for: level 9 takes 25-40 ms for a 300 KB feed, which a new
        version's first 304 or plain GET (the save-to-served path) then does not wait for."""
        if self._gzip is None:
            body = gzip.compress(self.body, compresslevel=9, mtime=0)
            content = [(b"content-length", str(len(body)).encode()), (b"content-encoding", b"gzip")]
            self._gzip = _answer(200, [self._gzip_headers[0], *content, *self._gzip_headers[1:]], body)
        return self._gzip


def _stat_key(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def load_feed_file(path: Path, content_type: bytes, cache_control: bytes) -> FeedFile:
    with path.open("rb") as handle:
        # The key comes from the open file, so it always describes the bytes read (a rename may happen meanwhile).
        stat = os.fstat(handle.fileno())
        body = handle.read()
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    etag = f'"{digest}"'.encode()
    # A strong ETag names exact bytes, so the gzip representation has its own.
    gzip_etag = f'"{digest}-gz"'.encode()
    modified = int(stat.st_mtime)
    last_modified = formatdate(modified, usegmt=True).encode()
    common = [(b"last-modified", last_modified), (b"cache-control", cache_control), (b"vary", b"Accept-Encoding")]
    return FeedFile(
        stat_key=_stat_key(stat),
        modified=modified,
        etag=etag,
        gzip_etag=gzip_etag,
        body=body,
        plain=_answer(
            200,
            [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"etag", etag), *common],
            body,
        ),
        not_modified=_answer(304, [(b"etag", etag), *common]),
        gzip_not_modified=_answer(304, [(b"etag", gzip_etag), *common]),
        _gzip_headers=[(b"content-type", content_type), (b"etag", gzip_etag), *common],
    )


class FeedFiles:
    """The feed files of one output folder, held in memory and re-checked cheaply (see the module doc)."""

    def __init__(self, root: Path, *, max_age: int = 300, recheck_seconds: float = 1.0) -> None:
        self.root = root.resolve()
        self._cache_control = f"public, max-age={max_age}".encode()
        self._recheck = recheck_seconds
        self._entries: dict[str, tuple[FeedFile, float]] = {}  # URL path -> (file, monotonic time last checked)
        # The last listing of the folder and when it was taken: the same list object until the folder is
        # listed again, so that pages built from it can tell whether it changed.
        self._listing: tuple[list[str], float] = ([], float("-inf"))

    def refresh(self) -> None:
        """Re-check every file on its next request (call after writing feeds)."""
        self._entries = {path: (entry, float("-inf")) for path, (entry, _) in self._entries.items()}
        self._listing = (self._listing[0], float("-inf"))

    def get(self, url_path: str) -> FeedFile | None:
        cached = self._entries.get(url_path)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self._recheck:
            return cached[0]
        content_type = CONTENT_TYPES.get(url_path.rpartition("/")[2])
        if content_type is None:
            return None
        path = self._file_for(url_path)
        if path is None:
            return None
        try:
            if cached is not None and _stat_key(os.stat(path)) == cached[0].stat_key:
                self._entries[url_path] = (cached[0], now)
                return cached[0]
            entry = load_feed_file(path, content_type, self._cache_control)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
            self._entries.pop(url_path, None)
            return None
        self._entries[url_path] = (entry, now)
        return entry

    def paths(self) -> list[str]:
        """URL paths of the feeds on disk: the site feeds first, then each tag's. The folder is listed again
        at most once per `recheck_seconds` (and after `refresh()`); an unchanged listing is the same object."""
        listing, checked = self._listing
        now = time.monotonic()
        if now - checked < self._recheck:
            return listing
        found = self._list()
        self._listing = (listing if found == listing else found, now)
        return self._listing[0]

    def _list(self) -> list[str]:
        found = [f"/{name}" for name in CONTENT_TYPES if (self.root / name).is_file()]
        tags = self.root / "tags"
        if tags.is_dir():
            for tag in sorted(p.name for p in tags.iterdir() if p.is_dir()):
                found += [f"/tags/{tag}/{name}" for name in CONTENT_TYPES if (tags / tag / name).is_file()]
        return found

    def _file_for(self, url_path: str) -> Path | None:
        # Only /<feed> and /tags/<tag>/<feed>; no dot segments, no backslashes, nothing outside the folder.
        parts = url_path.lstrip("/").split("/")
        if len(parts) not in (1, 3) or (len(parts) == 3 and parts[0] != "tags"):
            return None
        if any(part in ("", ".", "..") or "\\" in part or "\x00" in part for part in parts):
            return None
        path = self.root.joinpath(*parts)
        return path if path.resolve().is_relative_to(self.root) else None


# The three forms of an HTTP-date (RFC 9110 5.6.7): IMF-fixdate, and the obsolete RFC 850 and asctime forms.
_HTTP_DATE_FORMATS = ("%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y")


@lru_cache(maxsize=256)
def _http_date(value: bytes) -> float | None:
    """The time an HTTP-date names; None for anything else (a list of dates too: RFC 9110 13.1.3 then
    says to ignore the header)."""
    text = value.decode("latin-1").strip()
    for form in _HTTP_DATE_FORMATS:
        try:
            return datetime.strptime(text, form).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def _quality(params: bytes) -> float:
    for param in params.split(b";"):
        key, _, value = param.strip().partition(b"=")
        if key.lower() == b"q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def _accepts_gzip(value: bytes) -> bool:
    anything = False
    for item in value.split(b","):
        name, _, params = item.partition(b";")
        name = name.strip().lower()
        if name in (b"gzip", b"x-gzip"):
            return _quality(params) > 0
        if name == b"*":
            anything = _quality(params) > 0
    return anything


def _etag_matches(value: bytes, entry: FeedFile) -> bool:
    if value == entry.etag or value == entry.gzip_etag:  # the tag a client was given, as it sends it back
        return True
    if value.strip() == b"*":
        return True
    # Weak comparison (RFC 9110 13.1.2): either representation's tag, with or without W/.
    tags = {tag.strip().removeprefix(b"W/") for tag in value.split(b",")}
    return entry.etag in tags or entry.gzip_etag in tags


def choose_answer(entry: FeedFile, headers: list[tuple[bytes, bytes]]) -> Answer:
    """The answer to a GET or HEAD of `entry` with these request headers (names lower-case)."""
    found = {name: value for name, value in headers if name in _CONDITIONS}  # the last of each
    return answer_for(entry, *(found.get(name) for name in _CONDITIONS))


_CONDITIONS = (b"accept-encoding", b"if-none-match", b"if-modified-since")  # answer_for's arguments


def answer_for(
    entry: FeedFile, accept_encoding: bytes | None, if_none_match: bytes | None, if_modified_since: bytes | None
) -> Answer:
    """`choose_answer` from the three request headers it depends on (the last of each; None when absent)."""
    use_gzip = accept_encoding is not None and _accepts_gzip(accept_encoding)
    if if_none_match is not None:
        not_modified = _etag_matches(if_none_match, entry)
    elif if_modified_since is not None:
        since = _http_date(if_modified_since)
        not_modified = since is not None and entry.modified <= since
    else:
        not_modified = False
    if not_modified:
        return entry.gzip_not_modified if use_gzip else entry.not_modified
    return entry.gzip() if use_gzip else entry.plain


def _request_counter_labels(key: Hashable) -> tuple[str, str, str]:
    method, status = cast(tuple[str, int], key)
    return (method, "feed", str(status))


class FeedRoute:
    """What serving a feed file involves besides the answer: the files, the request counter and the feed readers'
    tally. Shared by the ASGI middleware and the HTTP server's fast path (`feedsvc.web.server`), on the event
    loop's thread."""

    def __init__(self, files: FeedFiles, observe: Observer | None = None) -> None:
        self.files = files
        # Told of every feed request served, (path, client address, User-Agent): the dashboard's feed-reader counts.
        self.observe = observe
        # (method, status) -> answers: HTTP_REQUESTS{route="feed"}, added to it whenever the metrics are read.
        self.requests = LoopCounts(HTTP_REQUESTS, _request_counter_labels)

    def served(self, scope: Scope, status: int) -> None:
        """Count a GET or HEAD answered (`scope`: its method, path, headers and client)."""
        user_agent = next((value for name, value in scope["headers"] if name == b"user-agent"), b"")
        client = scope["client"][0] if scope.get("client") else ""
        self.answered(scope["method"], scope["path"], status, client, user_agent)

    def answered(self, method: str, path: str, status: int, client: str, user_agent: bytes) -> None:
        """Count a GET or HEAD answered, from what it is counted by."""
        self.count(method, status)
        if self.observe is not None:
            self.observe(path, client, user_agent)

    def count(self, method: str, status: int) -> None:
        """Count an answer (a feed read's, through `answered`, or a refused method's)."""
        counts = self.requests.counts
        counts[(method, status)] = counts.get((method, status), 0) + 1


class FeedsMiddleware:
    """Answers requests for feed files before the router (GET and HEAD; 405 for other methods); everything
    else goes on to `app`."""

    def __init__(self, app: ASGIApp, route: FeedRoute) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = self.route.files.get(scope["path"])
        if entry is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            refusal = PlainTextResponse("method not allowed: a feed is only read\n", 405, headers={"allow": "GET, HEAD"})
            await refusal(scope, receive, send)
            self.route.count(scope["method"], 405)
            return
        answer = choose_answer(entry, scope["headers"])
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body if scope["method"] == "GET" else b""})
        self.route.served(scope, answer.status)

"""Serving the feed files (one per format of `feeds.FORMATS`, and tags/<tag>/…) from `feeds.output_dir`.

The hot path answers from memory: each feed file is held with its precomputed strong ETag, Last-Modified and
gzip body, so a plain GET does no compression and a 304 touches no file and no database.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from functools import lru_cache
from pathlib import Path

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from feedsvc.feeds.formats import FORMATS
from feedsvc.metrics import HTTP_REQUESTS

# File name -> Content-Type: only these files are served.
CONTENT_TYPES = {feed_format.file_name: f"{feed_format.media_type}; charset=utf-8".encode() for feed_format in FORMATS}


@dataclass(frozen=True, slots=True)
class FeedFile:
    stat_key: tuple[int, int, int]  # mtime_ns, size, inode
    modified: int  # Last-Modified, whole seconds since the epoch
    etag: bytes
    gzip_etag: bytes
    body: bytes
    gzip_body: bytes
    headers: list[tuple[bytes, bytes]]  # for 200 without compression
    gzip_headers: list[tuple[bytes, bytes]]  # for 200 with gzip
    not_modified_headers: list[tuple[bytes, bytes]]
    gzip_not_modified_headers: list[tuple[bytes, bytes]]


def _stat_key(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def load_feed_file(path: Path, content_type: bytes, cache_control: bytes) -> FeedFile:
    with path.open("rb") as handle:
        # The key comes from the open file, so it always describes the bytes read (a rename may happen meanwhile).
        stat = os.fstat(handle.fileno())
        body = handle.read()
    gzip_body = gzip.compress(body, compresslevel=9, mtime=0)
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
        gzip_body=gzip_body,
        headers=[(b"content-type", content_type), (b"content-length", str(len(body)).encode()), (b"etag", etag), *common],
        gzip_headers=[
            (b"content-type", content_type),
            (b"content-length", str(len(gzip_body)).encode()),
            (b"content-encoding", b"gzip"),
            (b"etag", gzip_etag),
            *common,
        ],
        not_modified_headers=[(b"etag", etag), *common],
        gzip_not_modified_headers=[(b"etag", gzip_etag), *common],
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
    if value.strip() == b"*":
        return True
    # Weak comparison (RFC 9110 13.1.2): either representation's tag, with or without W/.
    tags = {tag.strip().removeprefix(b"W/") for tag in value.split(b",")}
    return entry.etag in tags or entry.gzip_etag in tags


class FeedsMiddleware:
    """Answers requests for feed files before the router (GET and HEAD; 405 for other methods); everything
    else goes on to `app`."""

    def __init__(self, app: ASGIApp, files: FeedFiles, observe: Callable[[Scope], None] | None = None) -> None:
        self.app = app
        self.files = files
        self.observe = observe  # told of every feed request served (the dashboard's feed-reader counts)
        self._counters: dict[tuple[str, int], object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        entry = self.files.get(scope["path"])
        if entry is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            refusal = PlainTextResponse("method not allowed: a feed is only read\n", 405, headers={"allow": "GET, HEAD"})
            await refusal(scope, receive, send)
            self._count(scope["method"], 405)
            return
        if_none_match = if_modified_since = None
        use_gzip = False
        for name, value in scope["headers"]:
            if name == b"accept-encoding":
                use_gzip = _accepts_gzip(value)
            elif name == b"if-none-match":
                if_none_match = value
            elif name == b"if-modified-since":
                if_modified_since = value
        if if_none_match is not None:
            not_modified = _etag_matches(if_none_match, entry)
        elif if_modified_since is not None:
            since = _http_date(if_modified_since)
            not_modified = since is not None and entry.modified <= since
        else:
            not_modified = False
        if not_modified:
            status = 304
            headers = entry.gzip_not_modified_headers if use_gzip else entry.not_modified_headers
            body = b""
        else:
            status = 200
            headers, body = (entry.gzip_headers, entry.gzip_body) if use_gzip else (entry.headers, entry.body)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
        self._count(scope["method"], status)
        if self.observe is not None:
            self.observe(scope)

    def _count(self, method: str, status: int) -> None:
        counter = self._counters.get((method, status))
        if counter is None:
            counter = self._counters[(method, status)] = HTTP_REQUESTS.labels(method, "feed", str(status))
        counter.inc()  # type: ignore[attr-defined]

"""What every post reader shares: a file's bytes to text, `Source` (front matter and body), and the bounds that
front matter must stay within before anything looks at its values.

The folder is untrusted input, so front matter is bounded before anything looks at its values: at most
MAX_FRONT_MATTER_BYTES of text, nested at most MAX_DEPTH deep, at most MAX_VALUES values once YAML aliases are
expanded (a 2 KB "billion laughs" file would otherwise become gigabytes as soon as anything walks it). The
readers of each front matter format are in `feedsvc.posts.readers`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^(=+|-+)[ \t]*$")

MAX_FRONT_MATTER_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_VALUES = 10_000
LONG_NUMBER = "invalid {kind} front matter: a number too long to read (over 4300 digits)"


class SourceError(Exception):
    """The file cannot be read as a post; `line` (1-based, in the file) when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True, slots=True)
class Source:
    meta: dict[str, Any] | None  # None: the file has no front matter
    body: str
    body_line: int  # line of the file where the body starts
    meta_text: str = ""  # the front matter as written, starting on line `meta_line`
    meta_line: int = 1

    def key_line(self, key: str) -> int | None:
        """The line where a front matter key is set (YAML `key:`, TOML `key =`, JSON `"key":`)."""
        # Keys are matched without case: Hugo's and Pelican's keys are case-insensitive.
        found = re.search(
            rf'^[ \t]*["\']?{re.escape(key)}["\']?[ \t]*[:=]', self.meta_text, re.MULTILINE | re.IGNORECASE
        )
        return self.meta_line + self.meta_text.count("\n", 0, found.start()) if found else None


def decode(data: bytes) -> str:
    """UTF-8 with or without BOM, any line endings -> text with \\n line endings."""
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise SourceError(
            f"binary file: NUL byte at offset {offset}, not a text post", data.count(b"\n", 0, offset) + 1
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (save the file as UTF-8)",
            line,
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise SourceError("empty file")
    return text


def fenced(
    text: str, closing: re.Pattern[str], fence: str, kind: str, parse: Callable[[str], Any]
) -> Source:
    start = text.index("\n") + 1
    end = closing.search(text, start)
    if end is None:
        raise SourceError(f"{kind} front matter opened by {fence} on line 1 is never closed", 1)
    raw = text[start : end.start()]
    check_size(len(raw), kind)
    body_start = text.find("\n", end.end())
    body = "" if body_start < 0 else text[body_start + 1 :]
    return Source(mapping(parse(raw), kind), body, raw.count("\n") + 3, raw, 2)


def title_line(text: str) -> tuple[str, str]:
    """No front matter: the first non-empty line (a heading's text) is the title, the rest the body."""
    lines = text.split("\n")
    index = next(i for i, line in enumerate(lines) if line.strip())
    title = lines[index].strip()
    heading = _HEADING.match(title)
    rest = index + 1
    if heading:
        title = heading.group(1)
    elif rest < len(lines) and _SETEXT.match(lines[rest]):
        rest += 1
    return title, "\n".join(lines[rest:])


def value_children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    return value if isinstance(value, list) else []


def plain_body(source: Source) -> str:
    """A feedsvc post's body: below the front matter, or below the title line in a file without it."""
    return title_line(source.body)[1] if source.meta is None else source.body


def check_size(size: int, kind: str) -> None:
    if size > MAX_FRONT_MATTER_BYTES:
        raise SourceError(
            f"{kind} front matter is {size} characters long, over the {MAX_FRONT_MATTER_BYTES} allowed; not read",
            1,
        )


def check_shape(root: Any, children: Callable[[Any], list[Any]], kind: str) -> None:
    """Refuse front matter nested deeper than MAX_DEPTH, holding more than MAX_VALUES values (each alias counted
    as often as it is used), or holding itself. Iterative, and each shared part is measured once: a bomb is
    refused after looking at its few kilobytes, not its expansion."""
    sizes: dict[int, int] = {}  # id of a finished part -> values it expands to
    path: set[int] = set()  # parts being measured: meeting one again is a cycle
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        part, done = stack.pop()
        key = id(part)
        if done:
            path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children(part))
            if sizes[key] > MAX_VALUES:
                raise SourceError(f"{kind} front matter expands to over {MAX_VALUES} values; not read", 1)
            continue
        if key in sizes:
            continue
        if key in path:
            raise SourceError(f"{kind} front matter refers to itself (a recursive alias); not read", 1)
        if len(path) >= MAX_DEPTH:
            raise SourceError(f"{kind} front matter is nested over {MAX_DEPTH} levels deep; not read", 1)
        path.add(key)
        stack.append((part, True))
        stack += [(child, False) for child in children(part)]


def mapping(meta: Any, kind: str) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise SourceError(
            f"{kind} front matter is a {type(meta).__name__}, not a mapping of keys to values", 1
        )
    return meta

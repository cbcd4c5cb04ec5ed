"""A post file's bytes to (front matter, body): YAML between ---, TOML between +++, or a JSON object on top.

The fence is split here and only the front matter goes to its parser (PyYAML's C loader, tomllib, json), the
same formats python-frontmatter reads, at a fraction of its cost on 10,000 files.

The folder is untrusted input, so front matter is bounded before anything looks at its values: at most
MAX_FRONT_MATTER_BYTES of text, nested at most MAX_DEPTH deep, at most MAX_VALUES values once YAML aliases are
expanded (a 2 KB "billion laughs" file would otherwise become gigabytes as soon as anything walks it).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The base loader leaves every scalar a string (parse.py reads dates, flags and numbers itself, as it must for
# JSON anyway): twice as fast as the safe loader's implicit typing, which matters on 10,000 files.
_YAML_LOADER = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^(=+|-+)[ \t]*$")
_TOML_LINE = re.compile(r"at line (\d+)")
_YAML_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)
_TOML_END = re.compile(r"^\+\+\+[ \t]*$", re.MULTILINE)

MAX_FRONT_MATTER_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_VALUES = 10_000
_LONG_NUMBER = "invalid {kind} front matter: a number too long to read (over 4300 digits)"


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
        found = re.search(rf'^[ \t]*["\']?{re.escape(key)}["\']?[ \t]*[:=]', self.meta_text, re.MULTILINE)
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


def split(text: str) -> Source:
    if text.startswith(("---\n", "--- \n")):
        return _fenced(text, _YAML_END, "---", "YAML", _parse_yaml)
    if text.startswith(("+++\n", "+++ \n")):
        return _fenced(text, _TOML_END, "+++", "TOML", _parse_toml)
    if text.startswith("{"):
        return _json(text)
    return Source(None, text, 1)


def _fenced(
    text: str, closing: re.Pattern[str], fence: str, kind: str, parse: Callable[[str], Any]
) -> Source:
    start = text.index("\n") + 1
    end = closing.search(text, start)
    if end is None:
        raise SourceError(f"{kind} front matter opened by {fence} on line 1 is never closed", 1)
    raw = text[start : end.start()]
    _check_size(len(raw), kind)
    body_start = text.find("\n", end.end())
    body = "" if body_start < 0 else text[body_start + 1 :]
    return Source(_mapping(parse(raw), kind), body, raw.count("\n") + 3, raw, 2)


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


def post_body(path: Path) -> str:
    """The body of a post file as it is now: "" when the file has gone or broken since it was scanned (the
    scan that follows the change reports it)."""
    try:
        source = split(decode(path.read_bytes()))
    except (OSError, SourceError):
        return ""
    return title_line(source.body)[1] if source.meta is None else source.body


def _parse_yaml(raw: str) -> Any:
    simple = simple_yaml(raw)
    if simple is not None:
        return simple
    loader = _YAML_LOADER(raw)
    try:
        # The node graph is measured before any Python value is made: an alias is one node used many times.
        node = loader.get_single_node()
        if node is None:
            return None
        _check_shape(node, _yaml_children, "YAML")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SourceError(f"invalid YAML front matter: {problem}", mark.line + 2 if mark else None) from None
    finally:
        loader.dispose()


def _yaml_children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _value_children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    return value if isinstance(value, list) else []


def _check_size(size: int, kind: str) -> None:
    if size > MAX_FRONT_MATTER_BYTES:
        raise SourceError(
            f"{kind} front matter is {size} characters long, over the {MAX_FRONT_MATTER_BYTES} allowed; not read",
            1,
        )


def _check_shape(root: Any, children: Callable[[Any], list[Any]], kind: str) -> None:
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


_SIMPLE_LINE = re.compile(r"([A-Za-z_][\w-]*):(?:[ \t]+(.*))?")
_SIMPLE_PLAIN = re.compile(r"""[^\s\-?:,\[\]{}#&*!|>'"%@`][^#]*""")
_SIMPLE_PLAIN_ITEM = re.compile(r"""[^\s\-?:,\[\]{}#&*!|>'"%@`][^#:,\[\]{}]*""")
_MAPPING_COLON = re.compile(r":(?:\s|$)")  # would make the value a mapping
_SIMPLE_QUOTED = re.compile(r""""([^"\\]*)"|'([^']*)'""")


def simple_yaml(raw: str) -> dict[str, Any] | None:
    """The front matter most posts have (`key: value` lines; quoted, plain or [flow, list] values) read
    without the YAML machinery, exactly as the base loader would read it; None for anything else."""
    meta: dict[str, Any] = {}
    for line in raw.split("\n"):
        if not line.strip(" "):
            continue
        found = _SIMPLE_LINE.fullmatch(line.rstrip())
        if found is None or not found.group(2):
            return None
        value = found.group(2)
        if value.startswith("[") and value.endswith("]"):
            items = [item.strip() for item in value[1:-1].split(",")] if value[1:-1].strip() else []
            scalars = [_simple_scalar(item, in_list=True) for item in items]
            if None in scalars:
                return None
            meta[found.group(1)] = scalars
        elif (scalar := _simple_scalar(value, in_list=False)) is not None:
            meta[found.group(1)] = scalar
        else:
            return None
    return meta


def _simple_scalar(text: str, in_list: bool) -> str | None:
    quoted = _SIMPLE_QUOTED.fullmatch(text)
    if quoted:
        return quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
    plain = _SIMPLE_PLAIN_ITEM if in_list else _SIMPLE_PLAIN
    if plain.fullmatch(text) and not _MAPPING_COLON.search(text):
        return text
    return None


def _parse_toml(raw: str) -> Any:
    try:
        meta = tomllib.loads(raw)
    except RecursionError:
        raise SourceError(f"TOML front matter is nested over {MAX_DEPTH} levels deep; not read", 1) from None
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE.search(str(exc))
        raise SourceError(
            f"invalid TOML front matter: {exc}", int(found.group(1)) + 1 if found else None
        ) from None
    except ValueError:
        raise SourceError(_LONG_NUMBER.format(kind="TOML"), 1) from None
    _check_shape(meta, _value_children, "TOML")
    return meta


def _json(text: str) -> Source:
    try:
        meta, end = json.JSONDecoder().raw_decode(text)  # C, linear: a whole 5 MB file takes milliseconds
    except RecursionError:
        raise SourceError(f"JSON front matter is nested over {MAX_DEPTH} levels deep; not read", 1) from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"invalid JSON front matter: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except ValueError:
        raise SourceError(_LONG_NUMBER.format(kind="JSON"), 1) from None
    _check_size(end, "JSON")
    _check_shape(meta, _value_children, "JSON")
    body = text[end:].lstrip(" \t").removeprefix("\n")
    return Source(_mapping(meta, "JSON"), body, text.count("\n", 0, end) + 2, text[:end], 1)


def _mapping(meta: Any, kind: str) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise SourceError(
            f"{kind} front matter is a {type(meta).__name__}, not a mapping of keys to values", 1
        )
    return meta

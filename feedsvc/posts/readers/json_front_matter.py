"""A JSON object on top of the file (Hugo's JSON front matter)."""

from __future__ import annotations

import json

from feedsvc.posts.source import (
    LONG_NUMBER,
    MAX_DEPTH,
    Source,
    SourceError,
    check_shape,
    check_size,
    mapping,
    value_children,
)

OPENINGS = ("{",)


def split(text: str) -> Source:
    try:
        meta, end = json.JSONDecoder().raw_decode(text)  # C, linear: a whole 5 MB file takes milliseconds
    except RecursionError:
        raise SourceError(f"JSON front matter is nested over {MAX_DEPTH} levels deep; not read", 1) from None
    except json.JSONDecodeError as exc:
        raise SourceError(f"invalid JSON front matter: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except ValueError:
        raise SourceError(LONG_NUMBER.format(kind="JSON"), 1) from None
    check_size(end, "JSON")
    check_shape(meta, value_children, "JSON")
    body = text[end:].lstrip(" \t").removeprefix("\n")
    return Source(mapping(meta, "JSON"), body, text.count("\n", 0, end) + 2, text[:end], 1)



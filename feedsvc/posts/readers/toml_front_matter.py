"""TOML front matter between `+++` lines (Hugo's default)."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from feedsvc.posts.source import (
    LONG_NUMBER,
    MAX_DEPTH,
    Source,
    SourceError,
    check_shape,
    fenced,
    value_children,
)

_TOML_LINE = re.compile(r"at line (\d+)")
_TOML_END = re.compile(r"^\+\+\+[ \t]*$", re.MULTILINE)

OPENINGS = ("+++\n", "+++ \n")


def split(text: str) -> Source:
    return fenced(text, _TOML_END, "+++", "TOML", _parse_toml)


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
        raise SourceError(LONG_NUMBER.format(kind="TOML"), 1) from None
    check_shape(meta, value_children, "TOML")
    return meta




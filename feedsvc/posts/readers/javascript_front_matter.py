"""Eleventy's JavaScript front matter between `---js` and `---`: the plain values it declares.

Either statements (`const title = "A post";`, Eleventy 3) or one object literal (`{ title: "A post" }`). The code is
never run: only names bound to a literal (a string, number, boolean, null, or a list of these) are read; a value
that is an expression or a function is left out, as a reader that does not run JavaScript has to.
"""

from __future__ import annotations

import json
import re
from typing import Any

from feedsvc.posts.source import Source, fenced

OPENINGS = ("---js\n", "---javascript\n")
_END = re.compile(r"^---[ \t]*$", re.MULTILINE)
_DECLARATION = re.compile(r"^[ \t]*(?:export[ \t]+)?(?:const|let|var)[ \t]+([A-Za-z_$][\w$]*)[ \t]*=[ \t]*(.+?)[ \t]*;?[ \t]*$", re.MULTILINE)
_PROPERTY = re.compile(r"""^[ \t]*["']?([A-Za-z_$][\w$-]*)["']?[ \t]*:[ \t]*(.+?)[ \t]*,?[ \t]*$""", re.MULTILINE)
# A string in single quotes or backticks (without ${...}), to be rewritten as a JSON string.
_OTHER_QUOTES = re.compile(r"'((?:[^'\\\n]|\\.)*)'|`((?:[^`\\$]|\\.|\$(?!\{))*)`")
_UNQUOTED_KEY = re.compile(r"([{,]\s*)([A-Za-z_$][\w$]*)\s*:")


def split(text: str) -> Source:
    return fenced(text, _END, "---js", "JavaScript", _parse)


def _parse(raw: str) -> dict[str, Any]:
    statements = _DECLARATION.findall(raw)
    pairs = statements if statements else _PROPERTY.findall(raw.strip().removeprefix("{").removesuffix("}"))
    values: dict[str, Any] = {}
    for name, written in pairs:
        value = _literal(written)
        if value is not _NOT_LITERAL:
            values[name] = value
    return values


_NOT_LITERAL = object()


def _literal(written: str) -> Any:
    as_json = _OTHER_QUOTES.sub(lambda found: json.dumps(_unescape(found.group(1) or found.group(2) or "")), written)
    as_json = _UNQUOTED_KEY.sub(r'\1"\2":', as_json).replace("undefined", "null")
    try:
        value = json.loads(as_json)
    except ValueError:
        return _NOT_LITERAL
    return value if not isinstance(value, dict) else _NOT_LITERAL


def _unescape(inner: str) -> str:
    return re.sub(r"\\(.)", lambda found: {"n": "\n", "t": "\t"}.get(found.group(1), found.group(1)), inner)

"""YAML front matter between `---` lines (Jekyll, Hugo, Eleventy, feedsvc's own posts).

The fence is split here and only the front matter goes to PyYAML's C loader, after the common `key: value`
lines have been tried without it (see benchmarks/front_matter.py for what that saves against python-frontmatter).
"""

from __future__ import annotations

import re
from typing import Any

from feedsvc.posts.source import Source, SourceError, check_shape, fenced

# PyYAML is imported by the functions that use it: the simple lines below need none of it, and a process that
# parses no post (a `digest send` with nothing new) does not pay for its import.
_YAML_END = re.compile(r"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)

OPENINGS = ("---\n", "--- \n")


def load_yaml(text: str) -> Any:
    """A whole YAML document with YAML's own types (a generator's config file, not a post's front matter)."""
    import yaml

    return yaml.safe_load(text)


def split(text: str) -> Source:
    return fenced(text, _YAML_END, "---", "YAML", parse_yaml)


def parse_yaml(raw: str) -> Any:
    simple = simple_yaml(raw)
    if simple is not None:
        return simple
    import yaml

    # The base loader leaves every scalar a string (parse.py reads dates, flags and numbers itself, as it must for
    # JSON anyway): twice as fast as the safe loader's implicit typing, which matters on 10,000 files.
    loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)(raw)
    try:
        # The node graph is measured before any Python value is made: an alias is one node used many times.
        node = loader.get_single_node()
        if node is None:
            return None
        check_shape(node, _yaml_children, "YAML")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SourceError(f"invalid YAML front matter: {problem}", mark.line + 2 if mark else None) from None
    finally:
        loader.dispose()


def _yaml_children(node: Any) -> list[Any]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


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




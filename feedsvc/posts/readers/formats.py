"""The front matter formats, each keyed by how a file opens."""

from __future__ import annotations

from collections.abc import Callable

from feedsvc.posts.readers import (
    javascript_front_matter,
    json_front_matter,
    toml_front_matter,
    yaml_front_matter,
)
from feedsvc.posts.source import Source

FORMATS: tuple[tuple[tuple[str, ...], Callable[[str], Source]], ...] = (
    (javascript_front_matter.OPENINGS, javascript_front_matter.split),  # before YAML's `---`
    (yaml_front_matter.OPENINGS, yaml_front_matter.split),
    (toml_front_matter.OPENINGS, toml_front_matter.split),
    (json_front_matter.OPENINGS, json_front_matter.split),
)

def split(text: str) -> Source:
    """A post file's text to its front matter (by the format its opening shows) and body."""
    for openings, reader in FORMATS:
        if text.startswith(openings):
            return reader(text)
    return Source(None, text, 1)

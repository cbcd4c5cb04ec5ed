"""`feedsvc init --from DIR`: a feedsvc.toml for an existing Hugo or Jekyll site, read from its own config."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from feedsvc.config import ConfigError
from feedsvc.posts.readers import CONVENTIONS, detect
from feedsvc.posts.source import SourceError

_SECTION = re.compile(r"^\[(\w+)\]\s*$")
_KEY = re.compile(r"^(\w+)\s*=")


def config_from_site(template: str, site_folder: Path, config_folder: Path) -> tuple[str, str, list[str]]:
    """The template with the site's settings filled in, the name of the generator found, and notes on what of the
    site's config feedsvc does not follow."""
    name = detect(site_folder)
    if name == "feedsvc":
        kinds = ", ".join(kind.__name__ for key, kind in CONVENTIONS.items() if key != "feedsvc")
        raise ConfigError(f"{site_folder} is not a site folder feedsvc knows ({kinds}): no config file of theirs")
    convention = CONVENTIONS[name]
    try:
        config = convention.read_config(site_folder)
        sections = convention.init_settings(config)
    except SourceError as exc:
        raise ConfigError(f"{site_folder}: {exc.message}") from None
    sections.setdefault("posts", {}).update(
        {"dir": os.path.relpath(site_folder, config_folder), "convention": name}
    )
    if site_folder == config_folder:
        # The generator writes its own site into public/ (and would remove feedsvc's files from there).
        sections["feeds"] = {"output_dir": "feedsvc-public"}
    return fill(template, sections), name, convention.init_notes(config)


def fill(template: str, sections: dict[str, dict[str, Any]]) -> str:
    """Set these keys on their lines of the commented template (each section's key is on one line)."""
    lines = template.split("\n")
    section = ""
    left = {(name, key) for name, values in sections.items() for key in values}
    for index, line in enumerate(lines):
        if found := _SECTION.match(line):
            section = found.group(1)
        elif (found := _KEY.match(line)) and (section, found.group(1)) in left:
            left.discard((section, found.group(1)))
            lines[index] = f"{found.group(1)} = {json.dumps(sections[section][found.group(1)], ensure_ascii=False)}"
    assert not left, f"the init template has no line for {sorted(left)}"
    return "\n".join(lines)

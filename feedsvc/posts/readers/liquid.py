"""Liquid in post bodies, as Jekyll and Eleventy render it: `{% raw %}`, `{% comment %}`, `{% highlight %}`,
`{% include %}` of a file that exists, `{{ variables }}` with the common filters. What a convention knows more
(Jekyll's `post_url`, `link`) it adds in `liquid_tag`; anything else is removed with a warning naming the line.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from feedsvc.posts.markup import MORE
from feedsvc.posts.readers.base import Convention, Warn, body_line
from feedsvc.posts.source import Source, SourceError, decode

_LIQUID = re.compile(r"\{%-?\s*(\w+)(.*?)-?%\}|\{\{-?\s*(.*?)\s*-?\}\}", re.DOTALL)
_KEPT_BLOCK = re.compile(r"\{%-?\s*raw\s*-?%\}(.*?)\{%-?\s*endraw\s*-?%\}", re.DOTALL)
_COMMENT = re.compile(r"\{%-?\s*comment\s*-?%\}.*?\{%-?\s*endcomment\s*-?%\}", re.DOTALL)
_HIGHLIGHT = re.compile(r"\{%-?\s*highlight\s+(\S+)[^%]*%\}\n?(.*?)\{%-?\s*endhighlight\s*-?%\}", re.DOTALL)
_MAX_INCLUDE_DEPTH = 4


class Liquid(Convention):
    """A convention whose post bodies are Liquid templates."""

    def body(self, path: Path, source: Source, warn: Warn) -> str:
        return self.liquid(source.body, path, source, warn, 0)

    def liquid_values(self, source: Source) -> dict[str, Any]:
        """The variables a body can use, by name."""
        return {}

    def includes_folder(self) -> str:
        """The folder `{% include %}` reads from, below the site folder."""
        return "_includes"

    def base_path(self) -> str:
        """What `relative_url` puts before a path (Jekyll's baseurl)."""
        return ""

    def liquid(self, text: str, path: Path, source: Source, warn: Warn, depth: int) -> str:
        if "{" not in text:
            return text
        kept: list[str] = []

        def keep(value: str) -> str:
            kept.append(value)
            return f"\x00{len(kept) - 1}\x00"

        text = _KEPT_BLOCK.sub(lambda found: keep(found.group(1)), text)
        text = _COMMENT.sub("", text)
        text = _HIGHLIGHT.sub(
            lambda found: keep(f"\n\n```{found.group(1)}\n{found.group(2).strip(chr(10))}\n```\n\n"), text
        )

        def expand(found: re.Match[str]) -> str:
            line = body_line(source, found.group(0))
            if found.group(3) is not None:
                return self.liquid_variable(found.group(3), source, line, warn)
            return self.liquid_tag(found.group(1), found.group(2).strip(), path, source, line, warn, depth)

        text = _LIQUID.sub(expand, text)
        return re.sub(r"\x00(\d+)\x00", lambda found: kept[int(found.group(1))], text)

    def liquid_tag(
        self, name: str, argument: str, path: Path, source: Source, line: int, warn: Warn, depth: int
    ) -> str:
        if name == "include" and depth < _MAX_INCLUDE_DEPTH:
            folder = self.folder / self.includes_folder()
            data = self.read_site_file(folder / argument.split()[0].strip("'\"")) if argument else None
            if data is not None:
                try:
                    return self.liquid(decode(data), path, source, warn, depth + 1)
                except SourceError:
                    pass
            warn(line, f"{{% include {argument} %}}: no such file in {self.includes_folder()}; removed")
            return ""
        if name == "more":
            return MORE
        warn(line, f"unknown Liquid tag {{% {name} %}}: removed")
        return ""

    def liquid_variable(self, expression: str, source: Source, line: int, warn: Warn) -> str:
        name, *filters = (part.strip() for part in expression.split("|"))
        value: Any = self.liquid_values(source)
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or isinstance(value, dict):
            warn(line, f"Liquid {{{{ {expression} }}}}: not a value feedsvc knows; removed")
            return ""
        shown = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        for applied in filters:
            if applied == "relative_url":
                shown = self.base_path() + "/" + shown.lstrip("/")
            elif applied == "absolute_url":
                shown = self.site.url + "/" + shown.lstrip("/")
            elif applied in ("escape", "xml_escape"):
                shown = html.escape(shown)
            elif applied == "upcase":
                shown = shown.upper()
            elif applied == "downcase":
                shown = shown.lower()
            else:
                warn(line, f"Liquid filter {applied!r} in {{{{ {expression} }}}}: not applied")
        return shown

"""The Jinja2 environment of the mails and the pages: the one place it is built.

Templates are looked up in the user's `mail.templates_dir` first, then in the bundled `templates/`
(`mail/…` for the mails, `web/…` for the pages), so a user overrides one file by copying it. HTML templates
are autoescaped; undefined names are errors. Every template sees the site, its words' language (`lang`) and
`_()`, the words of its part (`i18n.translator`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined

from feedsvc.config import Settings
from feedsvc.i18n import Part, language_of, translator
from feedsvc.resources import bundled_path


@lru_cache(maxsize=8)
def _environment(user_dir: Path | None) -> Environment:
    loaders = [FileSystemLoader(user_dir)] if user_dir else []
    loaders.append(FileSystemLoader(bundled_path("templates")))
    return Environment(
        loader=ChoiceLoader(loaders),
        autoescape=lambda name: name is not None and ".html" in name,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def environment(settings: Settings) -> Environment:
    return _environment(settings.mail.templates_dir)


def template_context(settings: Settings, part: Part) -> dict[str, object]:
    """What every template of `part` sees besides its own values."""
    return {
        "site": settings.site,
        "lang": language_of(settings.site.language),
        "_": translator(settings.site.language, part),
    }

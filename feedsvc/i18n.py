"""The words of the mails and pages in the site's language: gettext catalogs, one per language.

`feedsvc/locale/<language>/LC_MESSAGES/feedsvc.po` holds a language's words; a translator edits that file and
nothing else (docs/architecture.md, "Words and languages"). Each entry's msgid is a key, the one templates
and code ask for (`_("read_more")`), and its msgctxt says where it is shown: "mail" or "web" (the pages), so the
same key may read differently in a mail and on a page. A string that depends on a number is a plural entry
(`msgid_plural`, one `msgstr[n]` per form of the file's `Plural-Forms`: English has "1 post" and "2 posts",
Indonesian one form for every number), asked for with a `count` (`_("shortened", count=3)`).

The catalogs are compiled when first used, in memory with Babel (no build step), and kept per language. A key
the site's language lacks is taken from English; a key English lacks too is a `KeyError`.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Literal

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

# Where a string is shown: its msgctxt in the catalogs.
Part = Literal["mail", "web"]
PARTS: tuple[Part, ...] = ("mail", "web")
DEFAULT_LANGUAGE = "en"
DOMAIN = "feedsvc"
LOCALE_DIR = files("feedsvc") / "locale"
# Keys no bundled template or code asks for any more, kept because templates copied from earlier versions do.
KEPT_FOR_OLD_TEMPLATES = frozenset({("mail", "more_in_browser")})


def catalog_file(language: str) -> Traversable:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def languages() -> frozenset[str]:
    """The languages with a catalog."""
    return frozenset(
        folder.name for folder in LOCALE_DIR.iterdir() if folder.is_dir() and catalog_file(folder.name).is_file()
    )


def language_of(site_language: str) -> str:
    """The words' language for a site language tag such as "id", "id-ID" or "en_US" (English if none)."""
    primary = site_language.replace("_", "-").split("-")[0].lower()
    return primary if primary in languages() else DEFAULT_LANGUAGE


def date_locale(site_language: str) -> Locale:
    """The locale dates are written in: the site's own tag when Babel knows it ("en-GB"), else its words'."""
    try:
        return Locale.parse(site_language.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(language_of(site_language))


class _NoSuchKey(gettext.NullTranslations):
    """The end of every catalog's fallbacks: a key not even English has is a mistake, said as one."""

    def pgettext(self, context: str, message: str) -> str:
        raise KeyError(f"no {context} string {message!r} in the {DEFAULT_LANGUAGE} catalog ({catalog_file(DEFAULT_LANGUAGE)})")

    def npgettext(self, context: str, msgid1: str, msgid2: str, n: int) -> str:
        return self.pgettext(context, msgid1)


@dataclass(frozen=True)
class CompiledCatalog:
    translations: gettext.NullTranslations
    # The (part, key) of the entries that depend on a number.
    plurals: frozenset[tuple[str, str]]


@cache
def catalog(language: str) -> CompiledCatalog:
    """A language's catalog compiled from its .po, falling back to English (and English to `KeyError`)."""
    with catalog_file(language).open("rb") as po:
        messages = read_po(po, locale=language, domain=DOMAIN)
    # An entry with an empty translation is one not translated yet: English shows instead.
    for message in list(messages):
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.id and not all(strings):
            messages.delete(message.id, message.context)
    mo = io.BytesIO()
    write_mo(mo, messages)
    mo.seek(0)
    translations = Translations(mo, domain=DOMAIN)
    translations.add_fallback(catalog(DEFAULT_LANGUAGE).translations if language != DEFAULT_LANGUAGE else _NoSuchKey())
    plurals = frozenset((message.context or "", message.id[0]) for message in messages if message.pluralizable)
    return CompiledCatalog(translations, plurals)


Translate = Callable[..., str]


@lru_cache(maxsize=16)
def translator(site_language: str, part: Part) -> Translate:
    """`_(key, **values)` for templates and code: the `part` string of `key` in the site's language, formatted
    with the values (`_("greeting", name="Ana")`). A plural entry takes its form for `count`."""
    translations = catalog(language_of(site_language)).translations
    # Which keys are plural is the English catalog's to say (a language may still lack the entry).
    plurals = catalog(DEFAULT_LANGUAGE).plurals

    def translate(key: str, **values: object) -> str:
        if (part, key) in plurals:
            count = values.get("count")
            if not isinstance(count, int):
                raise KeyError(f"the {part} string {key!r} depends on a number: pass count=")
            text = translations.npgettext(part, key, key, count)
        else:
            text = translations.pgettext(part, key)
        return text.format(**values) if values else text

    return translate

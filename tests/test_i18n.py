"""The words' catalogs: every key the templates and the code ask for is in every language, every entry is asked
for, plurals follow each language's rule, and a new language is one copied .po."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from feedsvc import i18n
from feedsvc.cadences import CADENCES
from feedsvc.i18n import KEPT_FOR_OLD_TEMPLATES, PARTS, catalog_file, languages, translator
from feedsvc.store.dashboard import SUBSCRIBER_SORTS
from feedsvc.store.schema import DELIVERY_KINDS, DELIVERY_STATES
from feedsvc.vocabulary import STATUSES
from feedsvc.web.app import ERROR_KEYS
from feedsvc.web.forms import FIELD_LABELS

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
CODE = ROOT / "feedsvc"


def _extracted(folder: Path, method: str, pattern: str, keyword: str) -> set[str]:
    found = extract_from_dir(folder, method_map=[(pattern, method)], keywords={keyword: None})
    return {message for _file, _line, message, _comments, _context in found}


def _asked_for() -> set[tuple[str, str]]:
    """(part, key) of every string the bundled templates and the code ask for: `_("key")` in the templates of
    each part, `translate("key")` in its code (Babel's extractors), and the keys made from the registries."""
    keys = set()
    for part in PARTS:
        keys |= {(part, key) for key in _extracted(TEMPLATES / part, "jinja2", "**.j2", "_")}
        keys |= {(part, key) for key in _extracted(CODE / part, "python", "**.py", "translate")}
    keys |= {("web", cadence.choice_key) for cadence in CADENCES.values()}  # `_("frequency_" ~ value)`
    keys |= {("mail", cadence.heading_key) for cadence in CADENCES.values()}
    keys |= {("mail", cadence.subject_key) for cadence in CADENCES.values() if cadence.periodic}
    keys |= {("web", key) for key in (*ERROR_KEYS.values(), *FIELD_LABELS)}
    # The dashboard's `_("admin_status_" ~ status)` and the like.
    keys |= {("web", f"admin_status_{status}") for status in STATUSES}
    keys |= {("web", f"admin_cadence_{name}") for name in CADENCES}
    keys |= {("web", f"admin_state_{state}") for state in DELIVERY_STATES}
    keys |= {("web", f"admin_kind_{kind}") for kind in DELIVERY_KINDS}
    keys |= {("web", f"admin_sort_{sort}") for sort in SUBSCRIBER_SORTS}
    return keys


def _catalog(language: str) -> Catalog:
    with catalog_file(language).open("rb") as po:
        return read_po(po)


def _entries(language: str) -> dict[tuple[str, str], Message]:
    return {
        (message.context, message.id[0] if message.pluralizable else message.id): message
        for message in _catalog(language)
        if message.id
    }


def _translated(message: Message) -> bool:
    strings = message.string if isinstance(message.string, tuple) else (message.string,)
    return all(strings) and not message.fuzzy


def test_the_extraction_finds_the_templates_and_the_code():
    asked = _asked_for()
    assert {("mail", "read_more"), ("mail", "shortened"), ("web", "confirm_button"), ("mail", "confirm_button")} <= asked
    assert {("mail", "subject_confirm"), ("web", "link_expired"), ("web", "link_invalid")} <= asked
    assert {("web", "frequency_monthly"), ("mail", "heading_instant"), ("web", "bad_request"), ("web", "body")} <= asked
    assert ("mail", "cadence_instant") not in asked


@pytest.mark.parametrize("language", sorted(languages()))
def test_every_string_asked_for_is_translated_in_every_language(language):
    entries = _entries(language)
    missing = sorted(_asked_for() - entries.keys())
    assert not missing, f"{catalog_file(language)} lacks {missing}"
    untranslated = sorted(key for key, message in entries.items() if not _translated(message))
    assert not untranslated, f"{catalog_file(language)} leaves {untranslated} empty or fuzzy"
    forms = _catalog(language).num_plurals
    miscounted = sorted(key for key, message in entries.items() if message.pluralizable and len(message.string) != forms)
    assert not miscounted, f"{catalog_file(language)}: {miscounted} need {forms} forms (its Plural-Forms)"


@pytest.mark.parametrize("language", sorted(languages()))
def test_every_entry_is_asked_for(language):
    unused = sorted(_entries(language).keys() - _asked_for() - KEPT_FOR_OLD_TEMPLATES)
    assert not unused, f"{catalog_file(language)} has entries nothing asks for: {unused}"


def test_the_bundled_languages():
    assert languages() == {"en", "id"}
    assert i18n.language_of("id-ID") == "id" and i18n.language_of("en_GB") == "en" and i18n.language_of("fr") == "en"


def test_a_key_means_one_thing_in_a_mail_and_another_on_a_page():
    assert translator("en", "mail")("confirm_button") == "Confirm subscription"
    assert translator("en", "web")("confirm_button") == "Yes, subscribe me"
    assert translator("id", "web")("confirm_button") == "Ya, saya berlangganan"


def test_plurals_follow_the_language_s_rule():
    english, indonesian = translator("en", "mail"), translator("id", "mail")
    assert english("subject_many", site="S", count=1) == "S: 1 new post"
    assert english("subject_many", site="S", count=0) == "S: 0 new posts"
    assert english("shortened", count=3).startswith("3 posts were shortened")
    assert indonesian("subject_many", site="S", count=1) == "S: 1 tulisan baru"
    assert indonesian("subject_many", site="S", count=5) == "S: 5 tulisan baru"


def test_a_key_nowhere_is_an_error_naming_it():
    with pytest.raises(KeyError, match="no web string 'read_mor' in the en catalog"):
        translator("id", "web")("read_mor")
    with pytest.raises(KeyError, match="'shortened' depends on a number"):
        translator("en", "mail")("shortened")


@pytest.fixture
def locale_dir(tmp_path, monkeypatch):
    """A copy of the bundled catalogs to add a language to; the compiled catalogs are forgotten around it."""
    folder = tmp_path / "locale"
    shutil.copytree(str(i18n.LOCALE_DIR), folder)
    monkeypatch.setattr(i18n, "LOCALE_DIR", folder)
    caches = (i18n.languages, i18n.catalog, i18n.translator)
    for cache in caches:
        cache.cache_clear()
    yield folder
    for cache in caches:
        cache.cache_clear()


def test_a_new_language_is_a_copied_po_and_what_it_lacks_is_english(locale_dir):
    """docs/architecture.md: copy a catalog, set its Language and Plural-Forms, translate."""
    english = (locale_dir / "en" / "LC_MESSAGES" / "feedsvc.po").read_text(encoding="utf-8")
    french_forms = Catalog(locale="fr").plural_forms  # CLDR's: one (0 and 1), many (millions), other
    french = english.replace('"Language: en\\n"', '"Language: fr\\n"')
    french = french.replace('"Plural-Forms: nplurals=2; plural=(n != 1);\\n"', f'"Plural-Forms: {french_forms}\\n"')
    french = french.replace('msgstr "Read more"', 'msgstr "Lire la suite"')
    french = french.replace(
        'msgstr[0] "{site}: {count} new post"\nmsgstr[1] "{site}: {count} new posts"',
        'msgstr[0] "{site} : {count} nouvel article"\n'
        'msgstr[1] "{site} : {count} de nouveaux articles"\n'
        'msgstr[2] "{site} : {count} nouveaux articles"',
    )
    french = french.replace('msgstr "Unsubscribe"', 'msgstr ""')  # not translated yet
    assert 'msgid "unsubscribe"\nmsgstr ""' in french and 'msgid "unsubscribe_button"\nmsgstr ""' in french
    (locale_dir / "fr" / "LC_MESSAGES").mkdir(parents=True)
    (locale_dir / "fr" / "LC_MESSAGES" / "feedsvc.po").write_text(french, encoding="utf-8")

    assert i18n.language_of("fr-CA") == "fr"
    words = translator("fr-CA", "mail")
    assert words("read_more") == "Lire la suite"
    assert words("subject_many", site="S", count=0) == "S : 0 nouvel article"  # French: 0 is singular
    assert words("subject_many", site="S", count=2) == "S : 2 nouveaux articles"
    assert words("subject_many", site="S", count=2_000_000) == "S : 2000000 de nouveaux articles"
    assert words("unsubscribe") == "Unsubscribe"
    assert translator("fr", "web")("unsubscribe_button") == "Unsubscribe"

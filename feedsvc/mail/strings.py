"""The words in mails, in English and Indonesian, chosen by `site.language` (templates call `_("key")`).

A plain dict rather than a gettext catalog: two languages of a dozen short strings each, and users who
override a template can write their own words straight into it. A string that depends on a number has one key
per CLDR plural category (`key_one`, `key_other`, …), chosen by Babel's plural rule of the language: English
has "1 post" and "2 posts", Indonesian one form for every number (only `key_other`).
"""

from __future__ import annotations

from collections.abc import Callable

from babel import Locale

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "subject_many_one": "{site}: {count} new post",
        "subject_many_other": "{site}: {count} new posts",
        "subject_digest": "{site} — {cadence}, {date}",
        "cadence_daily": "daily digest",
        "cadence_weekly": "weekly digest",
        "cadence_monthly": "monthly digest",
        "subject_confirm": "Confirm your subscription to {site}",
        "subject_test_copy": "[Test] {subject}",
        "heading_instant": "New on {site}",
        "heading_daily": "Your daily digest from {site}",
        "heading_weekly": "Your weekly digest from {site}",
        "heading_monthly": "Your monthly digest from {site}",
        "period": "{start} – {end}",
        "greeting": "Hi {name},",
        "greeting_anonymous": "Hi,",
        "read_more": "Read more",
        "read_on_site": "Read it on the site",
        "more_in_browser": "Some posts are shortened to keep this mail small.",  # for templates copied from earlier versions
        "contents": "In this mail",
        "shortened_one": "{count} post was shortened to keep this mail small: read it in full on the site.",
        "shortened_other": "{count} posts were shortened to keep this mail small: read them in full on the site.",
        "view_in_browser": "View in browser",
        "unsubscribe": "Unsubscribe",
        "preferences": "Manage preferences",
        "footer_reason": "You receive this mail because you subscribed to {site}.",
        "confirm_intro": "Please confirm that you want to receive new posts from {site} by email.",
        "confirm_button": "Confirm subscription",
        "confirm_ignore": "If you did not ask for this, ignore this mail: you will not be subscribed.",
        "image_alt": "Image for “{title}”",
        "subject_welcome": "Welcome to {site}",
        "welcome_intro": "Your subscription to {site} is confirmed: new posts will come to this address.",
        "welcome_visit": "Visit the site",
    },
    "id": {
        "subject_many_other": "{site}: {count} tulisan baru",
        "subject_digest": "{site} — {cadence}, {date}",
        "cadence_daily": "ringkasan harian",
        "cadence_weekly": "ringkasan mingguan",
        "cadence_monthly": "ringkasan bulanan",
        "subject_confirm": "Konfirmasi langganan Anda di {site}",
        "subject_test_copy": "[Uji coba] {subject}",
        "heading_instant": "Baru di {site}",
        "heading_daily": "Ringkasan harian dari {site}",
        "heading_weekly": "Ringkasan mingguan dari {site}",
        "heading_monthly": "Ringkasan bulanan dari {site}",
        "period": "{start} – {end}",
        "greeting": "Halo {name},",
        "greeting_anonymous": "Halo,",
        "read_more": "Baca selengkapnya",
        "read_on_site": "Baca di situs",
        "more_in_browser": "Beberapa tulisan dipersingkat agar email ini tetap ringan.",
        "contents": "Dalam email ini",
        "shortened_other": "{count} tulisan dipersingkat agar email ini tetap ringan: baca selengkapnya di situs.",
        "view_in_browser": "Lihat di browser",
        "unsubscribe": "Berhenti berlangganan",
        "preferences": "Atur preferensi",
        "footer_reason": "Anda menerima email ini karena berlangganan {site}.",
        "confirm_intro": "Mohon konfirmasi bahwa Anda ingin menerima tulisan baru dari {site} lewat email.",
        "confirm_button": "Konfirmasi langganan",
        "confirm_ignore": "Jika Anda tidak memintanya, abaikan email ini: Anda tidak akan didaftarkan.",
        "image_alt": "Gambar untuk “{title}”",
        "subject_welcome": "Selamat datang di {site}",
        "welcome_intro": "Langganan Anda di {site} sudah dikonfirmasi: tulisan baru akan dikirim ke alamat ini.",
        "welcome_visit": "Kunjungi situs",
    },
}

DEFAULT_LANGUAGE = "en"


def language_of(site_language: str) -> str:
    """The strings' language for a site language tag such as "id", "id-ID" or "en_US" (English if unknown)."""
    primary = site_language.replace("_", "-").split("-")[0].lower()
    return primary if primary in STRINGS else DEFAULT_LANGUAGE


def translator(language: str) -> Callable[..., str]:
    """`_(key, **values)` for templates: the string in `language`, formatted with the values. With a
    `count` value, the key's form for that number (`_("shortened", count=3)` -> "3 posts were shortened…")."""
    strings = STRINGS[language]
    plural_form = Locale.parse(language).plural_form

    def translate(key: str, **values: object) -> str:
        count = values.get("count")
        if isinstance(count, int) and key not in strings:
            key = f"{key}_{plural_form(count)}" if f"{key}_{plural_form(count)}" in strings else f"{key}_other"
        return strings[key].format(**values) if values else strings[key]

    return translate

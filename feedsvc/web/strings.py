"""The words on the web pages, in English and Indonesian, chosen by `site.language` (templates call `_()`)."""

from __future__ import annotations

from collections.abc import Callable

from feedsvc.mail.strings import language_of

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "feeds": "Feeds",
        "feeds_intro": "Follow new posts in your feed reader:",
        "feeds_none": "No feeds have been published yet.",
        "tag_feeds": "Feeds by tag",
        "subscribe": "Subscribe by email",
        "subscribe_intro": "Get new posts by email. We send a confirmation link first; nothing else arrives until you click it.",
        "email": "Email address",
        "name": "Name (optional)",
        "frequency": "How often",
        "frequency_instant": "As soon as a post is published",
        "frequency_daily": "Daily digest",
        "frequency_weekly": "Weekly digest",
        "frequency_monthly": "Monthly digest",
        "tags": "Only these topics (none ticked: everything)",
        "subscribe_button": "Subscribe",
        "check_inbox_title": "Check your inbox",
        "check_inbox": "If this address can be subscribed, a confirmation link is on its way. Click it to start receiving {site}.",
        "confirm_title": "Confirm your subscription",
        "confirm_question": "Send new posts from {site} to {email}?",
        "confirm_button": "Yes, subscribe me",
        "confirmed_title": "You are subscribed",
        "confirmed": "Thank you! New posts from {site} will arrive at {email}.",
        "manage_preferences": "Change how often and which topics",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Stop all mail from {site} to {email}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed": "{email} will receive no more mail from {site}.",
        "resubscribe": "Changed your mind? You can subscribe again on the home page.",
        "preferences_title": "Your preferences",
        "preferences_for": "Mail from {site} to {email}",
        "save": "Save",
        "preferences_saved": "Your preferences are saved.",
        "not_subscribed": "This address is not subscribed at the moment.",
        "error_title": "Something is wrong",
        "link_invalid": "This link is not valid. Please use the latest link from your mail.",
        "link_expired": "This link has expired. Please subscribe again to get a new one.",
        "link_gone": "This link is no longer valid. Please subscribe again.",
        "form_expired": "This form has expired. Please reload the page and try again.",
        "too_many": "Too many requests. Please try again later.",
        "too_large": "The request is too large.",
        "not_found": "There is nothing at this address.",
        "server_error": "Something went wrong on our side. Please try again later.",
        "store_busy": "We are busy for a moment. Please try again in a minute.",
        "bad_request": "The request could not be understood.",
        "invalid_field": "“{label}” ({field}) cannot be used as it is. Please check it and try again.",
        "body": "The form",
        "back_home": "Back to {site}",
    },
    "id": {
        "feeds": "Feed",
        "feeds_intro": "Ikuti tulisan baru lewat aplikasi pembaca feed:",
        "feeds_none": "Belum ada feed yang diterbitkan.",
        "tag_feeds": "Feed per topik",
        "subscribe": "Berlangganan lewat email",
        "subscribe_intro": "Terima tulisan baru lewat email. Kami kirim tautan konfirmasi dulu; tidak ada email lain sebelum Anda mengekliknya.",
        "email": "Alamat email",
        "name": "Nama (opsional)",
        "frequency": "Seberapa sering",
        "frequency_instant": "Segera setelah tulisan terbit",
        "frequency_daily": "Ringkasan harian",
        "frequency_weekly": "Ringkasan mingguan",
        "frequency_monthly": "Ringkasan bulanan",
        "tags": "Hanya topik ini (tidak dipilih: semua)",
        "subscribe_button": "Berlangganan",
        "check_inbox_title": "Periksa kotak masuk Anda",
        "check_inbox": "Jika alamat ini bisa didaftarkan, tautan konfirmasi sedang dikirim. Klik tautan itu untuk mulai menerima {site}.",
        "confirm_title": "Konfirmasi langganan Anda",
        "confirm_question": "Kirim tulisan baru dari {site} ke {email}?",
        "confirm_button": "Ya, saya berlangganan",
        "confirmed_title": "Anda sudah berlangganan",
        "confirmed": "Terima kasih! Tulisan baru dari {site} akan dikirim ke {email}.",
        "manage_preferences": "Ubah frekuensi dan topik",
        "unsubscribe_title": "Berhenti berlangganan",
        "unsubscribe_question": "Hentikan semua email dari {site} ke {email}?",
        "unsubscribe_button": "Berhenti berlangganan",
        "unsubscribed_title": "Langganan Anda sudah berhenti",
        "unsubscribed": "{email} tidak akan menerima email lagi dari {site}.",
        "resubscribe": "Berubah pikiran? Anda bisa berlangganan lagi di halaman depan.",
        "preferences_title": "Preferensi Anda",
        "preferences_for": "Email dari {site} ke {email}",
        "save": "Simpan",
        "preferences_saved": "Preferensi Anda sudah disimpan.",
        "not_subscribed": "Alamat ini sedang tidak berlangganan.",
        "error_title": "Ada yang salah",
        "link_invalid": "Tautan ini tidak valid. Gunakan tautan terbaru dari email Anda.",
        "link_expired": "Tautan ini sudah kedaluwarsa. Silakan berlangganan lagi untuk mendapat tautan baru.",
        "link_gone": "Tautan ini sudah tidak berlaku. Silakan berlangganan lagi.",
        "form_expired": "Formulir ini sudah kedaluwarsa. Muat ulang halaman dan coba lagi.",
        "too_many": "Terlalu banyak permintaan. Coba lagi nanti.",
        "too_large": "Permintaan terlalu besar.",
        "not_found": "Tidak ada apa-apa di alamat ini.",
        "server_error": "Terjadi kesalahan di pihak kami. Coba lagi nanti.",
        "store_busy": "Kami sedang sibuk sebentar. Coba lagi dalam satu menit.",
        "bad_request": "Permintaan tidak dapat dipahami.",
        "invalid_field": "Isian “{label}” ({field}) tidak dapat dipakai. Periksa lagi lalu coba kembali.",
        "body": "Formulir",
        "back_home": "Kembali ke {site}",
    },
}


# Fields a refusal may name that the pages have a label for (else the field's own name is shown).
FIELD_LABELS = frozenset({"email", "name", "frequency", "tags", "body"})


def web_translator(site_language: str) -> Callable[..., str]:
    strings = STRINGS[language_of(site_language)]

    def translate(key: str, **values: object) -> str:
        return strings[key].format(**values)

    return translate

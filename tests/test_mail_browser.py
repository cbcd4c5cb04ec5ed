"""The mails as a reader sees them: rendered by Chromium at 320 and 600 px, light and dark, checked for
horizontal overflow, the contrast of the button and quote text, and axe-core's serious or critical violations."""

from __future__ import annotations

import email
import email.policy

import pytest
import tomli_w
from browser import axe_violations, contrast, horizontal_overflow, opened
from mail_samples import sample_mails

from feedsvc.config import load_settings

WIDTHS = (320, 600)
SCHEMES = ("light", "dark")


@pytest.fixture(scope="module")
def mail_html(tmp_path_factory) -> dict[str, str]:
    """The HTML part of each sample mail, in English and Indonesian, as a mail client gets it."""
    found: dict[str, str] = {}
    for language in ("en", "id"):
        folder = tmp_path_factory.mktemp(f"site-{language}")
        (folder / "posts").mkdir()
        config = {
            "site": {"title": "Catatan Backend", "url": "https://blog.example.org", "language": language},
            "mail": {"from_address": "news@blog.example.org"},
            "web": {"secret_key": "test-secret-key-of-at-least-32-bytes"},
        }
        (folder / "feedsvc.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
        for name, raw in sample_mails(load_settings(folder / "feedsvc.toml")).items():
            message = email.message_from_bytes(raw, policy=email.policy.default)
            found[f"{name}-{language}"] = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return found


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("mail", ["confirm-id", "one-post-en", "twelve-posts-id"])
def test_mails_fit_the_screen_and_pass_axe(browser, axe_script, mail_html, mail, width, scheme):
    with opened(browser, mail_html[mail], width=width, scheme=scheme, name=mail) as page:
        assert horizontal_overflow(page) == []
        assert axe_violations(page, axe_script) == []


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_confirmation_button_and_quotes_are_readable_in_both_schemes(browser, mail_html, scheme):
    with opened(browser, mail_html["confirm-en"], width=375, scheme=scheme, name="confirm-button") as page:
        assert contrast(page, "a.button") >= 4.5
        assert horizontal_overflow(page) == []  # the long confirm URL wraps at 375 px too
    with opened(browser, mail_html["twelve-posts-en"], width=600, scheme=scheme, name="digest-quote") as page:
        assert contrast(page, "blockquote p") >= 4.5
        assert contrast(page, "pre code") >= 4.5
        assert contrast(page, ".post-title a") >= 4.5

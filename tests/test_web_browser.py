"""The web pages as a person uses them, in Chromium (Debian's, driven by Playwright; see browser.py): the whole
subscription round trip through the forms and the Maildir, and every page — home, confirm, preferences,
unsubscribed, a post's web copy, an edition's, the archive, and the home page with a refused address — at 375
and 1280 px in light and dark, checked for horizontal overflow, axe-core's serious or critical violations and
the contrast of the controls."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest
import test_web
import tomli_w
from browser import axe_violations, colour_contrast, contrast, horizontal_overflow, opened
from conftest import add_subscribers, free_port
from test_web import confirm_link, wait_for_mail
from test_web_copies import T0, send_digests, view_in_browser_link

from feedsvc import subscriptions
from feedsvc.config import load_settings
from feedsvc.store import open_engine
from feedsvc.tokens import Tokens, confirm_url, load_secret, preferences_url, unsubscribe_url

# Fixtures of other modules: a served app in a thread (serve).
serve = test_web.serve

WIDTHS = (375, 1280)
SCHEMES = ("light", "dark")
PAGES = ("home", "confirm", "preferences", "unsubscribed", "preferences-unsubscribed", "post", "edition", "archive")
WIDE_POST = (
    "Kalimat pembuka dengan URL panjang https://example.org/" + "sangat-panjang-" * 12 + "\n\n"
    "| kolom | " + " | ".join(f"kolom-{n}" for n in range(12)) + " |\n|---|" + "---|" * 12 + "\n"
    "| nilai | " + " | ".join(f"nilai-{n}" for n in range(12)) + " |\n\n"
    "```\n" + "kode_yang_sangat_panjang_" * 8 + "\n```\n\n> Sebuah kutipan.\n\n## Subjudul\n\nSelesai."
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict[str, str]:
    """`feedsvc serve` (a real process) on an Indonesian site served by feedsvc itself, with a sent daily digest,
    an active, a pending and an unsubscribed subscriber; the URL of each page to look at."""
    folder = tmp_path_factory.mktemp("site")
    port = free_port()
    here = f"http://127.0.0.1:{port}"
    config = {
        "site": {"title": "Catatan Backend", "url": here, "language": "id", "timezone": "UTC"},
        "posts": {"dir": "posts"},
        "feeds": {"output_dir": "public"},
        "store": {"dir": "subscribers"},
        "mail": {"from_address": "news@blog.example.org"},
        "web": {"secret_key": "browser-test-secret-of-at-least-32-bytes", "port": port, "public_url": here, "archive": True},
    }
    (folder / "posts").mkdir()
    (folder / "feedsvc.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    settings = load_settings(folder / "feedsvc.toml")
    engine = open_engine(settings.store.database_url)
    try:
        add_subscribers(engine, ["harian@example.org"], frequency="daily", confirmed_at=T0 - timedelta(days=10))
        add_subscribers(engine, ["berhenti@example.org"], status="unsubscribed", confirmed_at=T0 - timedelta(days=10))
        add_subscribers(engine, ["tunggu@example.org"], status="pending", confirmed_at=T0 - timedelta(days=10))
        send_digests(settings, engine)
        (settings.posts.dir / "lebar.md").write_text(
            f"---\ntitle: Tulisan yang lebar\ndate: {(T0 + timedelta(hours=3)).isoformat()}\nslug: lebar\n---\n\n{WIDE_POST}\n",
            encoding="utf-8",
        )
        edition = view_in_browser_link(wait_for_mail(settings.store.outbox_dir, 1)[0])
        tokens = Tokens(load_secret(settings.web.secret_key, settings.store.dir), settings.web.confirm_token_max_age)

        def link(make, address: str) -> str:
            subscriber = subscriptions.find(engine, address)
            return make(settings, tokens, subscriber.id, subscriber.link_key)

        pages = {
            "home": f"{here}/",
            "confirm": link(confirm_url, "tunggu@example.org"),
            "preferences": link(preferences_url, "harian@example.org"),
            "unsubscribed": link(unsubscribe_url, "berhenti@example.org"),
            "preferences-unsubscribed": link(preferences_url, "berhenti@example.org"),
            "post": f"{here}/lebar/",
            "edition": edition,
            "archive": f"{here}/archive/",
        }
    finally:
        engine.dispose()
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "feedsvc", "serve", "--config", str(folder / "feedsvc.toml"), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{here}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (folder / "serve.log").read_text()
            time.sleep(0.05)
        for name, url in pages.items():
            assert httpx.get(url, timeout=10).status_code == 200, name
        yield pages
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _controls_contrast(page) -> list[str]:
    """Buttons against the page and field borders against their background: each should reach 3:1."""
    found = page.evaluate(
        """() => {
            const background = getComputedStyle(document.body).backgroundColor;
            const out = [];
            for (const b of document.querySelectorAll('button')) out.push(['button', getComputedStyle(b).backgroundColor, background]);
            for (const b of document.querySelectorAll('button')) out.push(['button text', getComputedStyle(b).color, getComputedStyle(b).backgroundColor]);
            for (const f of document.querySelectorAll('input[type=email], input[type=text], select'))
                out.push([f.id + ' border', getComputedStyle(f).borderTopColor, background]);
            return out;
        }"""
    )
    needs = {"button": 3.0, "button text": 4.5}
    return [
        f"{what}: {ratio:.2f}"
        for what, first, second in found
        if (ratio := colour_contrast(first, second)) < needs.get(what, 3.0)
    ]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", PAGES)
def test_every_page_fits_the_screen_passes_axe_and_has_readable_controls(site, browser, axe_script, name, width, scheme):
    # `site` first: it sends the digest with asyncio.run, which Playwright's running loop would forbid.
    with opened(browser, url=site[name], width=width, scheme=scheme, name=f"web-{name}") as page:
        assert horizontal_overflow(page) == []
        assert _controls_contrast(page) == []
        assert axe_violations(page, axe_script) == []


def test_subscribe_confirm_change_unsubscribe_and_come_back_in_a_browser(browser, serve):
    served = serve(site={"language": "id"}, web={"archive": True})
    tokens = served.app.state.web.tokens
    with opened(browser, url=f"{served.url}/", width=375, scheme="light", name="web-round-trip") as page:
        page.fill("#email", "dewi@example.org")
        page.select_option("#frequency", "daily")
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Periksa kotak masuk Anda"
        # The confirmation mail's link shows a question; only its button subscribes.
        page.goto(confirm_link(wait_for_mail(served.outbox, 1)[0]))
        assert served.subscriber("dewi@example.org").status == "pending"
        page.click("text=Ya, saya berlangganan")
        assert page.locator("h1").inner_text() == "Anda sudah berlangganan"
        assert served.subscriber("dewi@example.org").status == "active"
        page.click("text=Ubah frekuensi dan topik")
        page.select_option("#frequency", "weekly")
        page.click("text=Simpan")
        assert page.locator("[role=status]").inner_text() == "Preferensi Anda sudah disimpan."
        subscriber = served.subscriber("dewi@example.org")
        assert subscriber.frequency == "weekly"
        page.goto(unsubscribe_url(served.settings, tokens, subscriber.id, subscriber.link_key))
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Langganan Anda sudah berhenti"
        assert served.subscriber("dewi@example.org").status == "unsubscribed"
        assert page.locator("footer a").first.get_attribute("href") == "https://blog.example.org/"
        page.click("button:has-text('Berlangganan lagi')")
        assert page.locator("h1").inner_text() == "Periksa kotak masuk Anda"
        again = served.subscriber("dewi@example.org")
        assert again.status == "pending" and again.frequency == "weekly"
        assert len(wait_for_mail(served.outbox, 2)) == 2
        # Either confirmation mail's link opens the same row: the second one too.
        page.goto(confirm_link(wait_for_mail(served.outbox, 2)[-1]))
        page.click("text=Ya, saya berlangganan")
        assert served.subscriber("dewi@example.org").status == "active"


def test_the_web_copy_and_the_archive_in_a_browser(site, browser):
    with opened(browser, url=site["archive"], width=375, scheme="dark", name="web-archive-walk") as page:
        page.click("text=Indeks database")
        assert page.locator("h1").inner_text() == "Indeks database"
        assert re.search(r"/indeks-database/$", page.url)
        page.go_back()
        page.locator("ul.archive").nth(1).locator("a").first.click()
        assert page.url == site["edition"]
        assert page.locator(".post-title").count() == 2
        page.fill("#email", "baru@example.org")
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Periksa kotak masuk Anda"


REFUSED_ADDRESS = "Kesalahan: Isi alamat email yang lengkap, misalnya nama@contoh.com."


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("width", WIDTHS)
def test_a_refused_address_is_said_at_its_field_with_what_was_typed_kept(site, browser, axe_script, width, scheme):
    expect = pytest.importorskip("playwright.sync_api").expect
    with opened(browser, url=site["home"], width=width, scheme=scheme, name="web-refused-address") as page:
        page.fill("#email", "dewi@gmail")
        page.fill("#name", "Dewi Lestari")
        page.select_option("#frequency", "weekly")
        with page.expect_navigation() as navigation:
            page.click("form button[type=submit]")
        assert navigation.value.status == 400
        # The form again, in Indonesian, with what was typed.
        assert page.title().startswith("Kesalahan: ")
        assert page.locator("#email").input_value() == "dewi@gmail"
        assert page.locator("#name").input_value() == "Dewi Lestari"
        assert page.locator("#frequency").input_value() == "weekly"
        # The summary has the focus and links to the field; the field says what is wrong with it.
        assert page.evaluate("document.activeElement.className") == "error-summary"
        summary = page.locator(".error-summary")
        expect(summary).to_have_accessible_name("Ada masalah")
        expect(summary.get_by_role("link")).to_have_text(REFUSED_ADDRESS.removeprefix("Kesalahan: "))
        email = page.locator("#email")
        expect(email).to_have_attribute("aria-invalid", "true")
        expect(email).to_have_accessible_name("Alamat email")
        expect(email).to_have_accessible_description(REFUSED_ADDRESS)
        # Shown next to the field: between its label and it, within a line of it.
        message, field = page.locator("#email-error").bounding_box(), email.bounding_box()
        label = page.locator("label[for=email]").bounding_box()
        assert label["y"] + label["height"] <= message["y"] and message["y"] + message["height"] <= field["y"] <= message["y"] + message["height"] + 20
        assert page.locator("#email-error").is_visible()
        assert horizontal_overflow(page) == []
        assert _controls_contrast(page) == []
        for selector in (".field-error", ".error-summary a", "button[type=submit]"):
            assert contrast(page, selector) >= 4.5, selector
        assert _border_contrast(page, "#email") >= 3.0
        assert _border_contrast(page, ".error-summary") >= 3.0
        assert axe_violations(page, axe_script) == []
        # The link in the summary leads to the field.
        summary.get_by_role("link").click()
        assert page.url.endswith("/subscribe#email")
        assert email.evaluate("e => { const box = e.getBoundingClientRect(); return box.top >= 0 && box.bottom <= innerHeight; }")
        # Corrected, the same page's form goes through.
        email.fill("dewi@gmail.com")
        page.click("form button[type=submit]")
        assert page.locator("h1").inner_text() == "Periksa kotak masuk Anda"


def _border_contrast(page, selector: str) -> float:
    """The contrast of an element's top border against the page's background."""
    border, background = page.evaluate(
        """(selector) => [getComputedStyle(document.querySelector(selector)).borderTopColor,
                          getComputedStyle(document.body).backgroundColor]""",
        selector,
    )
    return colour_contrast(border, background)


def test_a_refused_address_from_a_web_copy_box_lands_on_the_full_form(site, browser):
    with opened(browser, url=site["post"], width=375, scheme="dark", name="web-refused-box") as page:
        page.fill("#email", "dewi@gmail")
        page.select_option("#frequency", "daily")
        page.click("form button[type=submit]")
        assert " ".join(page.locator("#email-error").text_content().split()) == REFUSED_ADDRESS
        assert page.locator("#email").input_value() == "dewi@gmail"
        assert page.locator("#frequency").input_value() == "daily"
        assert page.locator("h1").inner_text() == "Catatan Backend"

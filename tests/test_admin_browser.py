"""The dashboard in a real browser (Debian's Chromium through Playwright): sign-in, throttling, the subscriber
journey, every page at phone and desktop widths in light and dark with axe-core, and the keyboard alone.

With FEEDSVC_UPDATE_SCREENSHOT=1 it also writes docs/dashboard.png, the README's screenshot of the overview
(never otherwise: a test run leaves the repository as it found it)."""

# ruff: noqa: F811  (test functions take the `serve` fixture imported from test_web)
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from browser import ARTIFACTS, axe_violations, horizontal_overflow
from conftest import EXAMPLE_POSTS, ROOT, add_subscribers
from sqlalchemy import text
from test_admin import PASSWORD, seed_edition, set_password
from test_web import Served, serve  # noqa: F401  (the real-server fixture)

from feedsvc import feeds
from feedsvc.web.admin.common import SIGN_IN_ATTEMPTS_PER_ACCOUNT

NOW = datetime.now(UTC)
SCREENSHOT = ROOT / "docs" / "dashboard.png"


@pytest.fixture
def site(serve) -> Served:
    """A served site with posts, subscribers in every state, an edition half sent, feed-reader counts."""
    served = serve()
    shutil.copytree(EXAMPLE_POSTS, served.settings.posts.dir, dirs_exist_ok=True)
    feeds.build(served.settings)
    ids = []
    for index, days in enumerate(range(0, 90, 3)):
        ids += add_subscribers(served.engine, [f"reader{days:02}@example.org"], confirmed_at=NOW - timedelta(days=days),
                               frequency=("instant", "daily", "weekly")[index % 3])
    add_subscribers(served.engine, ["bounced@example.org"], status="bounced", confirmed_at=NOW)
    add_subscribers(served.engine, ["left@example.org"], status="unsubscribed", confirmed_at=NOW)
    add_subscribers(served.engine, ["ani.wijaya.with.a.rather.long.address@subdomain.example.org"], confirmed_at=NOW)
    seed_edition(served, ids[:12], ["sent"] * 6 + ["queued"] * 4 + ["failed"] * 2)
    set_password(served)
    return served


@contextlib.contextmanager
def page_at(browser: Any, served: Served, *, width: int = 1280, scheme: str = "light", name: str,
            bypass_csp: bool = False) -> Iterator[Any]:
    """A page of a fresh browser context; axe's script needs the CSP bypassed (the pages allow no script).
    A failing check writes a screenshot to tests/.artifacts/."""
    context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme,
                                  base_url=served.url, bypass_csp=bypass_csp)
    page = context.new_page()
    try:
        yield page
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"admin-{name}-{width}-{scheme}.png"), full_page=True)
        raise
    finally:
        context.close()


def sign_in(page: Any, password: str = PASSWORD) -> Any:
    page.goto("/admin/login")
    page.get_by_label("Password", exact=True).fill(password)
    return page.get_by_role("button", name="Sign in").click()


def test_sign_in_and_a_wrong_password_throttled(browser, site):
    with page_at(browser, site, name="sign-in") as page:
        for _ in range(SIGN_IN_ATTEMPTS_PER_ACCOUNT):
            sign_in(page, "not the password")
            assert page.get_by_role("alert").inner_text() == "The user name, the password or the code is not right."
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            sign_in(page)
        assert answer.value.status == 429 and int(answer.value.headers["retry-after"]) > 0
        assert "too many sign-in attempts" in page.content()
    with page_at(browser, site, name="sign-in-ok") as page:
        set_password(site, "a brand new password")
        with site.engine.begin() as connection:  # the window passed
            connection.execute(text("DELETE FROM rate_limits"))
        sign_in(page, "a brand new password")
        assert page.url.endswith("/admin/") and page.get_by_role("heading", name="Overview").is_visible()


def test_search_detail_unsubscribe_erase(browser, site):
    with page_at(browser, site, name="journey") as page:
        sign_in(page)
        page.get_by_role("link", name="Subscribers").click()
        page.get_by_label("Address contains").fill("ani.wijaya")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name="ani.wijaya.with.a.rather.long.address@subdomain.example.org").click()
        page.get_by_role("button", name="Unsubscribe").click()
        assert page.get_by_role("status").inner_text() == "Unsubscribed."
        assert "unsubscribed (removed by operator)" in page.content()
        page.get_by_label("Your password, to confirm").fill(PASSWORD)
        page.get_by_role("button", name="Erase").click()
        assert "erased" in page.get_by_role("status").inner_text()
    assert site.subscriber("ani.wijaya.with.a.rather.long.address@subdomain.example.org") is None


def test_the_keyboard_alone_signs_in_and_unsubscribes_someone(browser, site):
    with page_at(browser, site, name="keyboard") as page:
        page.goto("/admin/login")
        page.keyboard.press("Tab")  # the footer link comes last: the form's first field comes first
        def focused():
            return page.evaluate("document.activeElement.id || document.activeElement.textContent")
        assert focused() == "username"
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url("**/admin/")
        for _ in range(30):  # to the navigation's Subscribers link
            page.keyboard.press("Tab")
            if focused() == "Subscribers":
                break
        page.keyboard.press("Enter")
        page.wait_for_url("**/admin/subscribers")
        page.keyboard.press("Tab")
        for _ in range(15):
            if focused() == "q":
                break
            page.keyboard.press("Tab")
        page.keyboard.type("reader00")
        page.keyboard.press("Enter")
        page.wait_for_url("**q=reader00**")
        for _ in range(40):
            page.keyboard.press("Tab")
            if focused() == "reader00@example.org":
                break
        page.keyboard.press("Enter")
        page.wait_for_url("**/admin/subscribers/*")
        for _ in range(30):
            page.keyboard.press("Tab")
            if focused() == "Unsubscribe":
                break
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"  # the focus is visible
        page.keyboard.press("Enter")
        page.wait_for_load_state()
        assert page.get_by_role("status").inner_text() == "Unsubscribed."
    assert site.subscriber("reader00@example.org").status == "unsubscribed"


def admin_pages(site: Served) -> dict[str, str]:
    subscriber = site.subscriber("reader03@example.org")
    return {
        "overview": "/admin/", "subscribers": "/admin/subscribers", "subscriber": f"/admin/subscribers/{subscriber.id}",
        "editions": "/admin/editions", "edition": "/admin/editions/1", "posts": "/admin/posts",
        "readers": "/admin/readers", "settings": "/admin/settings", "security": "/admin/security",
        "audit": "/admin/audit", "import": "/admin/subscribers/import",
    }


@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_and_passes_axe(browser, axe_script, site, width, scheme):
    with page_at(browser, site, width=width, scheme=scheme, name="login", bypass_csp=True) as page:
        page.goto("/admin/login")
        assert horizontal_overflow(page) == []
        assert axe_violations(page, axe_script) == []
        sign_in(page)
        for name, path in admin_pages(site).items():
            page.goto(path)
            assert page.url.endswith(path), name
            assert horizontal_overflow(page) == [], name
            assert axe_violations(page, axe_script) == [], name
        if (width, scheme) == (1280, "light") and os.environ.get("FEEDSVC_UPDATE_SCREENSHOT") == "1":
            page.goto("/admin/")
            page.screenshot(path=str(SCREENSHOT), full_page=False)



BAD_LINES_CSV = """email,name,frequency,tags
new.reader@example.org,New Reader,weekly,meta
not-an-address,Bad,daily,
odd@example.org,Odd,hourly,
topical@example.org,Topical,daily,cooking
"=HYPERLINK(""http://evil.example"",""click"")",Formula,daily,
reader03@example.org,,daily,
"""


@pytest.mark.parametrize("width", [375, 1280])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_an_import_with_bad_lines_previewed_then_imported(browser, axe_script, site, tmp_path, width, scheme):
    upload = tmp_path / "readers.csv"
    upload.write_text(BAD_LINES_CSV, encoding="utf-8")
    with page_at(browser, site, width=width, scheme=scheme, name="import", bypass_csp=True) as page:
        sign_in(page)
        page.goto("/admin/subscribers")
        page.get_by_role("link", name="Import from a CSV file").click()
        page.get_by_label("CSV file").set_input_files(str(upload))
        page.get_by_label("I hold these people's consent").check()
        page.get_by_role("button", name="Preview").click()
        assert page.get_by_role("heading", name="Preview of readers.csv").is_visible()
        refused = page.locator("table", has=page.get_by_role("columnheader", name="Why")).locator("tbody tr")
        assert [refused.nth(i).locator("th").inner_text() for i in range(refused.count())] == ["3", "4", "5", "6"]
        assert "cooking: not a topic of this site" in refused.nth(2).inner_text()
        assert horizontal_overflow(page) == []
        assert axe_violations(page, axe_script) == []
        assert site.subscriber("new.reader@example.org") is None  # only previewed
        page.get_by_label("Your password, to confirm").fill(PASSWORD)
        page.get_by_role("button", name="Import").click()
        assert page.get_by_role("status").inner_text() == (
            "Imported readers.csv: 1 added (0 pending confirmation), 0 updated, 1 skipped, 4 lines refused.")
    assert site.subscriber("new.reader@example.org").frequency == "weekly"

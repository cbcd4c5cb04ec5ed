"""A refused form, as a person meets it over real HTTP: the same form page again with status 400, each problem
in the site's language next to its field (aria-invalid, aria-describedby), a summary linking to the fields,
what was typed still in the fields, nothing stored or mailed, and the page's new CSRF token good for the
corrected form. JSON clients keep the API's 400 naming the field."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime

import lxml.html
import pytest
import test_web
from conftest import EXAMPLE_POSTS
from test_web import count_rows, csrf_form, wait_for_mail

from feedsvc import feeds, subscriptions
from feedsvc.tokens import preferences_url

serve = test_web.serve

# What a person reads, per site language: the words are the test's own, not looked up in the code.
WORDS = {
    "en": {
        "summary": "There is a problem",
        "prefix": "Error:",
        "email_required": "Enter your email address.",
        "email_invalid": "Enter a complete email address, like name@example.com.",
        "name_too_long": "The name can be at most 200 characters long.",
        "name_invalid": "The name cannot contain line breaks or control characters.",
        "frequency": "Choose how often from the list.",
        "tags_invalid": "Choose topics from the list.",
        "tags_too_many": "Choose at most 50 topics.",
        "form": "The form could not be read. Please reload the page and try again.",
        "check_inbox": "Check your inbox",
        "saved": "Your preferences are saved.",
    },
    "id": {
        "summary": "Ada masalah",
        "prefix": "Kesalahan:",
        "email_required": "Isi alamat email Anda.",
        "email_invalid": "Isi alamat email yang lengkap, misalnya nama@contoh.com.",
        "name_too_long": "Nama paling panjang 200 karakter.",
        "name_invalid": "Nama tidak boleh berisi baris baru atau karakter kontrol.",
        "frequency": "Pilih seberapa sering dari daftar.",
        "tags_invalid": "Pilih topik dari daftar.",
        "tags_too_many": "Pilih paling banyak 50 topik.",
        "form": "Formulir tidak dapat dibaca. Muat ulang halaman dan coba lagi.",
        "check_inbox": "Periksa kotak masuk Anda",
        "saved": "Preferensi Anda sudah disimpan.",
    },
}
LANGUAGES = tuple(WORDS)

# (what is sent besides the CSRF token, {field: message key}): each a mistake a person (or a stale page) makes.
SUBSCRIBE_CASES = {
    "no domain": ({"email": "dewi@gmail", "name": "Dewi", "frequency": "weekly"}, {"email": "email_invalid"}),
    "empty address": ({"email": "  ", "name": "Dewi"}, {"email": "email_required"}),
    "no address at all": ({"name": "Dewi"}, {"email": "email_required"}),
    "long name": ({"email": "dewi@example.org", "name": "D" * 201}, {"name": "name_too_long"}),
    "line break in the name": ({"email": "dewi@example.org", "name": "Dewi\nBcc: x@example.org"}, {"name": "name_invalid"}),
    "bad frequency": ({"email": "dewi@example.org", "frequency": "hourly"}, {"frequency": "frequency"}),
    "bad topic": ({"email": "dewi@example.org", "tags": ["meta", "not a topic"]}, {"tags": "tags_invalid"}),
    "too many topics": ({"email": "dewi@example.org", "tags": [f"t{n}" for n in range(51)]}, {"tags": "tags_too_many"}),
    "several at once": (
        {"email": "dewi@", "name": "D" * 300, "frequency": "yearly", "tags": ["meta"]},
        {"email": "email_invalid", "name": "name_too_long", "frequency": "frequency"},
    ),
    "a field twice": ({"email": ["dewi@example.org", "budi@example.org"]}, {"form": "form"}),
}


def _with_tag_feeds(served) -> None:
    """The example posts' feeds, tag feeds included: the home page's form offers topics."""
    shutil.copytree(EXAMPLE_POSTS, served.settings.posts.dir, dirs_exist_ok=True)
    feeds.build(served.settings)
    served.app.state.web.feeds.refresh()


def _parsed(answer) -> lxml.html.HtmlElement:
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"]
    return lxml.html.fromstring(answer.text)


def _check_refused(page: lxml.html.HtmlElement, language: str, expected: dict[str, str], form_fields: tuple[str, ...]) -> None:
    """The refused form's messages, summary and aria wiring: `expected` maps each field (or "form") to the
    key of its message in WORDS."""
    words = WORDS[language]
    assert page.get("lang") == language
    assert page.findtext(".//title").startswith(words["prefix"] + " ")
    summary = page.get_element_by_id("error-summary-title").getparent()
    assert summary.get("role") == "alert" and summary.get("tabindex") == "-1" and summary.get("autofocus") is not None
    assert summary.get("aria-labelledby") == "error-summary-title"
    assert summary.findtext(".//*[@id='error-summary-title']") == words["summary"]
    # The summary lists the problems in the form's order, each field's linking to it.
    order = ("form", *form_fields)
    listed = [(item.xpath("string()").strip(), item.find("a")) for item in summary.iter("li")]
    assert [text for text, _ in listed] == [words[expected[field]] for field in order if field in expected]
    for (_, link), field in zip(listed, [field for field in order if field in expected], strict=True):
        if field == "form":
            assert link is None
        else:
            assert link.get("href") == f"#{field}" and page.get_element_by_id(field) is not None
    for field in form_fields:
        controls = page.xpath(f"//form//*[@name='{field}'][not(@type='hidden')]")
        if field not in expected:
            assert all(control.get("aria-invalid") is None for control in controls), field
            assert page.xpath(f"//*[@id='{field}-error']") == []
            continue
        message = page.get_element_by_id(f"{field}-error")
        assert message.xpath("string()").split() == [words["prefix"], *words[expected[field]].split()]
        if field == "tags":  # checkboxes: their fieldset is described by the message, each box marked
            assert page.get_element_by_id("tags").tag == "fieldset"
            assert page.get_element_by_id("tags").get("aria-describedby") == "tags-error"
            assert controls and all(control.get("aria-invalid") == "true" for control in controls)
        else:
            [control] = controls
            assert control.get("aria-invalid") == "true" and control.get("aria-describedby") == f"{field}-error"
            # The message stands between the field's label and the field.
            label = page.xpath(f"//label[@for='{field}']")[0]
            assert label.getnext() is message and message.getnext() is control


def _typed(page: lxml.html.HtmlElement) -> dict[str, object]:
    """What the form on the page holds."""
    form = page.xpath("//form[.//button[@type='submit']]")[0]
    values: dict[str, object] = {}
    for control in form.xpath(".//input[@type='email' or @type='text']"):
        values[control.name] = control.value
    for select in form.xpath(".//select"):
        values[select.name] = select.value
    values["tags"] = sorted(box.get("value") for box in form.xpath(".//input[@type='checkbox'][@checked]"))
    return values


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_refused_subscription_shows_the_form_again_with_each_problem_at_its_field(serve, language):
    served = serve(site={"language": language})
    _with_tag_feeds(served)
    with served.client() as client:
        home = lxml.html.fromstring(client.get("/").text)
        offered = sorted(box.get("value") for box in home.xpath("//input[@name='tags']"))
        assert "meta" in offered
        for case, (sent, expected) in SUBSCRIBE_CASES.items():
            token = csrf_form(client)
            page = _parsed(client.post("/subscribe", data={**sent, "csrf_token": token}))
            _check_refused(page, language, expected, ("email", "name", "frequency", "tags"))
            typed = _typed(page)
            if "form" not in expected:  # what was typed is back in the fields
                assert typed["email"] == sent.get("email", "")
                assert typed["name"] == sent.get("name", "")
                assert typed["frequency"] == (sent.get("frequency") if sent.get("frequency") in ("instant", "daily", "weekly", "monthly") else "instant"), case
                assert typed["tags"] == sorted(set(sent.get("tags", [])) & set(offered)), case
            # The page is the home page: its feeds, and a fresh token for the corrected form.
            assert page.xpath("//link[@rel='alternate']"), case
            assert page.xpath("//form//input[@name='csrf_token']/@value")[0]
        assert count_rows(served) == 0
        # Corrected, with the token of the refused page, it goes through.
        token = csrf_form(client)
        refused = _parsed(client.post("/subscribe", data={"email": "dewi@gmail", "tags": ["meta"], "csrf_token": token}))
        token = refused.xpath("//form//input[@name='csrf_token']/@value")[0]
        fine = client.post("/subscribe", data={"email": "dewi@gmail.com", "tags": ["meta"], "csrf_token": token})
        assert fine.status_code == 200 and WORDS[language]["check_inbox"] in fine.text
    assert served.subscriber("dewi@gmail.com").tags == ("meta",)
    assert len(wait_for_mail(served.outbox, count=2, timeout=1.5)) == 1


@pytest.mark.parametrize("language", LANGUAGES)
def test_without_topics_on_offer_a_topic_problem_is_said_of_the_form(serve, language):
    served = serve(site={"language": language})
    with served.client() as client:
        token = csrf_form(client)
        page = _parsed(client.post("/subscribe", data={"email": "dewi@example.org", "tags": "not a topic", "csrf_token": token}))
    assert page.xpath("//input[@name='tags']") == []
    [item] = page.get_element_by_id("error-summary-title").getparent().iter("li")
    assert item.xpath("string()").strip() == WORDS[language]["tags_invalid"] and item.find("a") is None
    assert _typed(page)["email"] == "dewi@example.org"


def test_an_unreadable_form_is_refused_as_a_whole(serve):
    served = serve(site={"language": "id"})
    with served.client() as client:
        token = csrf_form(client)
        body = b"email=u1%40example.org&name=Bad%FFName&csrf_token=" + token.encode()
        page = _parsed(client.post("/subscribe", content=body, headers={"content-type": "application/x-www-form-urlencoded"}))
    _check_refused(page, "id", {"form": "form"}, ("email", "name", "frequency"))
    assert count_rows(served) == 0


def test_csrf_rate_limits_and_the_json_answer_stay_as_they_were(serve):
    """What stays as it was: no token, no form (403); the client's rate limit counts refused forms too (429,
    a message page); and JSON clients get the API's 400 naming the field."""
    served = serve(site={"language": "id"}, web={"subscribe_rate_per_client": 2})
    with served.client() as client:
        assert client.post("/subscribe", data={"email": "dewi@gmail"}).status_code == 403
        api = client.post("/subscribe", json={"email": "dewi@gmail", "frequency": "hourly"})
        assert api.status_code == 400 and api.json()["field"] == "email" and api.json()["error"].startswith("email: ")
        token = csrf_form(client)
        assert client.post("/subscribe", data={"email": "dewi@gmail", "csrf_token": token}).status_code == 400
        limited = client.post("/subscribe", data={"email": "dewi@gmail", "csrf_token": token})
        assert limited.status_code == 429 and "Terlalu banyak permintaan" in limited.text
        assert 'aria-invalid="true"' not in limited.text
    assert count_rows(served) == 0


@pytest.mark.parametrize("language", LANGUAGES)
def test_refused_preferences_show_the_page_again_with_what_was_chosen(serve, language):
    served = serve(site={"language": language})
    _with_tag_feeds(served)
    pending = subscriptions.request_subscription(
        served.engine,
        subscriptions.subscription_request("cici@example.org", frequency="daily", tags=["go"]),
        subscriptions.Consent(at=datetime.now(UTC), source="test"),
    )
    url = preferences_url(served.settings, served.app.state.web.tokens, pending.id, pending.link_key)
    fields = ("frequency", "tags")
    with served.client() as client:
        token = csrf_form(client, url)
        page = _parsed(client.post(url, data={"frequency": "hourly", "tags": ["meta"], "csrf_token": token}))
        _check_refused(page, language, {"frequency": "frequency"}, fields)
        assert _typed(page) == {"frequency": "daily", "tags": ["meta"]}  # an unknown frequency selects none: the stored one shows
        assert page.xpath("//*[@role='status']") == []
        page = _parsed(client.post(url, data={"frequency": "weekly", "tags": ["meta", "no such!"], "csrf_token": token}))
        _check_refused(page, language, {"tags": "tags_invalid"}, fields)
        assert _typed(page) == {"frequency": "weekly", "tags": ["meta"]}
        page = _parsed(client.post(url, data={"frequency": ["weekly", "daily"], "csrf_token": token}))
        _check_refused(page, language, {"form": "form"}, fields)
        assert served.subscriber("cici@example.org").frequency == "daily"
        assert served.subscriber("cici@example.org").tags == ("go",)
        token = page.xpath("//form//input[@name='csrf_token']/@value")[0]
        saved = client.post(url, data={"frequency": "weekly", "tags": ["meta"], "csrf_token": token})
        assert saved.status_code == 200 and WORDS[language]["saved"] in saved.text and 'aria-invalid="true"' not in saved.text
    assert served.subscriber("cici@example.org").frequency == "weekly"
    assert served.subscriber("cici@example.org").tags == ("meta",)

# ruff: noqa: F811  (test functions take the `serve` fixture imported from test_web)
"""The dashboard's CSV import through a real server: upload, the preview with every refused line, the import of
exactly what was previewed (password again, once, by the session that uploaded it), both store backends."""

from __future__ import annotations

import csv
import io
import re
import shutil
from datetime import UTC, datetime

import httpx
from conftest import EXAMPLE_POSTS, add_subscribers
from sqlalchemy import text
from test_admin import PASSWORD, form_token, signed_in, try_sign_in
from test_web import Served, serve, wait_for_mail  # noqa: F401  (the real-server fixture)

from feedsvc import feeds

NOW = datetime.now(UTC)
FORMULA = '=HYPERLINK(""http://evil.example"",""click"")'
MIXED = f"""email,name,frequency,tags
new1@example.org,New One,daily,meta
new2@example.org,"=1+2",weekly,
not-an-address,Bad,daily,
bad-frequency@example.org,X,hourly,
unknown-topic@example.org,Y,daily,meta cooking
"{FORMULA}",Z,daily,
kept@example.org,,daily,
gone@example.org,,daily,
waiting@example.org,,daily,
""".encode()


def site(serve, store_url: str, **sections) -> Served:
    """A served site whose posts give it the topics meta, journey and random, and a list with an active, an
    unsubscribed and a pending subscriber."""
    served = serve(store={"url": store_url}, **sections)
    shutil.copytree(EXAMPLE_POSTS, served.settings.posts.dir, dirs_exist_ok=True)
    feeds.build(served.settings)
    add_subscribers(served.engine, ["kept@example.org"], confirmed_at=NOW)
    add_subscribers(served.engine, ["gone@example.org"], status="unsubscribed", confirmed_at=NOW)
    add_subscribers(served.engine, ["waiting@example.org"], status="pending", confirmed_at=NOW)
    return served


def upload(client: httpx.Client, data: bytes, *, confirmed: bool = True, name: str = "list.csv") -> httpx.Response:
    token = form_token(client, "/admin/subscribers/import")
    fields = {"csrf_token": token, **({"confirmed": "yes"} if confirmed else {})}
    return client.post("/admin/subscribers/import", data=fields, files={"file": (name, data, "text/csv")})


def confirm(client: httpx.Client, preview: httpx.Response, password: str = PASSWORD) -> httpx.Response:
    token = re.search(r'name="token" value="([^"]+)"', preview.text).group(1)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', preview.text).group(1)
    return client.post("/admin/subscribers/import/confirm", data={"csrf_token": csrf, "token": token, "password": password})


def statuses(served: Served) -> dict[str, str]:
    with served.engine.connect() as connection:
        return dict(connection.execute(text("SELECT email, status FROM subscribers")).all())


def test_preview_lists_each_refused_line_and_the_import_does_what_it_showed(serve, store_url):
    served = site(serve, store_url)
    before = statuses(served)
    with signed_in(served) as client:
        assert "Import from a CSV file" in client.get("/admin/subscribers").text
        form = client.get("/admin/subscribers/import").text
        assert "Topics of this site: journey, meta, random" in form
        preview = upload(client, MIXED)
        assert preview.status_code == 200, preview.text
        page = preview.text
        counts = dict(re.findall(r'<th scope="row">(\w+)</th><td class="number">(\d+)</td>', page))
        assert counts == {"Add": "2", "Update": "1", "Skip": "2", "Refuse": "4"}
        refused = dict(re.findall(r'<th scope="row" class="number">(\d+)</th><td class="break">([^<]+)</td>', page))
        assert sorted(refused) == ["4", "5", "6", "7"]
        assert refused["4"].startswith("email:")
        assert refused["5"].startswith("frequency:")
        assert refused["6"] == "tags: cooking: not a topic of this site (its topics: journey, meta, random)"
        assert refused["7"].startswith("email:")
        assert statuses(served) == before  # the preview wrote nothing

        wrong = confirm(client, preview, "not the password")
        assert wrong.status_code == 403 and statuses(served) == before
        done = confirm(client, preview)
        assert done.status_code == 303, done.text
        note = httpx.URL(done.headers["location"]).params["note"]
        assert note == ("Imported list.csv: 2 added (0 pending confirmation), 1 updated, 2 skipped, "
                        "4 lines refused.")
        after = statuses(served)
        assert after == {**before, "new1@example.org": "active", "new2@example.org": "active",
                         "waiting@example.org": "active"}
        assert served.subscriber("new1@example.org").tags == ("meta",)
        assert served.subscriber("new1@example.org").consent_source == "operator-import"
        assert served.subscriber("gone@example.org").status == "unsubscribed"  # never resubscribed

        again = confirm(client, preview)  # a second press of the button, or a replay
        assert again.status_code == 400 and "imported already or has expired" in again.text
        assert statuses(served) == after
        audit = client.get("/admin/audit").text
        assert "<td>import</td>" in audit and "list.csv (confirmed): 2 added" in audit
        # The name that a spreadsheet would run as a formula is kept as text, and exported defused.
        exported = client.get("/admin/subscribers.csv?q=new2").text
        [row] = csv.DictReader(io.StringIO(exported))
        assert row["name"] == "'=1+2" and served.subscriber("new2@example.org").name == "=1+2"


def test_only_the_session_that_uploaded_a_file_can_import_it(serve, store_url):
    served = site(serve, store_url)
    with signed_in(served) as client:
        preview = upload(client, b"email\nnew@example.org\n")
        with served.client() as other:
            assert try_sign_in(other).status_code == 303
            token = re.search(r'name="token" value="([^"]+)"', preview.text).group(1)
            csrf = form_token(other, "/admin/subscribers/import")
            stolen = other.post("/admin/subscribers/import/confirm",
                                data={"csrf_token": csrf, "token": token, "password": PASSWORD})
            assert stolen.status_code == 400 and served.subscriber("new@example.org") is None
        assert confirm(client, preview).status_code == 303
        assert served.subscriber("new@example.org").status == "active"


def test_without_consent_rows_are_pending_and_asked_to_confirm_by_mail(serve, store_url):
    served = site(serve, store_url)
    with signed_in(served) as client:
        preview = upload(client, b"email,name\nfresh@example.org,Fresh\n", confirmed=False)
        assert "1 of them pending" in preview.text
        assert confirm(client, preview).status_code == 303
    assert served.subscriber("fresh@example.org").status == "pending"
    [mail] = wait_for_mail(served.outbox)
    assert mail["To"].addresses[0].addr_spec == "fresh@example.org" and "Confirm" in mail["Subject"]


def test_a_file_too_large_or_without_an_email_column_is_refused_whole(serve, store_url):
    served = site(serve, store_url, web={"max_import_bytes": 2048})
    before = statuses(served)
    with signed_in(served) as client:
        large = b"email\n" + b"".join(f"someone{i:05}@example.org\n".encode() for i in range(200))
        answer = upload(client, large)
        assert answer.status_code == 413 and "larger than" in answer.text
        headless = upload(client, b"address,name\nx@example.org,X\n")
        assert headless.status_code == 400
        assert "the header row has no &#39;email&#39; column" in headless.text
        empty = client.post("/admin/subscribers/import", data={"csrf_token": form_token(client, "/admin/subscribers/import")},
                            files={"file": ("", b"", "text/csv")})
        assert empty.status_code == 400 and "choose a CSV file" in empty.text
        not_utf8 = upload(client, "email,name\nx@example.org,Caf\u00e9\n".encode("latin-1"))
        assert not_utf8.status_code == 400 and "not UTF-8" in not_utf8.text
    assert statuses(served) == before

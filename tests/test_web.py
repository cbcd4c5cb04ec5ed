"""The HTTP app through a real uvicorn server and httpx: feeds, double opt-in, unsubscribe, the admin API."""

from __future__ import annotations

import email
import email.policy
import mailbox
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlencode

import feedparser
import httpx
import pytest
import uvicorn
from conftest import EXAMPLE_POSTS, free_port
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import event, text

from feedsvc import feeds, subscriptions
from feedsvc.config import ConfigError, Settings
from feedsvc.store import rate_limits
from feedsvc.store.engine import create_store_engine
from feedsvc.tokens import Purpose, Tokens, confirm_url, preferences_url, unsubscribe_url
from feedsvc.web import create_app
from feedsvc.web.app import STORE_PROBE_SECONDS
from feedsvc.web.feed_server import FeedFiles

ADMIN = {"authorization": "Bearer test-admin-token-of-at-least-32-bytes"}


@dataclass
class Served:
    url: str
    settings: Settings
    app: object

    def client(self, **options) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 10, **options})

    @property
    def engine(self):
        return self.app.state.web.engine

    @property
    def outbox(self) -> Path:
        return self.settings.store.outbox_dir

    def subscriber(self, address: str):
        return subscriptions.find(self.engine, address)


@pytest.fixture
def serve(make_settings) -> Iterator[Callable[..., Served]]:
    """Start the app on a real uvicorn server in a thread: serve(web={...}, store={...}, ...)."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(engine=None, **sections) -> Served:
        port = free_port()
        web = {"port": port, "public_url": f"http://127.0.0.1:{port}", "subscribe_rate_per_client": 1000}
        web.update(sections.pop("web", {}))
        settings = make_settings(web=web, **sections)
        app = create_app(settings, engine=engine)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return Served(f"http://127.0.0.1:{port}", settings, app)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(10)


def wait_for_mail(outbox: Path, count: int = 1, timeout: float = 10) -> list[EmailMessage]:
    deadline = time.monotonic() + timeout
    while True:
        found = [] if not (outbox / "new").is_dir() else list(mailbox.Maildir(outbox, factory=None))
        if len(found) >= count or time.monotonic() > deadline:
            return [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in found]
        time.sleep(0.05)


def confirm_link(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", body).group(0)


def csrf_form(client: httpx.Client, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def count_rows(served: Served) -> int:
    with served.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM subscribers")).scalar_one()


# --- the whole round trip --------------------------------------------------------------------------------------


def test_round_trip_through_the_maildir(serve, store_url):
    served = serve(store={"url": store_url}, site={"language": "id"})
    with served.client() as client:
        token = csrf_form(client)
        answer = client.post(
            "/subscribe",
            data={"email": "Ani@Example.org", "name": "Ani Wijaya", "frequency": "daily", "csrf_token": token},
            headers={"user-agent": "TestBrowser/1.0"},
        )
        assert answer.status_code == 200
        assert "Periksa kotak masuk Anda" in answer.text  # site.language = id
        pending = served.subscriber("ani@example.org")
        assert (pending.status, pending.frequency, pending.consent_source) == ("pending", "daily", "web-form")
        assert (pending.consent_ip, pending.consent_user_agent) == ("127.0.0.1", "TestBrowser/1.0")

        [message] = wait_for_mail(served.outbox)
        assert message["To"] == "Ani Wijaya <Ani@example.org>"
        link = confirm_link(message)
        page = client.get(link)
        assert page.status_code == 200 and "Ani@example.org" in page.text
        assert page.text.count("<button") == 1 and page.text.count("<form") == 1
        assert served.subscriber("ani@example.org").status == "pending"  # looking is not confirming
        confirmed = client.post(link)
        assert confirmed.status_code == 200 and "Ani@example.org" in confirmed.text
        active = served.subscriber("ani@example.org")
        assert active.status == "active" and active.confirmed_at is not None

        unsubscribe = unsubscribe_url(served.settings, served.app.state.web.tokens, active.id, active.link_key)
        page = client.get(unsubscribe)
        assert page.status_code == 200
        assert page.text.count("<button") == 1 and page.text.count("<form") == 1
        assert served.subscriber("ani@example.org").status == "active"  # looking is not unsubscribing
        done = client.post(unsubscribe, data={})
        assert done.status_code == 200 and "Langganan Anda sudah berhenti" in done.text
        assert served.subscriber("ani@example.org").status == "unsubscribed"


def test_round_trip_through_a_real_smtp_server_and_one_click_unsubscribe(serve, smtp_server):
    served = serve(mail={"smtp_url": smtp_server.url})
    with served.client() as client:
        answer = client.post("/subscribe", json={"email": "budi@example.org", "name": "Budi", "tags": ["python"]})
        assert answer.status_code == 202
        deadline = time.monotonic() + 10
        while not smtp_server.messages_to("budi@example.org") and time.monotonic() < deadline:
            time.sleep(0.05)
        [mail] = smtp_server.messages_to("budi@example.org")
        assert client.post(confirm_link(mail.message)).status_code == 200
        subscriber = served.subscriber("budi@example.org")
        assert subscriber.status == "active" and subscriber.tags == ("python",)

        # RFC 8058: the mail client POSTs `List-Unsubscribe=One-Click` to the List-Unsubscribe URL; no page, no CSRF.
        url = unsubscribe_url(served.settings, served.app.state.web.tokens, subscriber.id, subscriber.link_key)
        one_click = client.post(url, content=b"List-Unsubscribe=One-Click", headers={"content-type": "application/x-www-form-urlencoded"})
        assert one_click.status_code == 200 and "<html" not in one_click.text
        assert served.subscriber("budi@example.org").status == "unsubscribed"
        # Again: still 200 (mail clients retry).
        assert client.post(url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert len(smtp_server.received) == 1


def test_preferences_page_changes_frequency_and_tags(serve):
    served = serve()
    pending = subscriptions.request_subscription(
        served.engine,
        subscriptions.subscription_request("cici@example.org", tags=["go"]),
        subscriptions.Consent(at=datetime.now(UTC), source="test"),
    )
    url = preferences_url(served.settings, served.app.state.web.tokens, pending.id, pending.link_key)
    with served.client() as client:
        token = csrf_form(client, url)
        page = client.get(url)
        assert 'value="go" checked' in page.text
        saved = client.post(url, data={"frequency": "weekly", "tags": ["go", "rust"], "csrf_token": token})
        assert saved.status_code == 200 and 'value="weekly" selected' in saved.text
        assert served.subscriber("cici@example.org").frequency == "weekly"
        assert served.subscriber("cici@example.org").tags == ("go", "rust")
        refused = client.post(url, data={"frequency": "hourly", "csrf_token": token})
        assert refused.status_code == 400 and "frequency" in refused.text
        assert client.post(url, data={"frequency": "daily"}).status_code == 403  # no CSRF token
        assert served.subscriber("cici@example.org").frequency == "weekly"
        assert '<option value="monthly">Monthly digest</option>' in saved.text
        monthly = client.post(url, data={"frequency": "monthly", "tags": ["go"], "csrf_token": token})
        assert monthly.status_code == 200 and 'value="monthly" selected' in monthly.text
        assert served.subscriber("cici@example.org").frequency == "monthly"


# --- no enumeration, rate limits -------------------------------------------------------------------------------


def _make_states(served: Served) -> None:
    now = datetime.now(UTC)
    consent = subscriptions.Consent(at=now, source="test")
    for address in ("pending@example.org", "active@example.org", "left@example.org"):
        # mail=False: these states are the background; only the requests below ask for confirmation mails.
        subscriptions.request_subscription(served.engine, subscriptions.subscription_request(address), consent, mail=False)
    subscriptions.confirm(served.engine, served.subscriber("active@example.org").id, now)
    subscriptions.confirm(served.engine, served.subscriber("left@example.org").id, now)
    subscriptions.unsubscribe(served.engine, served.subscriber("left@example.org").id, now)


def test_answers_are_identical_whatever_the_address_state(serve):
    served = serve()
    _make_states(served)
    addresses = ["new@example.org", "pending@example.org", "active@example.org", "left@example.org"]
    with served.client() as client:
        json_answers = {(r.status_code, r.content) for r in (client.post("/subscribe", json={"email": a}) for a in addresses)}
        token = csrf_form(client)
        form_answers = {
            (r.status_code, r.content)
            for r in (client.post("/subscribe", data={"email": a, "csrf_token": token}) for a in addresses)
        }
    assert len(json_answers) == 1 and next(iter(json_answers))[0] == 202
    assert len(form_answers) == 1 and next(iter(form_answers))[0] == 200
    # Confirmation mails only to the new, the pending and the one who left (twice each: JSON, then form).
    mails = wait_for_mail(served.outbox, count=6)
    time.sleep(0.3)
    mails = wait_for_mail(served.outbox, count=6)
    assert sorted(m["To"].addresses[0].addr_spec for m in mails) == sorted(
        ["new@example.org", "pending@example.org", "left@example.org"] * 2
    )
    assert served.subscriber("active@example.org").status == "active"


def test_rate_limits_per_client_and_per_address(serve):
    served = serve(web={"subscribe_rate_per_client": 4, "subscribe_rate_per_address": 2})
    with served.client() as client:
        token = csrf_form(client)
        answers = [client.post("/subscribe", json={"email": "flood@example.org"}) for _ in range(4)]
        # Over the per-address limit the answer stays the same; only the mails stop.
        assert {(a.status_code, a.content) for a in answers} == {(202, answers[0].content)}
        limited = client.post("/subscribe", json={"email": "other@example.org"})
        assert limited.status_code == 429
        assert 3500 <= int(limited.headers["retry-after"]) <= 3601
        # Junk counts too, and a browser gets a page.
        page = client.post("/subscribe", data={"email": "x", "csrf_token": token})
        assert page.status_code == 429 and "Too many requests" in page.text and "retry-after" in page.headers
    assert len(wait_for_mail(served.outbox, count=3, timeout=1.5)) == 2
    assert served.subscriber("other@example.org") is None


# --- tokens ----------------------------------------------------------------------------------------------------


def test_forged_expired_and_wrong_purpose_tokens_are_refused(serve):
    served = serve(web={"confirm_token_max_age": 1})
    tokens = served.app.state.web.tokens
    pending = subscriptions.request_subscription(
        served.engine, subscriptions.subscription_request("tok@example.org"), subscriptions.Consent(at=datetime.now(UTC), source="t")
    )
    confirm = confirm_url(served.settings, tokens, pending.id, pending.link_key)
    unsubscribe = unsubscribe_url(served.settings, tokens, pending.id, pending.link_key)
    forged = confirm[:-3] + ("AAA" if not confirm.endswith("AAA") else "BBB")
    other_secret = Tokens("another-secret", 3600).make(Purpose.CONFIRM, pending.id, pending.link_key)
    with served.client() as client:
        for url in (forged, f"{served.url}/confirm/{other_secret}", f"{served.url}/confirm/../../etc/passwd", f"{served.url}/confirm/x"):
            answer = client.get(url)
            assert answer.status_code in (400, 404), url
        answer = client.get(forged)
        assert answer.status_code == 400 and "This link is not valid" in answer.text
        # An unsubscribe token does not confirm, nor a confirm token unsubscribe.
        wrong = client.get(f"{served.url}/confirm/{unsubscribe.rsplit('/', 1)[1]}")
        assert wrong.status_code == 400
        assert client.post(f"{served.url}/unsubscribe/{confirm.rsplit('/', 1)[1]}", data={}).status_code == 400
        time.sleep(2.1)
        expired = client.get(confirm)
        assert expired.status_code == 400 and "expired" in expired.text
        # Unsubscribe links never expire.
        assert client.get(unsubscribe).status_code == 200
    assert served.subscriber("tok@example.org").status == "pending"


# --- hostile input ---------------------------------------------------------------------------------------------


def test_hostile_input_gets_4xx_and_stores_nothing(serve):
    served = serve()
    with served.client() as client:
        cases = [
            (413, {"content": b'{"email": "' + b"a" * 70_000 + b'@example.org"}', "headers": {"content-type": "application/json"}}),
            (400, {"json": {"email": "eve@example.org", "name": "Eve\r\nBcc: all@example.org"}}),
            (400, {"json": {"email": "eve@example.org\r\nBcc: all@example.org"}}),
            (400, {"json": {"email": "not-an-address"}}),
            (400, {"json": {"email": "jürgen@example.org"}}),
            (400, {"json": {"email": "x@example.org' OR '1'='1"}}),
            (400, {"json": {"email": "eve@example.org", "frequency": "hourly"}}),
            (400, {"json": {"email": "eve@example.org", "tags": ["<script>"]}}),
            (400, {"json": {"email": "eve@example.org", "tags": {"a": 1}}}),
            (400, {"json": {"email": 12}}),
            (400, {"json": ["eve@example.org"]}),
            (400, {"content": b'{"email": ', "headers": {"content-type": "application/json"}}),
            (400, {"content": b"[" * 50_000, "headers": {"content-type": "application/json"}}),
            (400, {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}),
            (415, {"content": b"email=eve@example.org", "headers": {"content-type": "text/plain"}}),
            (403, {"data": {"email": "eve@example.org"}}),  # a form without its CSRF token
        ]
        for status, request in cases:
            answer = client.post("/subscribe", **request)
            assert answer.status_code == status, (request, answer.text)
            assert "Traceback" not in answer.text
        with served.client(cookies={"feedsvc_csrf": "a" * 43}) as forger:
            forged = forger.post("/subscribe", data={"email": "eve@example.org", "csrf_token": "0" * 64})
            assert forged.status_code == 403 and "This form has expired" in forged.text
        # A declared length over the limit is refused before a byte of the body is read.
        with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=5) as raw:
            raw.sendall(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{")
            assert raw.recv(64).startswith(b"HTTP/1.1 413")
        assert client.post("/subscribe", json={"email": "eve@example.org"}).json()["status"] == "ok"
        error = client.post("/subscribe", json={"email": "not-an-address"}).json()
        assert error["field"] == "email" and "not a valid address" in error["error"]
    assert count_rows(served) == 1


def test_idn_addresses_are_stored_in_punycode_and_sql_is_just_text(serve):
    served = serve()
    name = "Robert'); DROP TABLE subscribers; --"
    with served.client() as client:
        assert client.post("/subscribe", json={"email": "Zoë@Bücher.example"}).status_code == 400
        assert client.post("/subscribe", json={"email": "zoe@Bücher.example", "name": name}).status_code == 202
    stored = served.subscriber("zoe@xn--bcher-kva.example")
    assert stored.email == "zoe@xn--bcher-kva.example" and stored.name == name
    [message] = wait_for_mail(served.outbox)
    assert message["To"].addresses[0].addr_spec == "zoe@xn--bcher-kva.example"


def test_errors_show_no_stack_traces(serve, tmp_path):
    served = serve()
    tokens = served.app.state.web.tokens
    url = preferences_url(served.settings, tokens, 1, "any")
    with served.engine.begin() as connection:
        connection.execute(text("DROP TABLE deliveries"))
        connection.execute(text("DROP TABLE subscribers"))
    with served.client() as client:
        page = client.get(url)
        assert page.status_code == 500
        assert "Something went wrong on our side" in page.text
        for leak in ("Traceback", "subscribers", "sqlite", "OperationalError"):
            assert leak not in page.text
        api = client.get("/api/subscribers", headers=ADMIN)
        assert api.status_code == 500 and api.json() == {"error": "internal error"}
        assert client.get("/nothing-here").status_code == 404
        assert client.put("/subscribe").status_code == 405


# --- feeds -----------------------------------------------------------------------------------------------------


@pytest.fixture
def built(serve) -> Served:
    served = serve(feeds={"items": 50})
    shutil.copytree(EXAMPLE_POSTS, served.settings.posts.dir, dirs_exist_ok=True)
    feeds.build(served.settings)
    assert (served.settings.feeds.output_dir / "rss.xml").is_file()
    return served


def test_feeds_are_served_with_types_and_parse_back(built):
    output = built.settings.feeds.output_dir
    tag_feed = next(p for p in output.glob("tags/*/rss.xml"))
    with built.client() as client:
        expected = {
            "/rss.xml": "application/rss+xml; charset=utf-8",
            "/atom.xml": "application/atom+xml; charset=utf-8",
            "/feed.json": "application/feed+json; charset=utf-8",
            "/" + tag_feed.relative_to(output).as_posix(): "application/rss+xml; charset=utf-8",
        }
        for path, content_type in expected.items():
            answer = client.get(path)
            assert answer.status_code == 200 and answer.headers["content-type"] == content_type, path
            assert answer.content == (output / path.lstrip("/")).read_bytes()
            assert re.fullmatch(r'"[0-9a-f]{24}(-gz)?"', answer.headers["etag"])
            assert answer.headers["last-modified"].endswith("GMT")
        parsed = feedparser.parse(client.get("/atom.xml").content)
        assert not parsed.bozo and len(parsed.entries) >= 3
        home = client.get("/")
        assert f'<link rel="alternate" type="application/rss+xml" title="Test Blog (RSS)" href="{built.url}/rss.xml">' in home.text
        assert 'name="csrf_token"' in home.text and home.cookies.get("feedsvc_csrf")
        for path in ("/subscribers/feedsvc.db", "/tags/rss.xml", "/tags/a/b/rss.xml", "/%2e%2e/feedsvc.toml"):
            assert client.get(path).status_code == 404, path
    # Dot segments sent as they are (httpx would resolve them first).
    for path in ("/tags/../feedsvc.toml", "/tags/../../rss.xml", "/tags/x/../../../../etc/passwd", "/tags/..%2f..%2frss.xml"):
        assert raw_status(built, f"GET {path}") == 404, path


def raw_status(served: Served, request_line: str) -> int:
    with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=5) as raw:
        raw.sendall(f"{request_line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return int(raw.recv(64).split(b" ")[1])


def test_conditional_requests_and_gzip(built):
    with built.client() as client:
        plain = client.get("/rss.xml", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.headers["vary"] == "Accept-Encoding"
        zipped = client.get("/rss.xml", headers={"accept-encoding": "br, gzip;q=0.8"})
        assert zipped.headers["content-encoding"] == "gzip" and zipped.content == plain.content
        assert int(zipped.headers["content-length"]) < len(plain.content)
        assert zipped.headers["etag"] != plain.headers["etag"]
        assert "content-encoding" not in client.get("/rss.xml", headers={"accept-encoding": "gzip;q=0"}).headers

        for etag in (plain.headers["etag"], zipped.headers["etag"], "W/" + plain.headers["etag"], f'"nope", {plain.headers["etag"]}', "*"):
            answer = client.get("/rss.xml", headers={"if-none-match": etag, "accept-encoding": "identity"})
            assert answer.status_code == 304 and answer.content == b"", etag
            assert answer.headers["etag"] == plain.headers["etag"]
        assert client.get("/rss.xml", headers={"if-none-match": '"other"'}).status_code == 200

        modified = plain.headers["last-modified"]
        assert client.get("/rss.xml", headers={"if-modified-since": modified}).status_code == 304
        assert client.get("/rss.xml", headers={"if-modified-since": "Thu, 01 Jan 2015 00:00:00 GMT"}).status_code == 200
        assert client.get("/rss.xml", headers={"if-modified-since": "garbage"}).status_code == 200
        # If-None-Match wins over If-Modified-Since.
        assert client.get("/rss.xml", headers={"if-none-match": '"other"', "if-modified-since": modified}).status_code == 200

        head = client.head("/rss.xml", headers={"accept-encoding": "identity"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(plain.content))

        # A rebuilt feed is served at once after refresh() (the service calls it after each build).
        rss = built.settings.feeds.output_dir / "rss.xml"
        rss.write_bytes(plain.content.replace(b"<channel>", b"<channel><!-- rebuilt -->"))
        built.app.state.web.feeds.refresh()
        fresh = client.get("/rss.xml", headers={"if-none-match": plain.headers["etag"], "accept-encoding": "identity"})
        assert fresh.status_code == 200 and b"rebuilt" in fresh.content


def test_the_304_path_reads_no_file(tmp_path):
    """Between re-checks the answer comes from memory: even a deleted file is still answered from it."""
    (tmp_path / "rss.xml").write_bytes(b"<rss/>")
    files = FeedFiles(tmp_path, recheck_seconds=3600)
    entry = files.get("/rss.xml")
    (tmp_path / "rss.xml").unlink()
    assert files.get("/rss.xml") is entry
    files.refresh()
    assert files.get("/rss.xml") is None


def test_feeds_written_by_another_process_are_seen_within_a_second(tmp_path):
    (tmp_path / "atom.xml").write_bytes(b"<feed>1</feed>")
    files = FeedFiles(tmp_path, recheck_seconds=0.2)
    assert files.get("/atom.xml").body == b"<feed>1</feed>"
    replacement = tmp_path / "atom.xml.tmp"
    replacement.write_bytes(b"<feed>2</feed>")
    replacement.replace(tmp_path / "atom.xml")
    time.sleep(0.25)
    assert files.get("/atom.xml").body == b"<feed>2</feed>"


# --- admin API -------------------------------------------------------------------------------------------------


def test_admin_api(serve):
    served = serve()
    with served.client() as client:
        assert client.get("/api/subscribers").status_code == 401
        assert client.get("/api/subscribers", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/subscribers").headers["www-authenticate"].startswith("Bearer")

        added = client.post("/api/subscribers", headers=ADMIN, json={"email": "Api@Example.org", "name": "Api", "confirmed": True})
        assert added.status_code == 201 and added.json()["subscriber"]["status"] == "active"
        assert added.json()["subscriber"]["consent_source"] == "operator-api"
        pending = client.post("/api/subscribers", headers=ADMIN, json={"email": "wait@example.org", "frequency": "monthly"})
        assert pending.status_code == 201 and pending.json()["subscriber"]["status"] == "pending"
        assert pending.json()["subscriber"]["frequency"] == "monthly"
        assert client.post("/api/subscribers", headers=ADMIN, json={"email": "api@example.org"}).json()["outcome"] == "exists"
        assert client.post("/api/subscribers", headers=ADMIN, json={"email": "bad"}).status_code == 400
        assert client.post("/api/subscribers", headers=ADMIN, json={"email": "a@example.org", "confirmed": "yes"}).status_code == 400

        csv_body = "email,name\nimp@example.org,Imp\nbroken,\nwait@example.org,Wait\n"
        report = client.post("/api/subscribers/import?confirmed=true", headers=ADMIN | {"content-type": "text/csv"}, content=csv_body)
        assert report.status_code == 200
        assert report.json() == {
            "imported": 1, "pending": 0, "updated": 1, "skipped": 0,
            "refused": [{"line": 3, "reason": "email: is not a valid address: An email address must have an @-sign."}],
        }
        assert client.post("/api/subscribers/import", headers=ADMIN, content=b"name\nx\n").status_code == 400

        listed = client.get("/api/subscribers", headers=ADMIN, params={"q": "example.org", "limit": 2}).json()
        assert listed["total"] == 3 and [s["email"] for s in listed["items"]] == ["Api@example.org", "wait@example.org"]
        assert client.get("/api/subscribers", headers=ADMIN, params={"status": "nope"}).status_code == 400
        assert client.get("/api/subscribers", headers=ADMIN, params={"limit": "-1"}).status_code == 400

        api_id = listed["items"][0]["id"]
        assert client.get(f"/api/subscribers/{api_id}", headers=ADMIN).json()["email"] == "Api@example.org"
        removed = client.delete(f"/api/subscribers/{api_id}", headers=ADMIN)
        assert removed.json()["status"] == "unsubscribed"
        # A suppression is not resubscribed by the API either.
        again = client.post("/api/subscribers", headers=ADMIN, json={"email": "api@example.org", "confirmed": True})
        assert again.status_code == 409
        assert client.delete(f"/api/subscribers/{api_id}?forget=true", headers=ADMIN).status_code == 200
        assert client.get(f"/api/subscribers/{api_id}", headers=ADMIN).status_code == 404

        assert client.get("/api/subscribers/counts", headers=ADMIN).json() == {
            "pending": 0, "active": 2, "unsubscribed": 0, "bounced": 0, "complained": 0,
        }
        export = client.get("/api/subscribers/export", headers=ADMIN)
        assert export.headers["content-type"] == "text/csv; charset=utf-8"
        assert export.text.splitlines()[0].startswith("email,name,status,frequency,tags")
        assert sorted(line.split(",")[0] for line in export.text.splitlines()[1:]) == ["imp@example.org", "wait@example.org"]

        spec = client.get("/api/openapi.json").json()
        assert spec["openapi"].startswith("3.") and "/api/subscribers/import" in spec["paths"]
        assert set(spec["paths"]["/api/subscribers"]) == {"get", "post"}
        body = spec["paths"]["/api/subscribers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        model = spec["components"]["schemas"][body["$ref"].rpartition("/")[2]]
        assert model["properties"]["frequency"]["enum"] == ["instant", "daily", "weekly", "monthly"]
    # The pending address added without consent got its confirmation mail.
    assert [m["To"].addresses[0].addr_spec for m in wait_for_mail(served.outbox)] == ["wait@example.org"]


def test_admin_api_is_off_without_a_token(serve):
    served = serve(web={"admin_token": ""})
    with served.client() as client:
        assert client.get("/api/subscribers", headers=ADMIN).status_code == 404
        assert client.get("/api/openapi.json").status_code == 404


# --- health and metrics ----------------------------------------------------------------------------------------


def test_health_and_metrics(built):
    with built.client() as client:
        client.get("/rss.xml")
        client.post("/subscribe", json={"email": "m@example.org"})
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok", "checks": {"store": True}}
        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        body = metrics.text
    assert 'feedsvc_subscribers{status="pending"} 1.0' in body
    assert re.search(r'feedsvc_http_requests_total\{method="GET",route="feed",status="200"\} [1-9]', body)
    assert re.search(r'feedsvc_http_requests_total\{method="POST",route="subscribe",status="202"\} [1-9]', body)
    assert "# TYPE feedsvc_feed_builds_total counter" in body and "# TYPE feedsvc_deliveries_total counter" in body


def test_health_reports_an_unreachable_store(serve):
    engine = create_store_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1")
    served = serve(engine=engine)
    with served.client() as client:
        answer = client.get("/healthz")
    assert answer.status_code == 503 and answer.json()["checks"] == {"store": False}


def test_health_queries_nothing_per_request(serve):
    """/healthz reads what the store probe saw last: a flood of health checks is not a flood of queries."""
    served = serve()
    statements: list[str] = []

    def record(connection, cursor, statement, *rest) -> None:
        statements.append(statement)

    event.listen(served.engine, "before_cursor_execute", record)
    started = time.monotonic()
    with served.client() as client:
        for _ in range(100):
            assert client.get("/healthz").json() == {"status": "ok", "checks": {"store": True}}
    elapsed = time.monotonic() - started
    event.remove(served.engine, "before_cursor_execute", record)
    # Only the background probe queries: one ping per STORE_PROBE_SECONDS at most (and one in flight).
    assert len(statements) <= elapsed / STORE_PROBE_SECONDS + 2, statements


def test_health_follows_the_store_going_away_and_coming_back(serve, tmp_path):
    served = serve()
    store = served.settings.store.dir
    with served.client() as client:
        assert client.get("/healthz").status_code == 200
        moved = store.rename(tmp_path / "store-elsewhere")
        served.engine.dispose()  # the pooled connection would still read the moved file
        wait_until(lambda: client.get("/healthz").status_code == 503, "the store to be reported unreachable")
        assert client.get("/healthz").json()["checks"] == {"store": False}
        moved.rename(store)
        wait_until(lambda: client.get("/healthz").status_code == 200, "the store to be reported back")


def test_home_page_is_the_same_page_with_each_browsers_own_token(built):
    first, second = built.client(), built.client()
    with first, second:
        page_one, page_two = first.get("/"), second.get("/")
        token_one, token_two = (re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                                for page in (page_one, page_two))
        assert token_one != token_two
        assert page_one.text.replace(token_one, "") == page_two.text.replace(token_two, "")
        assert first.get("/").text == page_one.text  # the same browser keeps its token
        assert page_one.headers["content-security-policy"] and page_one.headers["cache-control"] == "no-store"
        answer = first.post("/subscribe", data={"email": "home@example.org", "csrf_token": token_one})
        assert answer.status_code == 200
        assert second.post("/subscribe", data={"email": "home2@example.org", "csrf_token": token_one}).status_code == 403


def test_home_page_lists_feeds_written_after_it_was_first_shown(serve):
    served = serve()
    with served.client() as client:
        assert "/tags/fresh/rss.xml" not in client.get("/").text
        shutil.copytree(EXAMPLE_POSTS, served.settings.posts.dir, dirs_exist_ok=True)
        (served.settings.posts.dir / "fresh.md").write_text(
            "---\ntitle: Fresh\ndate: 2020-01-01T00:00:00Z\ntags: [fresh]\n---\n\nNew.\n", encoding="utf-8"
        )
        feeds.build(served.settings)  # as another process (`feedsvc build`) would: no refresh() call
        wait_until(lambda: "/tags/fresh/rss.xml" in client.get("/").text, "the new tag feed on the home page")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.1)


# --- identity: links die with their row ------------------------------------------------------------------------


def test_an_erased_subscribers_links_never_open_the_next_subscribers_row(serve, store_url):
    served = serve(store={"url": store_url})
    tokens = served.app.state.web.tokens
    with served.client() as client:
        client.post("/api/subscribers", headers=ADMIN, json={"email": "a@example.org", "confirmed": True})
        client.post("/api/subscribers", headers=ADMIN, json={"email": "keep@example.org", "confirmed": True})
        last = client.post("/api/subscribers", headers=ADMIN, json={"email": "old@example.org", "confirmed": True})
        old = served.subscriber("old@example.org")
        old_preferences = preferences_url(served.settings, tokens, old.id, old.link_key)
        old_unsubscribe = unsubscribe_url(served.settings, tokens, old.id, old.link_key)
        assert client.get(old_preferences).status_code == 200

        erased = client.delete(f"/api/subscribers/{last.json()['subscriber']['id']}", params={"forget": "true"}, headers=ADMIN)
        assert erased.status_code == 200
        client.post("/api/subscribers", headers=ADMIN, json={"email": "new@example.org", "confirmed": True})
        new = served.subscriber("new@example.org")
        assert new.id > old.id  # never the erased row's id again

        page = client.get(old_preferences)
        assert page.status_code == 400 and "no longer valid" in page.text and "new@example.org" not in page.text
        one_click = client.post(old_unsubscribe, data={"List-Unsubscribe": "One-Click"})
        assert one_click.status_code == 200  # the mail client is told it worked: that address is gone anyway
        assert client.post(old_unsubscribe, data={}).status_code == 400
        # A link with the right id but another key, or with no key at all (the form of links before keys),
        # opens nothing either.
        for token in (
            tokens.make(Purpose.PREFERENCES, new.id, old.link_key),
            URLSafeTimedSerializer("test-secret-key-of-at-least-32-bytes", salt="feedsvc.preferences").dumps(new.id),
        ):
            assert client.get(f"/preferences/{token}").status_code == 400
    assert served.subscriber("new@example.org").status == "active"
    assert served.subscriber("keep@example.org").status == "active"


def test_confirm_links_change_nothing_on_get_or_head(serve):
    served = serve()
    pending = subscriptions.request_subscription(
        served.engine, subscriptions.subscription_request("scan@example.org"), subscriptions.Consent(at=datetime.now(UTC), source="t")
    )
    url = confirm_url(served.settings, served.app.state.web.tokens, pending.id, pending.link_key)
    with served.client() as client:
        # What mail security scanners do: fetch the link, sometimes several times, sometimes HEAD only.
        assert client.head(url).status_code == 200
        page = client.get(url)
        assert page.status_code == 200 and 'method="post"' in page.text and "scan@example.org" in page.text
        assert served.subscriber("scan@example.org").status == "pending"
        # The button: a cross-site page cannot make it without the token in the URL, as for unsubscribing.
        done = client.post(url)
        assert done.status_code == 200 and "You are subscribed" in done.text
        assert served.subscriber("scan@example.org").status == "active"
        assert "You are subscribed" in client.get(url).text  # again: says so, changes nothing


# --- headers, store faults, operator pages, rate-limit table ---------------------------------------------------


def test_html_pages_carry_a_content_security_policy_and_token_pages_are_not_stored(serve):
    served = serve()
    pending = subscriptions.request_subscription(
        served.engine, subscriptions.subscription_request("h@example.org"), subscriptions.Consent(at=datetime.now(UTC), source="t")
    )
    tokens = served.app.state.web.tokens
    pages = [
        "/",
        "/nothing-here",
        preferences_url(served.settings, tokens, pending.id, pending.link_key),
        unsubscribe_url(served.settings, tokens, pending.id, pending.link_key),
        confirm_url(served.settings, tokens, pending.id, pending.link_key),
        "/confirm/forged",
    ]
    with served.client() as client:
        for page in pages:
            answer = client.get(page)
            assert answer.headers["content-type"].startswith("text/html"), page
            policy = answer.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy, page
            assert "script-src" not in policy and "form-action 'self' http://127.0.0.1:" in policy
            assert answer.headers["x-content-type-options"] == "nosniff", page
            assert answer.headers["referrer-policy"] == "no-referrer", page
            assert answer.headers["cache-control"] == "no-store", page


def _hold_write_lock(database: Path) -> subprocess.Popen[str]:
    """Another process that takes SQLite's write lock and keeps it (as a long `feedsvc` import would)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(database)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
        )],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_locked_sqlite_store_gives_503_with_retry_after(serve):
    served = serve()
    with served.client(timeout=30) as client:
        token = csrf_form(client)
        holder = _hold_write_lock(Path(served.settings.store.database_url.removeprefix("sqlite:///")))
        try:
            answers: dict[str, httpx.Response] = {}
            threads = [
                threading.Thread(target=lambda: answers.update(json=client.post("/subscribe", json={"email": "l@example.org"}))),
                threading.Thread(target=lambda: answers.update(
                    form=client.post("/subscribe", data={"email": "l@example.org", "csrf_token": token}))),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            holder.stdin.close()
            holder.wait(10)
        assert answers["json"].status_code == 503 and answers["json"].json() == {"error": "store busy or unreachable"}
        assert answers["form"].status_code == 503 and "try again in a minute" in answers["form"].text
        assert all(int(answer.headers["retry-after"]) > 0 for answer in answers.values())
        # The lock is gone: the same request goes through.
        assert client.post("/subscribe", json={"email": "l@example.org"}).status_code == 202


def test_an_unreachable_postgresql_gives_503_with_retry_after(serve):
    engine = create_store_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1")
    served = serve(engine=engine)
    url = preferences_url(served.settings, served.app.state.web.tokens, 1, "key")
    with served.client() as client:
        answers = [
            client.get(url),
            client.post("/subscribe", json={"email": "p@example.org"}),
            client.get("/api/subscribers", headers=ADMIN),
        ]
    for answer in answers:
        assert answer.status_code == 503 and int(answer.headers["retry-after"]) > 0, answer.request.url
        assert "Traceback" not in answer.text and "psycopg" not in answer.text
    assert "try again in a minute" in answers[0].text


def test_metrics_and_the_api_description_need_the_token_outside_the_configured_networks(serve):
    local = serve()
    with local.client() as client:  # the default: loopback may read them
        assert client.get("/metrics").status_code == 200
        assert client.get("/api/openapi.json").status_code == 200
    remote = serve(web={"metrics_networks": ["10.0.0.0/8"]})
    with remote.client() as client:
        for path in ("/metrics", "/api/openapi.json"):
            refused = client.get(path)
            assert refused.status_code == 401 and "feedsvc_subscribers" not in refused.text, path
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert client.get(path, headers={"authorization": "Bearer wrong"}).status_code == 401
            assert client.get(path, headers=ADMIN).status_code == 200, path
        assert "feedsvc_subscribers" in client.get("/metrics", headers=ADMIN).text


def test_a_bad_metrics_network_stops_the_start_with_its_name(make_settings):
    with pytest.raises(ConfigError, match=r"web.metrics_networks.*'localhost' is not an IP network"):
        make_settings(web={"metrics_networks": ["localhost"]})


def test_expired_rate_limit_windows_are_pruned(serve):
    served = serve()
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    with served.engine.begin() as connection:
        for n in range(500):
            rate_limits.hit(connection, f"subscribe:client:198.51.100.{n}", limit=10, window=timedelta(hours=1), now=long_ago)
    with served.client() as client:
        assert client.post("/subscribe", json={"email": "r@example.org"}).status_code == 202
    with served.engine.connect() as connection:
        keys = connection.execute(text("SELECT key FROM rate_limits")).scalars().all()
    # What is left: this request's two counters (its client, its address).
    assert sorted(keys) == ["subscribe:address:r@example.org", "subscribe:client:127.0.0.1"]


# --- typed input at the edge (issue 16) ------------------------------------------------------------------------


def _pending(served: Served, address: str):
    return subscriptions.request_subscription(
        served.engine, subscriptions.subscription_request(address), subscriptions.Consent(at=datetime.now(UTC), source="t")
    )


def test_ids_and_offsets_are_bounded_ascii_integers(serve, store_url):
    served = serve(store={"url": store_url})
    with served.client(headers=ADMIN) as client:
        added = client.post("/api/subscribers", json={"email": "n@example.org", "confirmed": True}).json()
        for id_ in (2**63, 2**64, 10**30):
            for method in ("GET", "DELETE"):
                answer = client.request(method, f"/api/subscribers/{id_}")
                assert answer.status_code == 400 and answer.json()["field"] == "id", (method, id_, answer.text)
        assert client.get(f"/api/subscribers/{2**63 - 1}").status_code == 404
        for name in ("limit", "offset"):
            # '²' and '①' pass str.isdigit() but not int(); Arabic-Indic '٣' passes both.
            for value in ("²", "①", "٣", "３", " 3", "3.0", "+3", "-1", "0x3", "1_0"):
                answer = client.get("/api/subscribers", params={name: value})
                assert answer.status_code == 400 and answer.json()["field"] == name, (name, value, answer.text)
        # Inside the description's bounds, accepted: offsets far past the end just find nothing.
        for offset in (10**9 + 1, 2**63 - 1):
            page = client.get("/api/subscribers", params={"offset": offset})
            assert page.status_code == 200 and page.json() == {"total": 1, "items": []}
        assert client.get("/api/subscribers", params={"offset": 2**63}).status_code == 400
        assert client.get(f"/api/subscribers/{added['subscriber']['id']}").status_code == 200


def test_invalid_utf8_in_a_form_is_refused_not_stored_or_mailed(serve):
    served = serve()
    with served.client() as client:
        token = csrf_form(client)
        form = {"content-type": "application/x-www-form-urlencoded"}
        for body in (
            b"email=u1%40example.org&name=Bad%FFName&csrf_token=" + token.encode(),  # an escape that spells no UTF-8
            b"email=u2%40example.org&name=Bad\xe9Name&csrf_token=" + token.encode(),  # a raw Latin-1 byte
            b"email=u3%40example.org&name=%ED%A0%80&csrf_token=" + token.encode(),  # an encoded surrogate (CESU-8)
        ):
            answer = client.post("/subscribe", content=body, headers=form)
            assert answer.status_code == 400 and "The form could not be read" in answer.text, body
        boundary = "b0undary"
        multipart = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nu4@example.org\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n"
        ).encode() + b"J\xfcrgen\r\n" + f"--{boundary}--\r\n".encode()
        answer = client.post("/subscribe", content=multipart, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert answer.status_code == 400 and "The form could not be read" in answer.text
        # The same multipart form in UTF-8 goes through.
        fine = multipart.replace(b"J\xfcrgen", "Jürgen".encode()).replace(b"u4@", b"u5@")
        answer = client.post("/subscribe", content=fine, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert answer.status_code == 200
    assert served.subscriber("u5@example.org").name == "Jürgen"
    assert count_rows(served) == 1
    assert len(wait_for_mail(served.outbox, count=2, timeout=1.5)) == 1


def test_lone_surrogates_in_json_are_refused(serve):
    served = serve()
    body = b'{"email": "s@example.org", "name": "\\ud800"}'
    with served.client() as client:
        for path, headers in (("/subscribe", {}), ("/api/subscribers", ADMIN)):
            answer = client.post(path, content=body, headers=headers | {"content-type": "application/json"})
            assert answer.status_code == 400 and answer.json()["field"] == "name", (path, answer.text)
        # A surrogate pair is an ordinary character.
        paired = body.replace(b"\\ud800", b"\\ud83d\\ude00")
        assert client.post("/subscribe", content=paired, headers={"content-type": "application/json"}).status_code == 202
    assert served.subscriber("s@example.org").name == "😀"


def test_names_are_nfc_and_bidi_overrides_and_controls_are_refused(serve):
    served = serve()
    with served.client() as client:
        for name in ("evil\u202egnp.exe", "a\u2066b", "a\u200fb", "tab\there", "nul\x00", "c1\x85"):
            answer = client.post("/subscribe", json={"email": "b@example.org", "name": name})
            assert answer.status_code == 400 and answer.json()["field"] == "name", repr(name)
        assert count_rows(served) == 0
        assert client.post("/subscribe", json={"email": "b@example.org", "name": "Zoe\u0308"}).status_code == 202
    assert served.subscriber("b@example.org").name == "Zo\u00eb"


def test_addresses_keep_to_rfc_5321_limits(serve):
    served = serve()
    with served.client() as client:
        too_long_local = "a" * 65 + "@example.org"
        domain = ".".join(["b" * 60] * 4) + ".org"
        too_long = "a" * (255 - 1 - len(domain)) + "@" + domain
        for address in (too_long_local, too_long):
            for path, headers in (("/subscribe", {}), ("/api/subscribers", ADMIN)):
                answer = client.post(path, json={"email": address}, headers=headers)
                assert answer.status_code == 400 and answer.json()["field"] == "email", (address, path)
        assert client.post("/subscribe", json={"email": "a" * 64 + "@example.org"}).status_code == 202
    assert len(wait_for_mail(served.outbox, count=2, timeout=1.5)) == 1
    assert count_rows(served) == 1


def test_a_search_for_a_nul_character_is_refused_not_matching_every_row(serve, store_url):
    served = serve(store={"url": store_url})
    with served.client(headers=ADMIN) as client:
        for address in ("one@example.org", "two@example.org"):
            client.post("/api/subscribers", json={"email": address, "confirmed": True})
        answer = client.get("/api/subscribers?q=%00")
        assert answer.status_code == 400 and answer.json()["field"] == "q"
        assert client.get("/api/subscribers?q=%FF").status_code == 400
        assert client.get("/api/subscribers", params={"q": "two"}).json()["total"] == 1


def test_refusals_on_html_forms_are_in_the_pages_language(serve):
    served = serve(site={"language": "id"})
    with served.client() as client:
        token = csrf_form(client)
        answer = client.post("/subscribe", data={"email": "not-an-address", "csrf_token": token})
        assert answer.status_code == 400
        assert "Isi alamat email yang lengkap, misalnya nama@contoh.com." in answer.text  # more in test_web_forms
        assert "not a valid" not in answer.text
    assert count_rows(served) == 0


def test_the_api_refuses_what_its_description_refuses_and_takes_what_it_allows(serve):
    served = serve()
    with served.client(headers=ADMIN) as client:
        for fields in ({"tags": "AAA"}, {"tags": None}, {"confirmed": None}, {"name": None}, {"confirmed": "true"},
                       {"frequency": "Daily"}, {"tags": ["ok", "not ok"]}, {"unknown": 1}):
            answer = client.post("/api/subscribers", json={"email": "t@example.org", **fields})
            assert answer.status_code == 400 and answer.json()["field"] == next(iter(fields)), fields
        assert client.post("/api/subscribers", content=b"email=t@example.org", headers={
            "content-type": "application/x-www-form-urlencoded"}).status_code == 415
        assert count_rows(served) == 0
        for body in (b"", None):
            empty = client.post("/api/subscribers/import", content=body, headers={"content-type": "text/csv"})
            assert empty.status_code == 200 and empty.json()["imported"] == 0
        assert client.get("/api/subscribers/import").status_code == 405

        spec = client.get("/api/openapi.json").json()
    item = spec["paths"]["/api/subscribers/{id}"]
    for method in ("get", "delete"):
        [parameter] = [p for p in item[method]["parameters"] if p["in"] == "path"]
        assert parameter == {"name": "id", "in": "path", "required": True,
                             "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}
        assert {"200", "400", "401", "404", "503"} <= set(item[method]["responses"])
    add = spec["paths"]["/api/subscribers"]["post"]
    assert {"201", "200", "400", "401", "409", "413", "415", "503"} <= set(add["responses"])
    fields = spec["components"]["schemas"]["AdminSubscription"]
    assert fields["additionalProperties"] is False and fields["required"] == ["email"]
    assert fields["properties"]["tags"]["type"] == "array" and fields["properties"]["confirmed"]["type"] == "boolean"
    for path in spec["paths"].values():
        for operation in path.values():
            for status, answer in operation["responses"].items():
                assert answer["content"], (operation["operationId"], status)  # every answer has its schema


def test_tokens_are_accepted_only_as_signed(serve):
    served = serve()
    pending = _pending(served, "canon@example.org")
    url = confirm_url(served.settings, served.app.state.web.tokens, pending.id, pending.link_key)
    with served.client() as client:
        for tail in ("=", "==", "%FF", "%E2%80%8B", "%C3%A9", "%20"):
            assert client.post(url + tail).status_code == 400, tail
        # The low bits of the signature's last base64 character carry nothing: another letter, same bytes.
        last = url[-1]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        twin = alphabet[alphabet.index(last) ^ 1]
        assert client.post(url[:-1] + twin).status_code == 400
        assert served.subscriber("canon@example.org").status == "pending"
        assert client.post(url).status_code == 200
    assert served.subscriber("canon@example.org").status == "active"


def test_a_csrf_cookie_planted_from_a_sibling_subdomain_gives_no_valid_form_token(serve):
    served = serve()
    planted = {"cookie": "feedsvc_csrf=" + "p" * 43}
    # The attacker reads the form with the cookie value they plant in the victim's browser…
    page = httpx.get(served.url + "/", headers=planted)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    assert page.cookies.get("feedsvc_csrf") and page.cookies["feedsvc_csrf"] != "p" * 43  # not honoured
    # …and the victim's browser posts their form with that cookie.
    forged = httpx.post(served.url + "/subscribe", data={"email": "victim@example.org", "csrf_token": token}, headers=planted)
    assert forged.status_code == 403
    assert served.subscriber("victim@example.org") is None
    # Tokens and cookies that are not ASCII are refused like any wrong one (found by the fuzzer: a 500 before).
    with served.client() as client:
        token = csrf_form(client)
        assert client.post("/subscribe", data={"email": "x@example.org", "csrf_token": "é" * 64}).status_code == 403
        session = client.cookies["feedsvc_csrf"].partition(".")[0]
        odd = {"cookie": f"feedsvc_csrf={session}.{'é' * 64}".encode()}
        assert httpx.post(served.url + "/subscribe", data={"email": "x@example.org", "csrf_token": token}, headers=odd).status_code == 403
        # A browser with the cookie the server set gets through.
        assert client.post("/subscribe", data={"email": "me@example.org", "csrf_token": token}).status_code == 200


def test_under_https_the_csrf_cookie_is_host_only(serve):
    served = serve(web={"public_url": "https://news.example.org"})
    with served.client() as client:
        cookie = client.get("/").headers["set-cookie"]
    assert cookie.startswith("__Host-feedsvc_csrf=")
    assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie


def test_allow_lists_exactly_the_methods_that_work(built):
    pending = _pending(built, "allow@example.org")
    tokens = built.app.state.web.tokens
    unsubscribe = unsubscribe_url(built.settings, tokens, pending.id, pending.link_key)
    confirm = confirm_url(built.settings, tokens, pending.id, pending.link_key)
    expected = {
        unsubscribe: {"GET", "HEAD", "POST"},
        confirm: {"GET", "HEAD", "POST"},
        "/subscribe": {"POST"},
        "/": {"GET", "HEAD"},
        "/api/subscribers": {"GET", "HEAD", "POST"},
        "/api/subscribers/1": {"GET", "HEAD", "DELETE"},
        "/api/subscribers/import": {"POST"},
        "/rss.xml": {"GET", "HEAD"},
        "/feed.json": {"GET", "HEAD"},
    }
    with built.client(headers=ADMIN) as client:
        for url, methods in expected.items():
            for method in ("PUT", "PATCH", "OPTIONS", "POST", "DELETE"):
                if method in methods:
                    continue
                answer = client.request(method, url)
                assert answer.status_code == 405, (method, url, answer.status_code)
                assert set(answer.headers["allow"].split(", ")) == methods, (method, url, answer.headers["allow"])
    assert built.subscriber("allow@example.org").status == "pending"


def test_if_modified_since_with_two_dates_or_garbage_is_ignored(built):
    with built.client() as client:
        modified = client.get("/rss.xml").headers["last-modified"]
        assert client.get("/rss.xml", headers={"if-modified-since": modified}).status_code == 304
        later = "Fri, 31 Dec 2100 23:59:59 GMT"
        for value in (f"{modified}, {later}", f"{later}, {modified}", "Fri, 31 Dec 2100", "2100-12-31T00:00:00Z", "1e10"):
            assert client.get("/rss.xml", headers={"if-modified-since": value}).status_code == 200, value
        # The two obsolete forms RFC 9110 still asks recipients to read.
        for value in ("Friday, 31-Dec-99 23:59:59 GMT", "Fri Dec 31 23:59:59 2100"):
            expected = 200 if "99" in value else 304
            assert client.get("/rss.xml", headers={"if-modified-since": value}).status_code == expected, value


FIELD_NAMES = st.sampled_from(["email", "name", "frequency", "tags", "csrf_token", "List-Unsubscribe", "x"])
FIELD_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["a@example.org", "instant", "weekly", "go", "One-Click", "Zoe\u0308", "\u202e", "%FF", "٣"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    target=st.sampled_from(["/subscribe", "preferences", "unsubscribe", "confirm"]),
    encoding=st.sampled_from(["form", "multipart", "json", "raw"]),
    fields=st.lists(st.tuples(FIELD_NAMES, FIELD_VALUES), max_size=6),
    raw=st.binary(max_size=200),
    with_token=st.booleans(),
)
def test_the_pages_answer_any_body_without_a_server_error_and_store_only_clean_text(
    fuzzed_pages, target, encoding, fields, raw, with_token
):
    """Hypothesis as a fuzzer for the pages outside the API description, through the real server."""
    served, client, urls, csrf_token = fuzzed_pages
    if with_token:
        fields = [*fields, ("csrf_token", csrf_token)]
    url = urls.get(target, target)
    if encoding == "form":
        form = urlencode(fields, errors="surrogatepass").encode()
        answer = client.post(url, content=form, headers={"content-type": "application/x-www-form-urlencoded"})
    elif encoding == "multipart":
        answer = client.post(url, files={name: (None, value.encode("utf-8", "surrogatepass")) for name, value in fields})
    elif encoding == "json":
        content = "{" + ",".join(f'"{name}": "{value}"' for name, value in fields) + "}"
        answer = client.post(url, content=content.encode("utf-8", "surrogatepass"), headers={"content-type": "application/json"})
    else:
        answer = client.post(url, content=raw, headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code < 500, (url, encoding, fields, raw, answer.text)
    assert answer.status_code in (200, 202, 400, 403, 415), answer.status_code
    with served.engine.connect() as connection:
        rows = connection.execute(text("SELECT email, name FROM subscribers")).all()
    for address, name in rows:
        assert address.isascii() and address.isprintable() and len(address.partition("@")[0]) <= 64
        assert (unicodedata.is_normalized("NFC", name) and name.isprintable()) or name == ""


@pytest.fixture
def fuzzed_pages(serve):
    served = serve()
    pending = _pending(served, "fuzz@example.org")
    tokens = served.app.state.web.tokens
    urls = {
        purpose: url(served.settings, tokens, pending.id, pending.link_key)
        for purpose, url in (("preferences", preferences_url), ("unsubscribe", unsubscribe_url), ("confirm", confirm_url))
    }
    with served.client() as client:
        yield served, client, urls, csrf_form(client)

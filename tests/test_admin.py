# ruff: noqa: F811  (test functions take the `serve` fixture imported from test_web)
"""The dashboard under /admin/ through a real uvicorn server and httpx: sign-in, sessions, CSRF, throttling,
every page and action, both store backends."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pyotp
from conftest import add_subscribers, write_post
from sqlalchemy import text, update
from starlette.routing import Route
from test_web import ADMIN, Served, serve  # noqa: F401  (the real-server fixture)

from feedsvc import admins
from feedsvc.store import editions as edition_store
from feedsvc.store.schema import admin_sessions
from feedsvc.web.admin.common import SIGN_IN_ATTEMPTS_PER_ACCOUNT, SIGN_IN_ATTEMPTS_PER_CLIENT

PASSWORD = "correct horse battery staple"
NOW = datetime.now(UTC)


def set_password(served: Served, password: str = PASSWORD, username: str = "admin") -> None:
    admins.set_password(served.engine, username, password, datetime.now(UTC))


def form_token(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def try_sign_in(client: httpx.Client, password: str = PASSWORD, username: str = "admin") -> httpx.Response:
    token = form_token(client, "/admin/login")
    return client.post("/admin/login", data={"csrf_token": token, "username": username, "password": password})


@contextlib.contextmanager
def signed_in(served: Served) -> Iterator[httpx.Client]:
    set_password(served)
    with served.client() as client:
        answer = try_sign_in(client)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/"
        yield client


def admin_routes(served: Served) -> list[Route]:
    return [route for route in served.app.routes if isinstance(route, Route) and route.path.startswith("/admin/")]


def concrete(path: str, subscriber_id: int = 1, edition_id: int = 1) -> str:
    return path.replace("{subscriber_id:int}", str(subscriber_id)).replace("{edition_id:int}", str(edition_id))


def seed_edition(served: Served, subscriber_ids: list[int], states: list[str]) -> int:
    """An edition with one delivery per subscriber in the given states."""
    with served.engine.begin() as connection:
        edition_id = edition_store.insert_edition(
            connection, key="daily:test", frequency="daily", period_start=NOW - timedelta(days=1), period_end=NOW,
            post_ids=["a", "b"], subject="Daily digest, 5 Dec", html="<p>Hello</p>", text="Hello", created_at=NOW,
        )
        edition_store.insert_deliveries(connection, [
            {"key": f"daily:test:{sid}", "edition_id": edition_id, "subscriber_id": sid, "state": state, "attempts": 1,
             "next_attempt_at": NOW, "last_error": "550 5.1.1 mailbox unknown" if state == "failed" else "",
             "created_at": NOW, "message_id": "<m@x>" if state == "sent" else None}
            for sid, state in zip(subscriber_ids, states, strict=True)
        ])
    return edition_id


# --- the password ------------------------------------------------------------------------------------------------


def test_admin_password_reads_standard_input_and_refuses_a_short_one(make_settings, tmp_path):
    settings = make_settings()
    config = str(settings.config_path)
    short = subprocess.run([sys.executable, "-m", "feedsvc", "admin", "password", "-c", config],
                           check=False, input="short\n", capture_output=True, text=True, timeout=60)
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    done = subprocess.run([sys.executable, "-m", "feedsvc", "admin", "password", "-c", config],
                          check=False, input=f"{PASSWORD}\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "password set for 'admin'" in done.stdout
    from feedsvc.store import open_engine

    engine = open_engine(settings.store.database_url)
    try:
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT password_hash FROM admin_users WHERE username = 'admin'")).scalar_one()
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        assert admins.password_matches(engine, "admin", PASSWORD)
        assert not admins.password_matches(engine, "admin", PASSWORD + "x")
    finally:
        engine.dispose()


# --- sign-in, sessions ------------------------------------------------------------------------------------------


def test_sign_in_makes_a_new_strict_http_only_session_and_sign_out_ends_it(serve, store_url):
    served = serve(store={"url": store_url})
    set_password(served)
    with served.client() as client:
        first = client.get("/admin/subscribers")
        assert first.status_code == 303 and first.headers["location"] == "/admin/login?next=/admin/subscribers"
        # A session id planted by someone else is never adopted: signing in makes a new one.
        client.cookies.set("feedsvc_admin", "planted-by-an-attacker", path="/admin/")
        token = form_token(client, "/admin/login?next=/admin/subscribers")
        answer = client.post("/admin/login", data={"csrf_token": token, "username": "admin", "password": PASSWORD,
                                                  "next": "/admin/subscribers"})
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/subscribers"
        cookie = answer.headers["set-cookie"]
        assert "feedsvc_admin=" in cookie and "planted" not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin/" in cookie
        assert "Secure" not in cookie  # public_url is http here
        value = re.search(r"feedsvc_admin=([^;]+)", cookie).group(1)
        with served.engine.connect() as connection:
            stored = connection.execute(text("SELECT id FROM admin_sessions")).scalars().all()
        assert value not in stored and len(stored) == 1  # only its hash is kept
        client.cookies.clear()
        client.cookies.set("feedsvc_admin", value, path="/admin/")
        page = client.get("/admin/")
        assert page.status_code == 200 and "Overview" in page.text
        assert "script" not in page.headers["content-security-policy"]
        # A second sign-in gets yet another session.
        client.cookies.clear()
        again = try_sign_in(client)
        second = re.search(r"feedsvc_admin=([^;]+)", again.headers["set-cookie"]).group(1)
        assert second != value
        token = form_token(client, "/admin/")
        assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 303
        client.cookies.clear()
        client.cookies.set("feedsvc_admin", second, path="/admin/")
        assert client.get("/admin/").status_code == 303
        client.cookies.set("feedsvc_admin", value, path="/admin/")
        assert client.get("/admin/").status_code == 200  # the other browser's session lives on


def test_an_open_redirect_after_sign_in_is_refused(serve):
    served = serve()
    set_password(served)
    with served.client() as client:
        token = form_token(client, "/admin/login")
        answer = client.post("/admin/login", data={"csrf_token": token, "username": "admin", "password": PASSWORD,
                                                  "next": "//evil.example/admin/"})
        assert answer.headers["location"] == "/admin/"


def test_the_session_cookie_is_secure_when_the_public_url_is_https(serve):
    served = serve(web={"public_url": "https://news.example.org"})
    set_password(served)
    with served.client() as client:
        # The CSRF cookie is Secure too, so the form token is sent by hand here (plain http in the test).
        page = client.get("/admin/login")
        # Under https the cookie carries the __Host- prefix (bound to this host, Secure, Path=/).
        name, nonce = re.search(r"(__Host-feedsvc_csrf)=([^;]+)", page.headers["set-cookie"]).groups()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        client.cookies.set(name, nonce)
        answer = client.post("/admin/login", data={"csrf_token": token, "username": "admin", "password": PASSWORD})
        assert answer.status_code == 303
        assert "Secure" in answer.headers["set-cookie"]


def test_an_expired_or_idle_session_opens_nothing(serve, store_url):
    served = serve(store={"url": store_url})
    with signed_in(served) as client:
        assert client.get("/admin/").status_code == 200
        with served.engine.begin() as connection:
            connection.execute(update(admin_sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        assert client.get("/admin/").status_code == 303
    with signed_in(served) as client:
        with served.engine.begin() as connection:  # idle time refreshed, but past the maximum age
            connection.execute(update(admin_sessions).values(created_at=datetime.now(UTC) - admins.MAX_AGE))
        assert client.get("/admin/").status_code == 303


def test_a_new_password_ends_every_session(serve):
    served = serve()
    with signed_in(served) as client:
        set_password(served, "another long password")
        assert client.get("/admin/").status_code == 303


def test_wrong_password_and_unknown_account_get_the_same_answer_in_similar_time(serve):
    served = serve()
    set_password(served)
    with served.client() as client:
        wrong, unknown = [], []
        answers = set()
        for attempt in range(4):
            for username, times in (("admin", wrong), (f"nobody{attempt}", unknown)):
                started = time.perf_counter()
                answer = try_sign_in(client, "not the password", username)
                times.append(time.perf_counter() - started)
                answers.add((answer.status_code, re.search(r'id="problem">([^<]+)<', answer.text).group(1)))
        assert answers == {(401, "The user name, the password or the code is not right.")}
        ratio = statistics.median(unknown) / statistics.median(wrong)
        assert 0.5 < ratio < 2, (wrong, unknown)


def test_sign_in_is_throttled_per_account_and_per_client(serve):
    served = serve()
    set_password(served)
    with served.client() as client:
        for _ in range(SIGN_IN_ATTEMPTS_PER_ACCOUNT):
            assert try_sign_in(client, "guess").status_code == 401
        refused = try_sign_in(client)  # even the right password, now
        assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 15 * 60
        assert "feedsvc_admin" not in refused.headers.get("set-cookie", "")
        # Other accounts from the same client until the client's own limit.
        for attempt in range(SIGN_IN_ATTEMPTS_PER_CLIENT - SIGN_IN_ATTEMPTS_PER_ACCOUNT - 1):
            assert try_sign_in(client, "guess", f"other{attempt}").status_code == 401
        assert try_sign_in(client, "guess", "yet-another").status_code == 429


# --- every route ------------------------------------------------------------------------------------------------


def test_every_admin_route_needs_a_session_and_the_bearer_token_opens_none(serve, store_url):
    served = serve(store={"url": store_url})
    routes = admin_routes(served)
    assert len(routes) >= 10
    checked = 0
    with served.client() as client:
        for route in routes:
            if route.path == "/admin/login":
                continue
            for method in route.methods or ():
                if method == "HEAD":
                    continue
                for headers in ({}, ADMIN):
                    answer = client.request(method, concrete(route.path), headers=headers, data={"csrf_token": "x"})
                    if method == "GET":
                        assert answer.status_code == 303, (method, route.path)
                        assert answer.headers["location"].startswith("/admin/login?next=")
                    else:
                        assert answer.status_code in (401, 403), (method, route.path)
                    checked += 1
    assert checked >= 2 * 10


def test_every_form_without_the_session_csrf_token_is_refused(serve, store_url):
    served = serve(store={"url": store_url})
    [subscriber_id] = add_subscribers(served.engine, ["ani@example.org"], confirmed_at=NOW)
    edition_id = seed_edition(served, [subscriber_id], ["failed"])
    with signed_in(served) as client:
        posts = [route for route in admin_routes(served) if "POST" in (route.methods or ()) and route.path != "/admin/login"]
        assert len(posts) >= 3
        for route in posts:
            path = concrete(route.path, subscriber_id, edition_id)
            for action in ("unsubscribe", "erase", "retry_failed"):
                for forged in ({}, {"csrf_token": "forged"}):
                    answer = client.post(path, data={"action": action, "password": PASSWORD, **forged})
                    assert answer.status_code == 403, (route.path, action, forged)
        assert served.subscriber("ani@example.org").status == "active"
        assert client.get("/admin/").status_code == 200  # not even signed out


def test_no_page_shows_a_secret(serve, store_url, tmp_path):
    smtp_password = "smtp-password-nobody-may-see"
    served = serve(store={"url": store_url}, mail={"smtp_url": f"smtp://user:{smtp_password}@127.0.0.1:1"})
    [subscriber_id] = add_subscribers(served.engine, ["ani@example.org"], confirmed_at=NOW)
    edition_id = seed_edition(served, [subscriber_id], ["sent"])
    with signed_in(served) as client:
        with served.engine.connect() as connection:
            password_hash = connection.execute(text("SELECT password_hash FROM admin_users")).scalar_one()
        secrets_ = [served.settings.web.secret_key, served.settings.web.admin_token, smtp_password, password_hash,
                    "$argon2id$"]
        pages = [route for route in admin_routes(served) if "GET" in (route.methods or ())]
        for route in pages:
            answer = client.get(concrete(route.path, subscriber_id, edition_id))
            assert answer.status_code == 200, (route.path, answer.text[:300])
            for secret in secrets_:
                assert secret not in answer.text, (route.path, secret)
        settings_page = client.get("/admin/settings").text
        assert "smtp://user:********@127.0.0.1:1" in settings_page and "secret_key" in settings_page


# --- the pages --------------------------------------------------------------------------------------------------


def test_overview_counts_statuses_cadences_growth_and_edition_progress(serve, store_url):
    served = serve(store={"url": store_url})
    ids = add_subscribers(served.engine, [f"d{i}@example.org" for i in range(3)], confirmed_at=NOW - timedelta(days=2))
    ids += add_subscribers(served.engine, ["w@example.org"], frequency="weekly", confirmed_at=NOW)
    add_subscribers(served.engine, ["b@example.org"], status="bounced", confirmed_at=NOW)
    seed_edition(served, ids, ["sent", "sent", "queued", "failed"])
    with signed_in(served) as client:
        page = client.get("/admin/").text
        assert re.search(r"<th scope=\"row\">confirmed</th><td class=\"number\">4</td><td class=\"number\">80.0 %</td>", page)
        assert re.search(r"<th scope=\"row\">bounced</th><td class=\"number\">1</td>", page)
        assert re.search(r"<th scope=\"row\">daily</th><td class=\"number\">3</td><td class=\"number\">75.0 %</td>", page)
        assert "kept up to 60 seconds" in page
        assert "<svg" in page and "<polyline points=" in page and 'role="img"' in page
        today = datetime.now(UTC).date().isoformat()
        assert re.search(rf"<th scope=\"row\">{today}</th><td class=\"number\">\d+</td><td class=\"number\">0</td>", page)
        assert "Daily digest, 5 Dec" in page and "sending:" in page
        assert len(re.findall(r"<tr><th scope=\"row\">\d{4}-", client.get("/admin/?days=90").text)) == 90


def test_subscriber_search_filters_and_keyset_pages(serve, store_url):
    served = serve(store={"url": store_url})
    add_subscribers(served.engine, [f"reader{i:03}@example.org" for i in range(120)], confirmed_at=NOW)
    add_subscribers(served.engine, ["weekly@other.org"], frequency="weekly", confirmed_at=NOW)
    with signed_in(served) as client:
        for sort in ("newest", "oldest", "email"):
            seen: list[str] = []
            path = f"/admin/subscribers?q=READER&sort={sort}"
            while path:
                page = client.get(path).text
                seen += re.findall(r">(reader\d+@example\.org)</a>", page)
                found = re.search(r'href="([^"]+)" rel="next"', page)
                path = found.group(1).replace("&amp;", "&") if found else ""
            assert len(seen) == 120 and len(set(seen)) == 120, sort
            if sort == "email":
                assert seen == sorted(seen)
        weekly = client.get("/admin/subscribers?frequency=weekly").text
        assert "weekly@other.org" in weekly and "reader000" not in weekly
        exported = client.get("/admin/subscribers.csv?q=reader&sort=email")
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [row["email"] for row in rows] == [f"reader{i:03}@example.org" for i in range(120)]
        assert "1 rows; filter frequency=weekly" in (client.get("/admin/subscribers.csv?frequency=weekly") and
                                                     client.get("/admin/audit").text)
        assert client.get("/admin/subscribers?status=nonsense").status_code == 400
        assert client.get("/admin/subscribers?since=yesterday").status_code == 400


def test_subscriber_history_unsubscribe_and_erase_with_the_password(serve, store_url):
    served = serve(store={"url": store_url})
    [subscriber_id] = add_subscribers(served.engine, ["ani@example.org"], confirmed_at=NOW)
    seed_edition(served, [subscriber_id], ["failed"])
    with signed_in(served) as client:
        page = client.get(f"/admin/subscribers/{subscriber_id}").text
        assert "Daily digest, 5 Dec" in page and "550 5.1.1 mailbox unknown" in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        done = client.post(f"/admin/subscribers/{subscriber_id}", data={"csrf_token": token, "action": "preferences",
                                                                        "frequency": "weekly", "tags": "python, Go"})
        assert done.status_code == 303
        changed = served.subscriber("ani@example.org")
        assert (changed.frequency, changed.tags) == ("weekly", ("go", "python"))
        bad = client.post(f"/admin/subscribers/{subscriber_id}", data={"csrf_token": token, "action": "preferences",
                                                                       "frequency": "weekly", "tags": "no/slashes"})
        assert bad.status_code == 400 and "is not a tag" in bad.text
        client.post(f"/admin/subscribers/{subscriber_id}", data={"csrf_token": token, "action": "unsubscribe"})
        assert served.subscriber("ani@example.org").status == "unsubscribed"
        refused = client.post(f"/admin/subscribers/{subscriber_id}", data={"csrf_token": token, "action": "erase",
                                                                           "password": "not it"})
        assert refused.status_code == 403 and served.subscriber("ani@example.org") is not None
        erased = client.post(f"/admin/subscribers/{subscriber_id}", data={"csrf_token": token, "action": "erase",
                                                                          "password": PASSWORD})
        assert erased.status_code == 303 and served.subscriber("ani@example.org") is None
        assert client.get(f"/admin/subscribers/{subscriber_id}").status_code == 404
        audit = client.get("/admin/audit").text
        for action in ("sign_in", "preferences", "unsubscribe", "erase"):
            assert f"<td>{action}</td>" in audit
        assert "127.0.0.1" in audit and "ani@example.org" not in audit  # an erased address stays erased


def test_a_suppression_is_cleared_with_a_reason(serve, store_url):
    served = serve(store={"url": store_url})
    [subscriber_id] = add_subscribers(served.engine, ["b@example.org"], status="complained", confirmed_at=NOW)
    with signed_in(served) as client:
        token = form_token(client, f"/admin/subscribers/{subscriber_id}")
        path = f"/admin/subscribers/{subscriber_id}"
        assert client.post(path, data={"csrf_token": token, "action": "clear_suppression"}).status_code == 400
        client.post(path, data={"csrf_token": token, "action": "clear_suppression", "reason": "asked by phone"})
        assert served.subscriber("b@example.org").status == "unsubscribed"
        assert "was complained: asked by phone" in client.get("/admin/audit").text
        assert "cleared" in client.get(path).text


def test_edition_page_retries_failed_and_cancels_queued(serve, store_url):
    served = serve(store={"url": store_url})
    ids = add_subscribers(served.engine, [f"r{i}@example.org" for i in range(4)], confirmed_at=NOW)
    edition_id = seed_edition(served, ids, ["sent", "failed", "queued", "queued"])
    with signed_in(served) as client:
        page = client.get(f"/admin/editions/{edition_id}?show=failed").text
        assert "r1@example.org" in page and "550 5.1.1 mailbox unknown" in page and "r0@example.org" not in page
        assert "Daily digest, 5 Dec" in client.get("/admin/editions").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        path = f"/admin/editions/{edition_id}"
        cancelled = client.post(path, data={"csrf_token": token, "action": "cancel_waiting", "password": PASSWORD})
        assert cancelled.status_code == 303 and "2%20queued%20deliveries%20cancelled" in cancelled.headers["location"]
        retried = client.post(path, data={"csrf_token": token, "action": "retry_failed", "password": PASSWORD})
        assert "1%20failed%20delivery%20queued" in retried.headers["location"]  # the cancelled ones stay cancelled
        with served.engine.connect() as connection:
            states = dict(connection.execute(text(
                "SELECT s.email, d.state FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id")).all())
        assert states == {"r0@example.org": "sent", "r1@example.org": "queued", "r2@example.org": "failed",
                          "r3@example.org": "failed"}
        copy = client.get(f"{path}/copy")
        assert copy.text == "<p>Hello</p>" and "sandbox" in copy.headers["content-security-policy"]


def test_posts_page_shows_published_scheduled_drafts_and_problems(serve):
    served = serve()
    folder = served.settings.posts.dir
    write_post(folder, "old.md", title="Out already", date=NOW - timedelta(days=1))
    write_post(folder, "later.md", title="Coming soon", date=NOW + timedelta(days=2))
    write_post(folder, "wip.md", title="Half written", date=NOW - timedelta(days=1), draft=True)
    (folder / "broken.md").write_text("---\ntitle: [unclosed\n---\nbody\n", encoding="utf-8")
    with signed_in(served) as client:
        page = client.get("/admin/posts").text
    published, scheduled, drafts = (page.index(heading) for heading in ("Published (1)", "Scheduled (1)", "Drafts (1)"))
    assert page.index("Coming soon") > scheduled and page.index("Half written") > drafts
    assert page.index("Out already") > published
    assert re.search(r"<strong>error</strong> [^<]*broken\.md:\d+", page)


def test_totp_second_factor_with_one_time_codes(serve, store_url):
    served = serve(store={"url": store_url})
    with signed_in(served) as client:
        page = client.get("/admin/security").text
        assert "is <strong>off</strong>" in page
        secret = re.search(r'name="secret" value="([A-Z2-7]+)"', page).group(1)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        totp = pyotp.TOTP(secret)
        wrong = client.post("/admin/security", data={"csrf_token": token, "action": "turn_on", "secret": secret,
                                                     "code": "000000" if totp.now() != "000000" else "111111",
                                                     "password": PASSWORD})
        assert wrong.status_code == 400
        on = client.post("/admin/security", data={"csrf_token": token, "action": "turn_on", "secret": secret,
                                                  "code": totp.now(), "password": PASSWORD})
        codes = re.findall(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code></li>", on.text)
        assert on.status_code == 200 and len(codes) == 10
        assert "second_factor_on" in client.get("/admin/audit").text
    with served.client() as client:
        assert try_sign_in(client).status_code == 401  # the password alone no longer opens it
        next_code = totp.at(datetime.now(UTC) + timedelta(seconds=30))  # the one at enabling is spent
        token = form_token(client, "/admin/login")
        form = {"csrf_token": token, "username": "admin", "password": PASSWORD}
        assert client.post("/admin/login", data={**form, "code": next_code}).status_code == 303
    with served.client() as client:
        token = form_token(client, "/admin/login")
        form = {"csrf_token": token, "username": "admin", "password": PASSWORD}
        assert client.post("/admin/login", data={**form, "code": next_code}).status_code == 401  # replayed
        assert client.post("/admin/login", data={**form, "code": codes[3].upper()}).status_code == 303
    with served.client() as client:
        token = form_token(client, "/admin/login")
        form = {"csrf_token": token, "username": "admin", "password": PASSWORD}
        assert client.post("/admin/login", data={**form, "code": codes[3]}).status_code == 401  # spent
        answer = client.post("/admin/login", data={**form, "code": codes[4]})
        assert answer.status_code == 303
        assert "8 recovery codes are left" in client.get("/admin/security").text


def test_an_editions_recipients_page_by_key(serve, store_url):
    served = serve(store={"url": store_url})
    ids = add_subscribers(served.engine, [f"r{i:03}@example.org" for i in range(120)], confirmed_at=NOW)
    edition_id = seed_edition(served, ids, ["sent"] * 120)
    with signed_in(served) as client:
        seen: list[str] = []
        path = f"/admin/editions/{edition_id}"
        while path:
            page = client.get(path).text
            seen += re.findall(r">(r\d+@example\.org)</a>", page)
            found = re.search(r'href="([^"]+)" rel="next"', page)
            path = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == [f"r{i:03}@example.org" for i in range(120)]


def test_costly_counts_are_kept_up_to_a_minute_and_refreshed_before_they_expire(monkeypatch):
    from feedsvc.web.admin import common

    monkeypatch.setattr(common, "CACHE_SECONDS", 0.6)
    monkeypatch.setattr(common, "REFRESH_SECONDS", 0.2)
    cache, computed = common.MinuteCache(), []

    def compute() -> int:
        computed.append(time.monotonic())
        return len(computed)

    assert cache.get("k", compute) == 1 and cache.get("k", compute) == 1 and len(computed) == 1
    time.sleep(0.25)
    assert cache.get("k", compute) == 1  # the kept value at once; the next one computed meanwhile
    deadline = time.monotonic() + 5
    while cache.get("k", compute) != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(computed) == 2 and cache.get("k", compute) == 2
    time.sleep(0.65)
    assert cache.get("k", compute) == 3  # too old to show: computed before answering

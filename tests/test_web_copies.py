"""Web copies through a real server and httpx: post pages, edition pages reached from the mails' "view in
browser" link, the archive index; and the pages after unsubscribing."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import test_service
import test_web
from conftest import EXAMPLE_POSTS, add_subscribers, free_port, write_post
from test_service import wait_for, write_config
from test_web import confirm_link, csrf_form, wait_for_mail

from feedsvc import feeds, subscriptions
from feedsvc.digests import run_due
from feedsvc.fediverse.outbox import publish_to_followers
from feedsvc.mail.queue import drain
from feedsvc.mail.render import focusable_tables
from feedsvc.mail.transport import transport_from_settings
from feedsvc.posts import Collection
from feedsvc.store.schema import deliveries

EXAMPLES = EXAMPLE_POSTS.parent

# Fixtures of other modules: a served app in a thread (serve), a `feedsvc` process (services).
serve = test_web.serve
services = test_service.services

T0 = (datetime.now(UTC) - timedelta(days=3)).replace(hour=12, minute=0, second=0, microsecond=0)
BODY = "An intro paragraph.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\ncode line\n```\n\n## Inner heading\n\nMore words."


def _posts(settings) -> None:
    folder = settings.posts.dir
    write_post(folder, "go.md", title="Belajar Go", date=T0 + timedelta(hours=1), tags=["go"], body=BODY, slug="belajar-go")
    write_post(folder, "db.md", title="Indeks database", date=T0 + timedelta(hours=2), tags=["db"], body="About indexes.", slug="indeks-database")
    write_post(folder, "draft.md", title="Not yet", date=T0, draft=True)


def _feed_item(settings, slug: str) -> dict:
    feeds.build(settings)
    feed = json.loads((settings.feeds.output_dir / "feed.json").read_text(encoding="utf-8"))
    return next(item for item in feed["items"] if item["url"].rstrip("/").endswith(slug))


def test_a_post_page_carries_the_feeds_html_feed_links_open_graph_and_a_working_form(serve):
    served = serve(web={"archive": True})
    _posts(served.settings)
    item = _feed_item(served.settings, "belajar-go")
    with served.client() as client:
        page = client.get("/posts/belajar-go/")
        assert page.status_code == 200
        html = page.text
        # The same HTML as the feeds, not a second rendering; its tables only made reachable by keyboard.
        assert '<table tabindex="0">' in html
        assert focusable_tables(item["content_html"]).strip() in html
        assert '<link rel="canonical" href="https://blog.example.org/belajar-go/">' in html
        assert f'<link rel="alternate" type="application/rss+xml" title="Test Blog (RSS)" href="{served.url}/rss.xml">' in html
        assert '<meta property="og:title" content="Belajar Go">' in html
        assert '<meta property="og:description" content="An intro paragraph.">' in html
        assert f'action="{served.url}/subscribe"' in html
        # The form's token is this browser's: subscribing from the post page works.
        token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
        answer = client.post("/subscribe", data={"csrf_token": token, "email": "reader@example.org", "frequency": "weekly"})
        assert answer.status_code == 200
        assert subscriptions.find(served.engine, "reader@example.org").status == "pending"
        assert client.get("/posts/not-yet/").status_code == 404  # a draft
        assert client.get("/posts/nothing-here/").status_code == 404
        # The back link goes to the site, not to feedsvc's root.
        assert '<footer class="muted"><a href="https://blog.example.org/">' in html
        # Every page leads to the archive.
        assert f'<a href="{served.url}/archive/">Archive</a></footer>' in client.get("/").text


def test_a_post_page_leads_fediverse_servers_to_its_activitypub_object(serve):
    served = serve(web={"archive": True}, fediverse={"enabled": True, "handle": "blog"})
    _posts(served.settings)
    # As the service's rebuild does: the feeds, the announcements, then the fediverse output records the objects.
    scan, now = feeds.build(served.settings).scan, datetime.now(UTC)
    run_due(served.settings, served.engine, scan, now)
    publish_to_followers(served.settings, served.engine, scan, now)
    with served.client() as client:
        html = client.get("/posts/belajar-go/").text
        found = re.search(r'<link rel="alternate" type="application/activity\+json" title="Belajar Go" href="([^"]+)">', html)
        assert found, "no ActivityPub alternate on the post page"
        assert '<meta name="fediverse:creator" content="@blog@' in html
        # A server asking the post's page for ActivityPub is sent to the object, which is the post's Article.
        asked = client.get("/posts/belajar-go/", headers={"accept": "application/activity+json"}, follow_redirects=False)
        assert asked.status_code == 303 and asked.headers["location"] == found.group(1)
        article = client.get(found.group(1), headers={"accept": "application/activity+json"}).json()
        assert article["type"] == "Article" and article["name"] == "Belajar Go"
    plain = serve(web={"archive": True})
    _posts(plain.settings)
    feeds.build(plain.settings)
    with plain.client() as client:
        html = client.get("/posts/belajar-go/").text
        assert "activity+json" not in html and "fediverse:creator" not in html


def test_on_a_site_served_by_feedsvc_run_every_post_link_of_the_feeds_opens(tmp_path, services):
    """As on the bundled example: site.url is feedsvc itself, so the feeds' links must be pages of feedsvc."""
    port = free_port()
    here = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, site={"url": here}, web={"archive": True, "port": port, "public_url": here})
    write_post(tmp_path / "posts", "go.md", title="Belajar Go", date=T0, body=BODY, slug="belajar-go")
    write_post(tmp_path / "posts", "db.md", title="Indeks database", date=T0, body="About indexes.")
    service = services(config, port=port)
    service.wait_healthy()
    items = wait_for(lambda: json.loads(httpx.get(service.url("/feed.json"), timeout=2).text)["items"], 10, "the feed")
    assert len(items) == 2
    with httpx.Client(timeout=10) as client:
        for item in items:
            page = client.get(item["url"])
            assert page.status_code == 200 and focusable_tables(item["content_html"]).strip() in page.text, item["url"]
        moved = client.get(f"{here}/posts/belajar-go/")
        assert moved.status_code == 301 and moved.headers["location"] == f"{here}/belajar-go/"
        # The service's own routes are not taken by the posts' pattern.
        assert client.get(f"{here}/unknown-post/").status_code == 404
        assert client.get(f"{here}/archive/").status_code == 200


def test_a_page_is_rendered_once_per_change(serve):
    served = serve(web={"archive": True})
    _posts(served.settings)
    copies = served.app.state.web_copies
    with served.client() as client:
        first = client.get("/posts/indeks-database/").text
        before = copies.renders
        for _ in range(5):
            client.get("/posts/indeks-database/")
        assert copies.renders == before
        write_post(served.settings.posts.dir, "db.md", title="Indeks database", date=T0 + timedelta(hours=2),
                   tags=["db"], body="About indexes, edited.", slug="indeks-database")
        deadline = time.monotonic() + 5
        while "edited" not in client.get("/posts/indeks-database/").text:
            assert time.monotonic() < deadline, "the edit never showed"
            time.sleep(0.2)
        assert "About indexes." in first and copies.renders == before + 1


def send_digests(settings, engine) -> None:
    """Record the archive, publish the posts, create the editions a day later and send them to the Maildir."""
    run_due(settings, engine, Collection(settings).scan(), T0)
    _posts(settings)
    run_due(settings, engine, Collection(settings).scan(), T0 + timedelta(days=1))

    async def send() -> None:
        transport = transport_from_settings(settings)
        try:
            await drain(settings, engine, transport, worker_id="test", now=lambda: T0 + timedelta(days=1, minutes=1))
        finally:
            await transport.aclose()

    asyncio.run(send())


def view_in_browser_link(message) -> str:
    body = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"^.*: (\S+/archive/\S+)$", body, re.MULTILINE).group(1)


@pytest.mark.parametrize("language", ["en", "id"])
def test_view_in_browser_opens_the_editions_copy_and_the_archive_lists_it(serve, store_url, language):
    served = serve(web={"archive": True}, store={"url": store_url}, site={"language": language})
    engine = served.engine
    add_subscribers(engine, ["daily@example.org"], frequency="daily", confirmed_at=T0 - timedelta(days=10))
    add_subscribers(engine, ["go@example.org"], frequency="instant", tags=["go"], confirmed_at=T0 - timedelta(days=10))
    send_digests(served.settings, engine)
    mails = {m["To"].addresses[0].addr_spec: m for m in wait_for_mail(served.outbox, 2)}
    assert set(mails) == {"daily@example.org", "go@example.org"}
    links = {address: view_in_browser_link(message) for address, message in mails.items()}
    assert links["daily@example.org"] != links["go@example.org"]
    assert re.fullmatch(rf"{served.url}/archive/\d{{4}}-\d\d-\d\d-daily-[0-9a-f]{{12}}/", links["daily@example.org"])
    html_part = mails["daily@example.org"].get_body(preferencelist=("html",)).get_content()
    assert f'href="{links["daily@example.org"]}"' in html_part
    with served.client() as client:
        daily = client.get(links["daily@example.org"])
        assert daily.status_code == 200
        assert mails["daily@example.org"]["Subject"] in daily.text
        # The posts as the mail shows them (the digest's own template), whole.
        assert daily.text.count('<h2 class="post-title"') == 2 and "<pre><code>code line" in daily.text
        assert '<a href="#post-2">Belajar Go</a>' not in daily.text  # no list of contents below 3 posts
        one_post = client.get(links["go@example.org"])
        assert one_post.status_code == 200 and "Belajar Go" in one_post.text and "Indeks database" not in one_post.text
        index = client.get("/archive/")
        assert index.status_code == 200
        for link in links.values():
            assert f'href="{link}"' in index.text
        assert f'href="{served.url}/posts/belajar-go/"' in index.text
        # A name that is no sent edition: one of another day, a changed hash, no name at all.
        wrong_day = re.sub(r"/archive/\d{4}", "/archive/1999", links["daily@example.org"])
        wrong_hash = links["daily@example.org"][:-3] + ("0/" if links["daily@example.org"][-2] != "0" else "1/")
        for wrong in (wrong_day, wrong_hash, f"{served.url}/archive/x/"):
            assert client.get(wrong).status_code == 404


def test_an_edition_not_sent_yet_has_no_copy(serve):
    served = serve(web={"archive": True})
    add_subscribers(served.engine, ["daily@example.org"], frequency="daily", confirmed_at=T0 - timedelta(days=10))
    send_digests(served.settings, served.engine)
    link = view_in_browser_link(wait_for_mail(served.outbox, 1)[0])
    with served.engine.begin() as connection:
        connection.execute(deliveries.update().values(state="queued"))
    with served.client() as client:
        assert client.get(link).status_code == 404


def test_without_the_archive_the_mail_links_the_site_and_no_copies_are_served(serve):
    served = serve()
    add_subscribers(served.engine, ["daily@example.org"], frequency="daily", confirmed_at=T0 - timedelta(days=10))
    send_digests(served.settings, served.engine)
    body = wait_for_mail(served.outbox, 1)[0].get_body(preferencelist=("plain",)).get_content()
    assert "/archive/" not in body and "https://blog.example.org/\n" in body
    with served.client() as client:
        assert client.get("/archive/").status_code == 404
        assert client.get("/posts/belajar-go/").status_code == 404


# --- after unsubscribing -----------------------------------------------------------------------------------------


def _subscribed(served, client, address: str) -> subscriptions.Subscriber:
    token = csrf_form(client)
    client.post("/subscribe", data={"csrf_token": token, "email": address, "frequency": "daily", "tags": ["go"]})
    client.post(confirm_link(wait_for_mail(served.outbox, 1)[0]))
    return served.subscriber(address)


def test_the_unsubscribed_page_offers_to_subscribe_again_through_a_confirmation(serve):
    from feedsvc.tokens import preferences_url, unsubscribe_url

    served = serve(site={"language": "id"})
    with served.client() as client:
        subscriber = _subscribed(served, client, "dewi@example.org")
        link = unsubscribe_url(served.settings, served.app.state.web.tokens, subscriber.id, subscriber.link_key)
        page = client.post(link)
        assert page.status_code == 200 and served.subscriber("dewi@example.org").status == "unsubscribed"
        assert "Berlangganan lagi</button>" in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
        assert fields["email"] == "dewi@example.org" and fields["frequency"] == "daily" and fields["tags"] == "go"
        # The preferences page of the unsubscribed address: no form that saves nothing, no second unsubscribe.
        prefs = client.get(preferences_url(served.settings, served.app.state.web.tokens, subscriber.id, subscriber.link_key))
        assert prefs.status_code == 200
        assert "Simpan" not in prefs.text and link not in prefs.text and "Berlangganan lagi</button>" in prefs.text
        again = client.post(f"{served.url}/subscribe", data={**fields, "csrf_token": token})
        assert again.status_code == 200
        assert served.subscriber("dewi@example.org").status == "pending"
        assert len(wait_for_mail(served.outbox, 2)) == 2  # a new confirmation mail: double opt-in again


def test_a_bounced_address_is_offered_nothing_it_cannot_do(serve):
    from feedsvc.tokens import preferences_url

    served = serve()
    with served.client() as client:
        subscriber = _subscribed(served, client, "gone@example.org")
        with served.engine.begin() as connection:
            from feedsvc.store.schema import subscribers as table

            connection.execute(table.update().values(status="bounced"))
        page = client.get(preferences_url(served.settings, served.app.state.web.tokens, subscriber.id, subscriber.link_key))
        assert page.status_code == 200
        assert "<form" not in page.text and "Unsubscribe" not in page.text
        assert "could not be delivered" in page.text


def test_every_post_link_of_the_bundled_example_opens(tmp_path, monkeypatch):
    """The newcomer's `feedsvc run` on the example site: each link in its feed is a page (the example turns the
    archive on; its site.url is feedsvc, moved here to a free port by variables over the example's own file)."""
    port = free_port()
    here = f"http://127.0.0.1:{port}"
    site = tmp_path / "site"
    shutil.copytree(EXAMPLES, site)
    monkeypatch.setenv("FEEDSVC_SITE__URL", here)
    monkeypatch.setenv("FEEDSVC_WEB__PORT", str(port))
    monkeypatch.setenv("FEEDSVC_POSTS__ASSET_URLS", json.dumps({"../../assets/": f"{here}/assets/"}))
    log = tmp_path / "run.log"
    command = [sys.executable, "-m", "feedsvc", "run", "--config", str(site / "feedsvc.toml"), "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=site, stdout=sink, stderr=subprocess.STDOUT)
    service = test_service.Service(process, port, log)
    try:
        service.wait_healthy()
        items = wait_for(lambda: json.loads(httpx.get(f"{here}/feed.json", timeout=2).text)["items"], 10, "the feed")
        assert len(items) >= 3
        with httpx.Client(timeout=10) as client:
            images = set()
            for item in items:
                assert item["url"].startswith(f"{here}/")
                page = client.get(item["url"])
                assert page.status_code == 200, item["url"]
                images.update(re.findall(r'<img[^>]* src="([^"]+)"', page.text))
            # The example's image, linked relatively in a post, is served too.
            assert images == {f"{here}/assets/blogs/chat.png"}
            image = client.get(f"{here}/assets/blogs/chat.png")
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            # Only the assets folder: nothing beside it, whatever the path says.
            assert client.get(f"{here}/assets/%2e%2e/feedsvc.toml").status_code == 404
            assert client.get(f"{here}/assets/blogs/%2e%2e%2f%2e%2e%2ffeedsvc.toml").status_code == 404
            assert client.get(f"{here}/archive/").status_code == 200
    finally:
        service.stop()

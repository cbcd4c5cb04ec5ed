"""Feed-reader counts from the User-Agents real hosted readers send, and their tally through the feed server."""

# ruff: noqa: F811  (test functions take the `serve` fixture imported from test_web)
from __future__ import annotations

import re
import shutil
import time
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from conftest import EXAMPLE_POSTS, start_feedsvc
from sqlalchemy import text
from support import wait_for
from test_admin import signed_in
from test_web import serve  # noqa: F401  (the real-server fixture)

from feedsvc import feed_readers, feeds
from feedsvc.config import load_settings
from feedsvc.feed_readers import HostedCount, hosted_count
from feedsvc.store.engine import open_engine

# As the readers send them (their documented formats, ids and counts changed).
REAL_USER_AGENTS = {
    "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 1,234 subscribers; like FeedFetcher-Google)":
        HostedCount("Feedly", 1234, ""),
    "Mozilla/5.0 (compatible; inoreader.com; 1 subscribers)": HostedCount("Inoreader", 1, ""),
    "NewsBlur Feed Fetcher - 3 subscribers - https://www.newsblur.com/site/6143476/example-blog (Mozilla/5.0 "
    "(Macintosh; Intel Mac OS X 10_13_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0.1 Safari/605.1.15)":
        HostedCount("NewsBlur", 3, "6143476"),
    "Feedbin feed-id:1373711 - 142 subscribers": HostedCount("Feedbin", 142, "1373711"),
    "Mozilla/5.0 (compatible; theoldreader.com; 7 subscribers; feed-id=8cbd39c2e3bf8d0bd18a4ff2)":
        HostedCount("The Old Reader", 7, "8cbd39c2e3bf8d0bd18a4ff2"),
    "Mozilla/5.0 (compatible; BazQux/2.4; +https://bazqux.com/fetcher; 1 subscriber)": HostedCount("BazQux", 1, ""),
    "Mozilla/5.0 (compatible; Feedspot/1.0 (+https://www.feedspot.com/fs/fetcher); 12.345 subscribers)":
        HostedCount("Feedspot", 12345, ""),
    "SomeNewReader/3.1 (+https://reader.example; 1 234 subscribers)": HostedCount("SomeNewReader", 1234, ""),
}
DIRECT = [
    "NetNewsWire (RSS Reader; https://netnewswire.com/)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Miniflux/2.2.4 (https://miniflux.app)",
    "Tiny Tiny RSS/24.11 (https://tt-rss.org/)",
]


@pytest.mark.parametrize("user_agent", list(REAL_USER_AGENTS))
def test_hosted_readers_counts_are_read_from_their_user_agent(user_agent):
    assert hosted_count(user_agent) == REAL_USER_AGENTS[user_agent]


@pytest.mark.parametrize("user_agent", DIRECT)
def test_a_direct_client_states_no_count(user_agent):
    assert hosted_count(user_agent) is None


def test_the_feed_server_tallies_readers_and_the_dashboard_shows_them(serve, store_url, monkeypatch):
    monkeypatch.setattr(feed_readers, "FLUSH_SECONDS", 0)  # written after every request, not once a minute
    served = serve(store={"url": store_url})
    shutil.copytree(EXAMPLE_POSTS, served.settings.posts.dir, dirs_exist_ok=True)
    feeds.build(served.settings)
    with served.client() as client:
        for user_agent in [
            "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 10 subscribers; like FeedFetcher-Google)",
            "Feedly/1.0 (+http://www.feedly.com/fetcher.html; 1,012 subscribers; like FeedFetcher-Google)",  # latest
            "Feedbin feed-id:1 - 142 subscribers",
            "Feedbin feed-id:2 - 3 subscribers",  # the same feed under another URL at Feedbin: added
            *DIRECT[:2], DIRECT[0],  # two distinct direct clients
        ]:
            assert client.get("/rss.xml", headers={"user-agent": user_agent}).status_code == 200
        client.get("/atom.xml", headers={"user-agent": "NewsBlur Feed Fetcher - 1 subscriber - https://www.newsblur.com/site/9/x"})
        assert client.get("/rss.xml", headers={"user-agent": DIRECT[0], "if-none-match": "*"}).status_code == 304
    with signed_in(served) as admin:
        deadline = time.monotonic() + 10
        while True:
            page = admin.get("/admin/readers").text
            rss = page[page.index("<code>/rss.xml</code>"):]
            # a request that came in while a write was under way waits for the next one: wait for both feeds
            if ("about 1,159" in rss and "<code>/atom.xml</code>: about 1<" in page) or time.monotonic() > deadline:
                break
            with served.client() as client:  # a request more lets the tally be written again
                client.get("/rss.xml", headers={"user-agent": DIRECT[0]})
            time.sleep(0.1)
    assert re.search(r"<code>/rss.xml</code>: about 1,159<", page)  # 1,012 + 145 + 2
    assert re.search(r'<th scope="row">Feedly</th><td class="number">1,012</td>', rss)
    assert re.search(r'<th scope="row">Feedbin</th><td class="number">145</td>', rss)
    assert re.search(r'Direct fetchers \(distinct\)</th><td class="number">2</td>', rss)
    assert re.search(r"<code>/atom.xml</code>: about 1<", page)
    with signed_in(served) as admin:
        overview = admin.get("/admin/").text
    assert re.search(r'<code>/rss.xml</code></th><td class="number">1,157</td><td class="number">2</td>', overview)
    with served.engine.connect() as connection:  # addresses are not kept, only keyed hashes
        clients = connection.execute(text("SELECT client FROM feed_fetchers")).scalars().all()
    assert clients and all(re.fullmatch(r"[0-9a-f]{32}", client) for client in clients)


def test_counts_older_than_the_window_are_left_out(serve, store_url):
    served = serve(store={"url": store_url})
    tally = feed_readers.Tally(served.engine, "key", flush_seconds=3600)
    old, recent = datetime.now(UTC) - timedelta(days=8), datetime.now(UTC) - timedelta(days=6)
    tally.observe("/rss.xml", "", "Feedbin feed-id:1 - 500 subscribers", old)
    tally.observe("/rss.xml", "192.0.2.1", DIRECT[1], old)
    tally.observe("/rss.xml", "", "Feedbin feed-id:1 - 40 subscribers", recent)
    tally.flush()
    [audience] = feed_readers.audiences(served.engine, datetime.now(UTC))
    assert (audience.readers, audience.direct) == ([("Feedbin", 40)], 0)


def test_a_direct_fetcher_counts_once_a_day_whatever_the_order_of_its_requests(tmp_path):
    """The tally names each request's UTC day (the same day remembered between requests, another worked out
    anew), and hashes each client once however often it comes back."""
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    tally = feed_readers.Tally(engine, "key", flush_seconds=3600)
    midnight = datetime.combine(datetime.now(UTC).date() - timedelta(days=2), datetime.min.time(), UTC)
    try:
        for moment in (midnight - timedelta(seconds=1), midnight, midnight + timedelta(hours=23, minutes=59)):
            tally.observe("/rss.xml", "192.0.2.1", DIRECT[1], moment)
        # Back to the first day, given in local time: 03:00 the next day in Jakarta.
        evening = (midnight - timedelta(hours=4)).astimezone(timezone(timedelta(hours=7)))
        tally.observe("/atom.xml", "192.0.2.1", DIRECT[1], evening)
        tally.flush()
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT day, feed FROM feed_fetchers ORDER BY day, feed")).all()
    finally:
        engine.dispose()
    first, second = (midnight - timedelta(days=1)).date().isoformat(), midnight.date().isoformat()
    assert [tuple(row) for row in rows] == [(first, "/atom.xml"), (first, "/rss.xml"), (second, "/rss.xml")]


def test_reads_handed_to_the_tally_in_a_batch_count_as_read_one_by_one(tmp_path, monkeypatch):
    """A batch of feed reads (`FeedReads`) goes to the tally in the order of each key's last read, each with its own
    time: the latest count a hosted reader stated wins, and a read before midnight is the day before's."""
    from feedsvc.web.admin import readers

    clock = [0.0]
    monkeypatch.setattr(readers, "time", type("Clock", (), {"time": staticmethod(lambda: clock[0])}))
    engine = open_engine(f"sqlite:///{tmp_path / 'store.db'}")
    reads = readers.FeedReads(feed_readers.Tally(engine, "key", flush_seconds=3600))
    midnight = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), datetime.min.time(), UTC).timestamp()
    few, many = (f"Feedbin feed-id:1 - {number} subscribers".encode() for number in (40, 500))
    try:
        for moment, client, user_agent in [
            (midnight - 1.0, "", many),  # handed over at once, the first read: the batch starts after it
            (midnight - 0.6, "", few),
            (midnight - 0.5, "192.0.2.1", DIRECT[1].encode()),  # the day before
            (midnight - 0.4, "", many),
            (midnight - 0.2, "", few),  # Feedbin's latest: 40, although its key came first in the batch
            (midnight + 0.3, "192.0.2.1", DIRECT[1].encode()),  # the same client, the next day
        ]:
            clock[0] = moment
            reads.read("/rss.xml", client, user_agent)
        reads.hand_over()
        reads.tally.flush()
        with engine.connect() as connection:
            days = connection.execute(text("SELECT day FROM feed_fetchers ORDER BY day")).scalars().all()
            stated = connection.execute(text("SELECT subscribers FROM feed_reader_counts")).scalars().all()
    finally:
        engine.dispose()
    day_before = datetime.fromtimestamp(midnight - 1, UTC).date().isoformat()
    assert days == [day_before, datetime.fromtimestamp(midnight, UTC).date().isoformat()]
    assert stated == [40]


def test_reads_tallied_before_the_service_stops_are_written_as_it_stops(tmp_path, monkeypatch):
    # The tally is written once a minute: a service stopped sooner (an upgrade, a restart) writes what it holds as
    # it stops, instead of losing up to a minute of readers.
    shutil.copytree(EXAMPLE_POSTS, tmp_path / "posts")
    config = {"site": {"title": "Tallied Blog", "url": "https://blog.example.org"},
              "web": {"secret_key": "tally-secret-of-at-least-thirty-two-bytes"}}
    process, port, log = start_feedsvc(tmp_path, "run", config)
    url = f"http://127.0.0.1:{port}"

    def feed_served() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(f"{url}/rss.xml", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(feed_served, 30, "the feeds served", interval=0.1)
        for user_agent in DIRECT[:2]:
            assert httpx.get(f"{url}/rss.xml", headers={"user-agent": user_agent}).status_code == 200
    finally:
        process.terminate()
        assert process.wait(15) == 0, log.read_text()
    monkeypatch.chdir(tmp_path)  # where the service ran: its store is there
    engine = open_engine(load_settings(tmp_path / "feedsvc.toml").store.database_url)
    try:
        audience = {a.feed: a for a in feed_readers.audiences(engine, datetime.now(UTC))}.get("/rss.xml")
    finally:
        engine.dispose()
    # The poll above (httpx's User-Agent) and the two readers: three distinct clients from one address.
    assert audience is not None and audience.direct == 3, log.read_text()

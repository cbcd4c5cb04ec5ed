"""The blog as an ActivityPub actor: discovery, signed inboxes, delivery through the queue, and snac2 end to end."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import free_port, write_post
from fediverse_server import InboxServer, Snac, snac_binary, wait_until
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import MappingKeyResolver
from sqlalchemy import create_engine

from feedsvc import digests
from feedsvc.config import Settings
from feedsvc.fediverse import keys
from feedsvc.fediverse.delivery import deliver
from feedsvc.fediverse.outbox import publish_to_followers
from feedsvc.fediverse.signatures import sign_cavage
from feedsvc.posts import Collection
from feedsvc.store import fediverse as store
from feedsvc.store.engine import open_engine
from feedsvc.web import create_app

FEDIVERSE = {"enabled": True, "allow_private_addresses": True, "handle": "notes", "summary": "Notes on backends"}


@dataclass
class Blog:
    url: str
    settings: Settings
    app: object

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    @property
    def engine(self):
        return self.app.state.web.engine

    @property
    def actor(self) -> str:
        return f"{self.url}/fediverse/actor"

    def followers(self) -> list[str]:
        with self.engine.connect() as connection:
            return [row.actor for row in store.followers(connection)]

    def deliver(self) -> None:
        asyncio.run(deliver(self.settings, self.engine, keys.load_or_create(self.settings.store.dir), worker_id="test"))


@pytest.fixture
def blog(make_settings) -> Iterator[Callable[..., Blog]]:
    """The web app on a real uvicorn server in a thread, with the fediverse on: blog(fediverse={...})."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**sections) -> Blog:
        port = free_port()
        settings = make_settings(
            web={"port": port, "public_url": f"http://127.0.0.1:{port}"},
            fediverse={**FEDIVERSE, **sections.pop("fediverse", {})}, **sections,
        )
        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running.append((server, thread))
        wait_until(lambda: server.started, 10, 0.01, "uvicorn to start")
        return Blog(f"http://127.0.0.1:{port}", settings, app)

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(10)


# --- discovery -------------------------------------------------------------------------------------------------


def test_webfinger_nodeinfo_and_actor(blog) -> None:
    site = blog()
    host = site.url.removeprefix("http://")
    with site.client() as client:
        finger = client.get("/.well-known/webfinger", params={"resource": f"acct:notes@{host}"})
        assert finger.status_code == 200 and finger.headers["content-type"].startswith("application/jrd+json")
        self_link = next(link for link in finger.json()["links"] if link["rel"] == "self")
        assert self_link == {"rel": "self", "type": "application/activity+json", "href": site.actor}
        assert client.get("/.well-known/webfinger", params={"resource": f"acct:someone@{host}"}).status_code == 404
        assert client.get("/.well-known/webfinger").status_code == 400

        links = client.get("/.well-known/nodeinfo").json()["links"]
        nodeinfo = client.get(links[0]["href"].removeprefix(site.url)).json()
        assert nodeinfo["version"] == "2.1" and nodeinfo["protocols"] == ["activitypub"]

        actor = client.get("/fediverse/actor", headers={"accept": "application/activity+json"})
        assert actor.headers["content-type"].startswith("application/activity+json")
        document = actor.json()
    assert document["id"] == site.actor and document["type"] == "Person"
    assert document["preferredUsername"] == "notes" and document["summary"] == "Notes on backends"
    assert document["name"] == "Test Blog" and document["url"] == "https://blog.example.org"
    assert document["endpoints"]["sharedInbox"] == f"{site.url}/fediverse/inbox"
    assert document["discoverable"] is True and document["indexable"] is True
    assert document["attributionDomains"] == ["blog.example.org"]
    assert document["publicKey"]["id"] == f"{site.actor}#main-key"
    assert document["publicKey"]["publicKeyPem"].startswith("-----BEGIN PUBLIC KEY-----")
    key_file = site.settings.store.dir / keys.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # The same key after a restart: followers keep verifying it.
    assert keys.load_or_create(site.settings.store.dir).public_pem == document["publicKey"]["publicKeyPem"]


def test_fediverse_off_by_default_serves_nothing(blog, make_settings) -> None:
    site = blog(fediverse={"enabled": False})
    with site.client() as client:
        assert client.get("/.well-known/webfinger", params={"resource": "acct:notes@x"}).status_code == 404
        assert client.get("/fediverse/actor").status_code == 404
    assert not (site.settings.store.dir / keys.KEY_FILE).exists()


# --- the inbox: signatures and bad input ----------------------------------------------------------------------


def follow_activity(peers: InboxServer, name: str, blog_actor: str) -> dict:
    actor = peers.actor_url(name)
    return {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{actor}#follow-1", "type": "Follow",
            "actor": actor, "object": blog_actor}


def undo_follow(peers: InboxServer, name: str, blog_actor: str) -> dict:
    actor = peers.actor_url(name)
    return {"@context": "https://www.w3.org/ns/activitystreams", "id": f"{actor}#undo-1", "type": "Undo",
            "actor": actor, "object": follow_activity(peers, name, blog_actor)}


def rfc9421_request(url: str, body: bytes, private_key, key_id: str) -> httpx.Request:
    """A POST signed the way Mastodon signs with RFC 9421: one signature, created, @method, @target-uri and
    content-digest, rsa-v1_5-sha256 — made by the http-message-signatures library, not by feedsvc."""
    request = httpx.Request("POST", url, content=body, headers={"content-type": "application/activity+json"})
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.RSA_V1_5_SHA256,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: private_key}),
    )
    signer.sign(request, key_id=key_id, label="sig1", include_alg=False,
                covered_component_ids=("@method", "@target-uri"), body=body)
    return request


def cavage_request(url: str, body: bytes, private_key, key_id: str) -> httpx.Request:
    request = httpx.Request("POST", url, content=body, headers={"content-type": "application/activity+json"})
    sign_cavage(request, private_key, key_id)
    return request


def test_rfc9421_and_cavage_signatures_accepted_altered_and_missing_refused(blog) -> None:
    site = blog()
    inbox = f"{site.url}/fediverse/actor/inbox"
    with InboxServer() as peers, httpx.Client(timeout=10) as client:
        peers.blog_key_pem = keys.load_or_create(site.settings.store.dir).public_pem
        key_id = f"{peers.actor_url('alice')}#main-key"
        body = json.dumps(follow_activity(peers, "alice", site.actor)).encode()

        signed = rfc9421_request(inbox, body, peers.private_key, key_id)
        assert "signature-input" in signed.headers and "content-digest" in signed.headers
        altered = httpx.Request("POST", inbox, content=body.replace(b"follow-1", b"follow-2"), headers=signed.headers)
        answer = client.send(altered)
        assert answer.status_code == 401, answer.text
        assert site.followers() == []
        answer = client.send(signed)
        assert answer.status_code == 202, answer.text
        assert site.followers() == [peers.actor_url("alice")]
        metrics = client.get(f"{site.url}/metrics").text
        assert "feedsvc_fediverse_followers 1.0" in metrics

        # The Accept goes to alice's inbox, signed by the blog (the inbox server verifies it).
        site.deliver()
        assert peers.received and peers.received[0][0] == "alice" and not peers.refused

        unsigned = client.post(inbox, content=body, headers={"content-type": "application/activity+json"})
        assert unsigned.status_code == 401 and "not signed" in unsigned.json()["error"]

        undo = json.dumps(undo_follow(peers, "alice", site.actor)).encode()
        stale_date = cavage_request(inbox, undo, peers.private_key, key_id)
        stale_date.headers["date"] = "Mon, 01 Jan 2024 00:00:00 GMT"
        assert client.send(stale_date).status_code == 401
        assert client.send(cavage_request(inbox, undo, peers.private_key, key_id)).status_code == 202
        assert site.followers() == []


def test_key_of_another_actor_and_bad_input_refused(blog) -> None:
    site = blog(fediverse={"max_body_bytes": 2048})
    inbox = f"{site.url}/fediverse/inbox"
    with InboxServer() as peers, httpx.Client(timeout=10) as client:
        body = json.dumps(follow_activity(peers, "alice", site.actor)).encode()
        # Signed with bob's key (all test actors share the key pair, each under its own key id and owner).
        as_bob = client.send(cavage_request(inbox, body, peers.private_key, f"{peers.actor_url('bob')}#main-key"))
        assert as_bob.status_code == 401 and "not to the actor" in as_bob.json()["error"]

        malformed = client.post(inbox, content=b"{not json", headers={"content-type": "application/activity+json"})
        assert malformed.status_code == 400 and "not JSON" in malformed.json()["error"]
        huge = client.post(inbox, content=b"x" * 4096, headers={"content-type": "application/activity+json"})
        assert huge.status_code == 413
    assert site.followers() == []


def test_private_addresses_refused_unless_allowed(blog) -> None:
    site = blog(fediverse={"allow_private_addresses": False})
    with InboxServer() as peers, httpx.Client(timeout=10) as client:
        body = json.dumps(follow_activity(peers, "alice", site.actor)).encode()
        answer = client.send(cavage_request(f"{site.url}/fediverse/inbox", body, peers.private_key,
                                            f"{peers.actor_url('alice')}#main-key"))
    assert answer.status_code == 400 and "private or loopback" in answer.json()["error"]
    assert site.followers() == []


def test_blocked_server_and_flood_refused(blog) -> None:
    site = blog(fediverse={"inbox_rate_limit": 3})
    with site.engine.begin() as connection:
        store.block(connection, "127.0.0.1", datetime.now(UTC))
    with InboxServer() as peers, httpx.Client(timeout=10) as client:
        body = json.dumps(follow_activity(peers, "alice", site.actor)).encode()
        answers = [
            client.send(cavage_request(f"{site.url}/fediverse/inbox", body, peers.private_key,
                                       f"{peers.actor_url('alice')}#main-key")).status_code
            for _ in range(5)
        ]
    assert answers == [403, 403, 403, 429, 429]
    assert site.followers() == []


# --- delivery --------------------------------------------------------------------------------------------------


def add_followers(engine, peers: InboxServer, names: list[str]) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for name in names:
            store.add_follower(connection, actor=peers.actor_url(name), inbox=peers.inbox_url(name),
                               delivery_inbox=peers.inbox_url(name), host=name, follow_id="", now=now)


def test_new_post_created_edited_deleted_and_gone_follower_dropped(make_settings, store_url: str) -> None:
    settings = make_settings(fediverse=FEDIVERSE, store={"url": store_url})
    engine = open_engine(settings.store.database_url)
    posts = settings.posts.dir
    write_post(posts, "archive.md", title="Old post", date=datetime(2025, 1, 1, tzinfo=UTC))
    collection = Collection(settings)

    def rebuild():
        now = datetime.now(UTC)
        scan = collection.scan()
        digests.run_due(settings, engine, scan, now)
        return publish_to_followers(settings, engine, scan, now)

    with InboxServer(blog_key_pem=keys.load_or_create(settings.store.dir).public_pem) as peers:
        add_followers(engine, peers, ["alice", "bob", "gone"])
        peers.gone.add("gone")
        assert rebuild().deliveries == 0  # the archive: recorded, never pushed
        write_post(posts, "new.md", title="New post", date=datetime.now(UTC) - timedelta(minutes=1), tags=["Go"])
        write_post(posts, "draft.md", title="Draft", date=datetime.now(UTC) - timedelta(minutes=1), draft=True)
        write_post(posts, "later.md", title="Later", date=datetime.now(UTC) + timedelta(days=1))
        assert rebuild().created == 1
        assert rebuild().deliveries == 0  # nothing changed: nothing sent again
        asyncio.run(deliver(settings, engine, keys.load_or_create(settings.store.dir), worker_id="w"))
        assert sorted(peers.counts()) == ["alice", "bob"] and not peers.refused
        with engine.connect() as connection:
            assert [f.actor for f in store.followers(connection)] == [peers.actor_url("alice"), peers.actor_url("bob")]

        write_post(posts, "new.md", title="New post", date=datetime.now(UTC) - timedelta(minutes=1), tags=["Go"], body="Edited.")
        assert rebuild().updated == 1
        (posts / "new.md").unlink()
        assert rebuild().deleted == 1
        peers.slow_types["Update"] = 0.5  # the Delete must still arrive after it, never overtake it
        asyncio.run(deliver(settings, engine, keys.load_or_create(settings.store.dir), worker_id="w"))
        kinds = [activity_id.rsplit("#", 1)[1].split("-")[0] for name, activity_id in peers.received if name == "alice"]
        assert kinds == ["create", "update", "delete"]
    engine.dispose()


def test_kill_9_during_delivery_to_many_inboxes(make_settings, tmp_path: Path) -> None:
    """Every inbox gets the post; only the requests in flight at the kill may arrive twice."""
    concurrency = 8
    settings = make_settings(fediverse={**FEDIVERSE, "concurrency": concurrency, "max_requests_per_host": concurrency,
                                        "lease_seconds": 1.0})
    engine = open_engine(settings.store.database_url)
    names = [f"reader{n}" for n in range(200)]
    with InboxServer(blog_key_pem=keys.load_or_create(settings.store.dir).public_pem, delay=0.02) as peers:
        add_followers(engine, peers, names)
        with engine.begin() as connection:
            body = json.dumps({"id": "https://blog.example.org/fediverse/posts/p#create", "type": "Create"})
            assert store.queue_activity(connection, "https://blog.example.org/fediverse/posts/p#create", body,
                                        datetime.now(UTC)) == len(names)
        command = [sys.executable, "-m", "feedsvc", "fediverse", "deliver", "--config", str(settings.config_path)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        wait_until(lambda: sum(peers.counts().values()) >= 60, 60, 0.005, "deliveries to start")
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = sum(peers.counts().values())
        assert before < len(names), "the kill came too late to test anything"
        time.sleep(1.2)  # the killed process's leases run out
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    counts = peers.counts()
    assert set(counts) == set(names), f"{len(set(names) - set(counts))} inboxes never got the post"
    twice = [name for name, number in counts.items() if number > 1]
    assert len(twice) <= concurrency and all(counts[name] == 2 for name in twice), twice
    assert not peers.refused
    with engine.connect() as connection:
        assert store.count_by_state(connection)["sent"] == len(names)
    engine.dispose()


# --- snac2, a real fediverse server -------------------------------------------------------------------------------


@pytest.fixture
def snac(tmp_path: Path) -> Iterator[Snac]:
    binary = snac_binary()
    if binary is None:
        pytest.skip("snac2 not available: run .ci/snac2-fetch (downloads the next Debian release's package into "
                    ".cache/snac2) or set FEEDSVC_TEST_SNAC to a snac binary")
    server = Snac(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_snac2_follows_and_receives_posts(snac: Snac, make_settings, tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(
        web={"port": port, "public_url": f"http://127.0.0.1:{port}"},
        scheduler={"drain_interval": 0.5},
        fediverse={**FEDIVERSE, "handle": "blog"},
    )
    posts = settings.posts.dir
    write_post(posts, "old.md", title="Archive post", date=datetime(2025, 1, 1, tzinfo=UTC))
    log = (tmp_path / "feedsvc.log").open("wb")
    service = subprocess.Popen([sys.executable, "-m", "feedsvc", "run", "--config", str(settings.config_path)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    blog_actor = f"http://127.0.0.1:{port}/fediverse/actor"
    engine = create_engine(settings.store.database_url)

    def followers() -> list[str]:
        with engine.connect() as connection:
            return [row.actor for row in store.followers(connection)]

    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 30, message="feedsvc to start")
        # WebFinger first, as a user typing @blog@host would; then the follow.
        assert blog_actor in snac.command("webfinger_s", f"@blog@127.0.0.1:{port}")
        snac.command("follow", blog_actor)
        wait_until(lambda: followers() == [snac.actor], 30, message="the follow to be stored")
        wait_until(lambda: "confirmed follow" in snac.log(), 60, message="snac to take the Accept")

        write_post(posts, "hello.md", title="Hello fediverse", date=datetime.now(UTC) - timedelta(seconds=5),
                   tags=["Backend"], body="First words for **snac**.")
        article = wait_until(lambda: _snac_article(snac, "Hello fediverse"), 60, message="the Article in snac")
        assert article["type"] == "Article" and article["attributedTo"] == blog_actor
        assert "First words" in article["content"] and article["url"].startswith("https://blog.example.org/")
        assert any(tag.get("name") == "#backend" for tag in article["tag"])
        assert _snac_article(snac, "Archive post") is None

        write_post(posts, "hello.md", title="Hello fediverse", date=datetime.now(UTC) - timedelta(seconds=5),
                   tags=["Backend"], body="Edited words.")
        wait_until(lambda: "Edited words" in (snac.object_with(article["id"]) or {}).get("content", ""), 60,
                   message="the Update in snac")

        (posts / "hello.md").unlink()
        wait_until(lambda: snac.object_with(article["id"]) is None, 60, message="the Delete in snac")

        # A forged Follow in alice's name, signed with a key that is not hers, is refused.
        forged = json.dumps({"id": f"{snac.actor}#forged", "type": "Follow", "actor": snac.actor,
                             "object": blog_actor}).encode()
        from cryptography.hazmat.primitives.asymmetric import rsa

        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        request = cavage_request(f"http://127.0.0.1:{port}/fediverse/inbox", forged, other_key, f"{snac.actor}#main-key")
        with httpx.Client(timeout=10) as client:
            assert client.send(request).status_code == 401

        snac.command("unfollow", blog_actor)
        wait_until(lambda: followers() == [], 60, message="the unfollow")
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(30)
        engine.dispose()
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def _snac_article(snac: Snac, title: str) -> dict | None:
    return next((item for item in snac.objects() if item.get("name") == title and item.get("type") == "Article"), None)


def test_deleted_account_removed_even_though_its_key_is_gone(blog) -> None:
    site = blog(fediverse={"key_cache_seconds": 0})
    inbox = f"{site.url}/fediverse/inbox"
    with InboxServer() as peers, httpx.Client(timeout=10) as client:
        key_id = f"{peers.actor_url('carol')}#main-key"
        follow = json.dumps(follow_activity(peers, "carol", site.actor)).encode()
        assert client.send(cavage_request(inbox, follow, peers.private_key, key_id)).status_code == 202
        assert site.followers() == [peers.actor_url("carol")]
        # Another account's Delete of carol changes nothing.
        not_hers = json.dumps({"id": "x#delete", "type": "Delete", "actor": peers.actor_url("dave"),
                               "object": peers.actor_url("carol")}).encode()
        assert client.send(cavage_request(inbox, not_hers, peers.private_key, f"{peers.actor_url('dave')}#main-key")).status_code == 202
        assert site.followers() == [peers.actor_url("carol")]
        peers.gone.add("carol")
        delete = json.dumps({"id": f"{peers.actor_url('carol')}#delete", "type": "Delete",
                             "actor": peers.actor_url("carol"), "object": peers.actor_url("carol")}).encode()
        answer = client.send(cavage_request(inbox, delete, peers.private_key, key_id))
    assert answer.status_code == 202, answer.text
    assert site.followers() == []


def test_post_objects_outbox_and_tombstones(blog) -> None:
    site = blog(fediverse={"outbox_page_size": 2})
    settings, posts = site.settings, site.settings.posts.dir
    collection = Collection(settings)

    def rebuild():
        now = datetime.now(UTC)
        scan = collection.scan()
        digests.run_due(settings, site.engine, scan, now)
        return publish_to_followers(settings, site.engine, scan, now)

    rebuild()  # the first run: nothing published yet
    recent = datetime.now(UTC) - timedelta(minutes=1)
    write_post(posts, "article.md", title="An article", date=recent, tags=["Belajar Go"],
               body="Read [the guide](../guide/) and more.\n\n" + "Long text. " * 80)
    (posts / "short.txt").write_text("Just a short thought.\n", encoding="utf-8")
    write_post(posts, "third.md", title="Third", date=recent - timedelta(minutes=1))
    assert rebuild().created == 3
    with site.client() as client:
        outbox = client.get("/fediverse/actor/outbox").json()
        assert outbox["totalItems"] == 3 and outbox["first"].endswith("?page=1")
        page = client.get("/fediverse/actor/outbox", params={"page": 1}).json()
        assert len(page["orderedItems"]) == 2 and page["next"].endswith("?page=2")
        objects_by_type = {}
        for number in (1, 2):
            for item in client.get("/fediverse/actor/outbox", params={"page": number}).json()["orderedItems"]:
                assert item["type"] == "Create"
                objects_by_type.setdefault(item["object"]["type"], []).append(item["object"])
        assert sorted(objects_by_type) == ["Article", "Note"] and len(objects_by_type["Note"]) == 1
        note = objects_by_type["Note"][0]
        assert "short thought" in note["content"] and "name" not in note
        article = next(item for item in objects_by_type["Article"] if item["name"] == "An article")
        assert article["url"] == "https://blog.example.org/article/"
        assert 'href="https://blog.example.org/guide/"' in article["content"]  # absolute URLs
        assert article["tag"][0]["name"] == "#belajargo" and article["preview"]["type"] == "Note"
        assert article["attributedTo"] == site.actor and "https://www.w3.org/ns/activitystreams#Public" in article["to"]
        served = client.get(article["id"].removeprefix(site.url), headers={"accept": "application/activity+json"})
        assert served.status_code == 200 and served.json()["name"] == "An article"

        (posts / "article.md").unlink()
        assert rebuild().deleted == 1
        gone = client.get(article["id"].removeprefix(site.url))
        assert gone.status_code == 410 and gone.json()["type"] == "Tombstone"
        assert client.get("/fediverse/actor/outbox").json()["totalItems"] == 2
        assert client.get("/fediverse/posts/no-such-post").status_code == 404
        assert client.get("/fediverse/actor/outbox", params={"page": "x"}).status_code == 400


def test_cli_followers_list_count_remove_block(make_settings) -> None:
    settings = make_settings(fediverse=FEDIVERSE)
    engine = open_engine(settings.store.database_url)
    with InboxServer() as peers:
        add_followers(engine, peers, ["alice", "bob"])
    with engine.begin() as connection:  # a second account on bob's server
        store.add_follower(connection, actor="https://bob.example/users/eve", inbox="https://bob.example/users/eve/inbox",
                           delivery_inbox="https://bob.example/inbox", host="bob.example", follow_id="", now=datetime.now(UTC))
    engine.dispose()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "feedsvc", "fediverse", "followers", *args, "--config",
                               str(settings.config_path)], capture_output=True, text=True, timeout=60, check=False)

    listed = cli()
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3 and "3 followers" in listed.stderr
    assert cli("count").stdout.strip() == "3"
    alice = peers.actor_url("alice")
    assert cli("remove", alice).returncode == 0
    missing = cli("remove", alice)
    assert missing.returncode == 1 and "does not follow" in missing.stderr
    blocked = cli("block", "bob.example")
    assert blocked.returncode == 0 and "1 followers removed" in blocked.stdout
    assert cli("count").stdout.strip() == "1"


def test_delivery_to_a_private_address_refused_unless_allowed(make_settings) -> None:
    settings = make_settings(fediverse={**FEDIVERSE, "allow_private_addresses": False})
    engine = open_engine(settings.store.database_url)
    with InboxServer(blog_key_pem=keys.load_or_create(settings.store.dir).public_pem) as peers:
        add_followers(engine, peers, ["alice"])
        with engine.begin() as connection:
            store.queue_activity(connection, "https://blog.example.org/a#create", json.dumps({"id": "a"}), datetime.now(UTC))
        report = asyncio.run(deliver(settings, engine, keys.load_or_create(settings.store.dir), worker_id="w"))
        assert peers.received == []
    assert report.failed == 1 and report.sent == 0
    with engine.connect() as connection:
        assert store.count_by_state(connection)["failed"] == 1
    engine.dispose()


def test_cron_digest_send_then_fediverse_deliver(make_settings) -> None:
    """Without a running service: `digest send` queues the new post for followers, `fediverse deliver` POSTs it."""
    settings = make_settings(fediverse=FEDIVERSE)
    engine = open_engine(settings.store.database_url)
    write_post(settings.posts.dir, "old.md", title="Old", date=datetime(2025, 1, 1, tzinfo=UTC))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "feedsvc", *args, "--config", str(settings.config_path)],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    with InboxServer(blog_key_pem=keys.load_or_create(settings.store.dir).public_pem) as peers:
        add_followers(engine, peers, ["alice"])
        cli("digest", "send")  # the first run: the archive, not sent
        write_post(settings.posts.dir, "new.md", title="Fresh", date=datetime.now(UTC) - timedelta(minutes=1))
        cli("digest", "send")
        assert "1 sent" in cli("fediverse", "deliver").stdout
        assert [activity_id.rsplit("#", 1)[1].split("-")[0] for _, activity_id in peers.received] == ["create"]
        assert "0 sent" in cli("fediverse", "deliver").stdout
    engine.dispose()

"""Dashboard benchmark: every admin page's latency on a large store while a digest is being sent.

    .venv/bin/python benchmarks/dashboard.py [--subscribers 100000] [--deliveries 1000000] [--editions 1000]
                                             [--requests 40] [--postgres URL] [--no-sqlite]

Seeds a store (SQLite in a temporary folder, or a fresh schema of the PostgreSQL server given by --postgres or
FEEDSVC_TEST_POSTGRES_URL) with that many subscribers (5 statuses, 3 cadences, dates over two years), editions
and deliveries (mostly sent, some failed and bounced, with the server's answers), bounce events and audit
entries; starts `feedsvc serve` on it as in production; signs in; and while a writer marks the newest edition's
deliveries sent (200 every 100 ms, as a worker does) requests each page --requests times in turn, printing the
median and p95 per page. The overview's counts are cached for a minute: its first (cold) request is shown apart.
Target: p95 <= 150 ms for every page.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _paths
import httpx
from sqlalchemy import create_engine, func, insert, select, text, update

from feedsvc import admins
from feedsvc.store.engine import open_engine
from feedsvc.store.schema import admin_audit, deliveries, editions, mail_events, subscribers
from tests.support import free_port

NOW = datetime.now(UTC).replace(microsecond=0)
PASSWORD = "benchmark password of some length"
CHUNK = 10_000
STATUSES = ["active"] * 80 + ["pending"] * 5 + ["unsubscribed"] * 10 + ["bounced"] * 4 + ["complained"]


def _tags(number: int) -> list[str]:
    """Topics: one in ten follows python (one in fifty also go), one in a thousand a rare one, the rest all."""
    if number % 1000 == 7:
        return ["rare"]
    if number % 50 == 1:
        return ["go", "python"]
    return ["python"] if number % 10 == 0 else []


def seed(url: str, count: int, edition_count: int, delivery_count: int) -> None:
    engine = open_engine(url)
    rng = random.Random(18)
    started = time.monotonic()
    with engine.begin() as connection:
        rows = []
        for number in range(1, count + 1):
            status = rng.choice(STATUSES)
            created = NOW - timedelta(seconds=rng.randrange(2 * 365 * 86400))
            rows.append({
                "id": number, "email": f"reader{number}@example{number % 97}.org",
                "email_key": f"reader{number}@example{number % 97}.org", "name": "", "status": status,
                "frequency": rng.choice(("instant", "daily", "weekly")), "tags": _tags(number), "created_at": created,
                "confirmed_at": None if status == "pending" else created + timedelta(minutes=5),
                "unsubscribed_at": created + timedelta(days=30) if status in ("unsubscribed", "bounced", "complained") else None,
                "status_reason": "", "consent_ip": "", "consent_user_agent": "", "consent_source": "benchmark",
                "link_key": uuid.uuid4().hex[:22], "unkeyed_links": False,
            })
            if len(rows) == CHUNK:
                connection.execute(insert(subscribers), rows)
                rows = []
        if rows:
            connection.execute(insert(subscribers), rows)
        connection.execute(insert(editions), [
            {"id": number, "key": f"daily:{number}", "frequency": "daily",
             "period_start": NOW - timedelta(days=edition_count - number + 1),
             "period_end": NOW - timedelta(days=edition_count - number), "post_ids": ["a", "b", "c"],
             "subject": f"Daily digest {number}", "html": "<p>posts</p>" * 200, "text": "posts",
             "created_at": NOW - timedelta(days=edition_count - number)}
            for number in range(1, edition_count + 1)
        ])
        per_edition = delivery_count // edition_count
        rows = []
        delivery_id = 0
        for edition in range(1, edition_count + 1):
            sending = edition == edition_count  # the newest edition is being sent now
            first = rng.randrange(count)
            for offset in range(per_edition):
                delivery_id += 1
                subscriber = (first + offset * 7) % count + 1
                state = "queued" if sending else rng.choices(("sent", "failed", "bounced"), (97, 2, 1))[0]
                rows.append({
                    "id": delivery_id, "key": f"d:{edition}:{subscriber}", "kind": "digest", "edition_id": edition,
                    "subscriber_id": subscriber, "state": state, "attempts": 1, "next_attempt_at": NOW,
                    "message_id": f"<{delivery_id}@bench>" if state == "sent" else None,
                    "last_error": "550 5.1.1 <x>: Recipient address rejected" if state != "sent" and not sending else "",
                    "created_at": NOW - timedelta(days=edition_count - edition),
                    "sent_at": None if sending else NOW - timedelta(days=edition_count - edition),
                })
                if len(rows) == CHUNK:
                    connection.execute(insert(deliveries), rows)
                    rows = []
        if rows:
            connection.execute(insert(deliveries), rows)
        connection.execute(insert(mail_events), [
            {"event_key": f"e{number}", "subscriber_id": number, "kind": "hard_bounce", "source": "maildir",
             "detail": "550 5.1.1 user unknown", "created_at": NOW - timedelta(days=number % 300)}
            for number in range(1, count + 1, 25)
        ])
        connection.execute(insert(admin_audit), [
            {"at": NOW - timedelta(minutes=number), "username": "admin", "action": "unsubscribe",
             "target": f"subscriber {number}", "detail": "", "ip": "192.0.2.1"}
            for number in range(1, 5001)
        ])
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:  # ids were given: move the sequences past them, and gather statistics
            for table in ("subscribers", "editions", "deliveries"):
                connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
            connection.execute(text("ANALYZE"))
            connection.commit()
    else:
        with engine.connect() as connection:
            connection.execute(text("ANALYZE"))
            connection.commit()
    admins.set_password(engine, "admin", PASSWORD, datetime.now(UTC))
    engine.dispose()
    print(f"seeded {count:,} subscribers, {edition_count:,} editions, {delivery_count:,} deliveries "
          f"in {time.monotonic() - started:.0f} s", flush=True)


def sending(url: str, stop: threading.Event) -> None:
    """Marks the newest edition's queued deliveries sent, 200 every 100 ms, as a worker would."""
    engine = create_engine(url)
    with engine.connect() as connection:
        newest = connection.execute(select(func.max(editions.c.id))).scalar_one()
    while not stop.is_set():
        with engine.begin() as connection:
            batch = select(deliveries.c.id).where(
                deliveries.c.edition_id == newest, deliveries.c.state == "queued").limit(200).scalar_subquery()
            connection.execute(update(deliveries).where(deliveries.c.id.in_(batch))
                               .values(state="sent", sent_at=datetime.now(UTC), message_id="<bench>"))
        time.sleep(0.1)
    engine.dispose()


def pages(client: httpx.Client) -> dict[str, str]:
    subscriber = client.get("/admin/subscribers?status=bounced").text.split('href="/admin/subscribers/')[1].split('"')[0]
    listing = client.get("/admin/subscribers?sort=email").text
    after = listing.split('rel="next"')[0].rsplit("after=", 1)[1].split('"')[0]
    return {
        "overview": "/admin/",
        "overview 365 days": "/admin/?days=365",
        "subscribers": "/admin/subscribers",
        "subscribers, confirmed": "/admin/subscribers?status=active",
        "subscribers, search 'der123'": "/admin/subscribers?q=der123",
        "subscribers, weekly since a date": "/admin/subscribers?frequency=weekly&since=2026-01-01",
        "subscribers by address, page 2": f"/admin/subscribers?sort=email&after={after}",
        "subscribers, topic python": "/admin/subscribers?topic=python",
        "subscribers, rare topic": "/admin/subscribers?topic=rare",
        "subscribers, no topic, by address": "/admin/subscribers?topic=%2A&sort=email",
        "import form": "/admin/subscribers/import",
        "one subscriber": f"/admin/subscribers/{subscriber}",
        "editions": "/admin/editions",
        "edition being sent": "/admin/editions/NEWEST",
        "edition, failed": "/admin/editions/1?show=failed",
        "posts": "/admin/posts",
        "feed readers": "/admin/readers",
        "settings": "/admin/settings",
        "security": "/admin/security",
        "audit log": "/admin/audit",
    }


def run(url: str, folder: Path, requests: int) -> list[tuple[str, float, float]]:
    port = free_port()
    config = folder / "feedsvc.toml"
    config.write_text(
        f'[site]\ntitle = "Bench"\nurl = "https://blog.example.org"\n[posts]\ndir = "{_paths.ROOT / "examples" / "posts"}"\n'
        f'[store]\ndir = "{folder / "subscribers"}"\nurl = "{url}"\n'
        f'[web]\nport = {port}\nsecret_key = "{"s" * 40}"\n[log]\nlevel = "warning"\n',
        encoding="utf-8",
    )
    server = subprocess.Popen([sys.executable, "-m", "feedsvc", "serve", "--config", str(config)], cwd=folder)
    stop = threading.Event()
    writer = threading.Thread(target=sending, args=(url, stop), daemon=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            login = client.get("/admin/login").text
            token = login.split('name="csrf_token" value="')[1].split('"')[0]
            answer = client.post("/admin/login", data={"csrf_token": token, "username": "admin", "password": PASSWORD})
            assert answer.status_code == 303, answer.text
            newest = client.get("/admin/editions").text.split('href="/admin/editions/')[1].split('"')[0]
            started = time.perf_counter()
            client.get("/admin/")
            cold = (time.perf_counter() - started) * 1000
            targets = {name: path.replace("NEWEST", newest) for name, path in pages(client).items()}
            writer.start()
            timings: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(requests):
                for name, path in targets.items():
                    started = time.perf_counter()
                    answer = client.get(path)
                    timings[name].append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code)
            results = [("overview, counts not cached (once a minute)", cold, cold)]
            for name, values in timings.items():
                values.sort()
                results.append((name, statistics.median(values), values[max(int(len(values) * 0.95) - 1, 0)]))
            return results
    finally:
        stop.set()
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--editions", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--postgres", default=os.environ.get("FEEDSVC_TEST_POSTGRES_URL", ""))
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="feedsvc-dashboard-bench-") as temporary:
        folder = Path(temporary)
        backends = [] if options.no_sqlite else [("SQLite", f"sqlite:///{folder / 'subscribers' / 'feedsvc.db'}")]
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        if options.postgres:
            separator = "&" if "?" in options.postgres else "?"
            backends.append(("PostgreSQL", f"{options.postgres}{separator}options=-csearch_path%3D{schema}"))
            admin = create_engine(options.postgres, isolation_level="AUTOCOMMIT")
            with admin.connect() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            tables = {}
            for name, url in backends:
                print(f"{name}: seeding…", flush=True)
                seed(url, options.subscribers, options.editions, options.deliveries)
                tables[name] = run(url, folder, options.requests)
        finally:
            if options.postgres:
                with admin.connect() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    load = os.getloadavg()
    print(f"\n{options.subscribers:,} subscribers, {options.deliveries:,} deliveries, {options.editions:,} editions; "
          f"{options.requests} requests per page while a digest is sent; load average {load[0]:.1f}")
    names = list(tables)
    print("| page | " + " | ".join(f"{name} median / p95" for name in names) + " |")
    print("|---|" + "---|" * len(names))
    for index, (page, _, _) in enumerate(tables[names[0]]):
        cells = [f"{tables[name][index][1]:.0f} / {tables[name][index][2]:.0f} ms" for name in names]
        print(f"| {page} | " + " | ".join(cells) + " |")
    worst = max(p95 for name in names for page, _, p95 in tables[name][1:])
    print(f"\nworst p95 (cached overview included, its cold request not): {worst:.0f} ms (target <= 150 ms)")


if __name__ == "__main__":
    main()

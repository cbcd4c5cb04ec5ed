"""`feedsvc backup` / `feedsvc restore` as real subprocesses on real SQLite files and the real PostgreSQL: the
copy is taken while the service sends, restored into a fresh store, and the resumed service sends each
subscriber each edition exactly once."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from conftest import SmtpSink, _fresh_postgres_schema, add_subscribers, free_port, write_post
from sqlalchemy import Engine, select
from test_service import services, wait_for, write_config  # noqa: F401 (the `services` fixture)

from feedsvc.store import open_engine
from feedsvc.store.editions import insert_deliveries, insert_edition
from feedsvc.store.schema import deliveries, metadata

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def feedsvc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "feedsvc", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Store URLs for the original and for the restored site, on one backend."""
    if request.param == "sqlite":
        yield "", ""  # each site's own [store] dir
        return
    first, second = _fresh_postgres_schema(), _fresh_postgres_schema()
    yield next(first), next(second)
    for generator in (first, second):
        generator.close()


BACKENDS = [("sqlite", "sqlite"), ("sqlite", "postgres"), ("postgres", "postgres"), ("postgres", "sqlite")]


@pytest.fixture(params=[
    pytest.param(pair, id="->".join(pair), marks=[pytest.mark.postgres] if "postgres" in pair else [])
    for pair in BACKENDS
])
def store_pair(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Store URLs for the original and the restored site, on any pair of backends ("": SQLite in its dir)."""
    schemas = [_fresh_postgres_schema() for backend in request.param if backend == "postgres"]
    urls = iter([next(schema) for schema in schemas])
    yield tuple(next(urls) if backend == "postgres" else "" for backend in request.param)  # type: ignore[misc]
    for schema in schemas:
        schema.close()


def _store_url(site: Path, configured: str) -> str:
    return configured or f"sqlite:///{site / 'subscribers' / 'feedsvc.db'}"


def _populate(engine: Engine) -> None:
    """Three subscribers and an edition whose deliveries are sent, in flight (claimed) and queued (claimed)."""
    ids = add_subscribers(engine, ["a@example.org", "b@example.org", "c@example.org"], confirmed_at=NOW)
    with engine.begin() as connection:
        edition = insert_edition(
            connection, key="daily:1", frequency="daily", period_start=NOW - timedelta(days=1), period_end=NOW,
            post_ids=["p1", "p2"], subject="Digest — ünïcode", html="<p>hi</p>", text="hi", created_at=NOW,
        )
        insert_deliveries(connection, [
            {"key": f"daily:1:{sid}", "edition_id": edition, "subscriber_id": sid, "state": "queued", "attempts": 0,
             "next_attempt_at": NOW, "last_error": "", "created_at": NOW}
            for sid in ids
        ])
        lease = {"claimed_by": "old-host:1", "lease_until": NOW + timedelta(days=3650)}
        states = {ids[0]: {"state": "sent", "sent_at": NOW, "message_id": "<1@x>"}, ids[1]: {"state": "sending"}}
        for sid in ids:
            connection.execute(
                deliveries.update().where(deliveries.c.subscriber_id == sid).values(**lease, **states.get(sid, {}))
            )


def _rows(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(select(table).order_by(*table.primary_key.columns))]
            for table in metadata.sorted_tables
            if table.name not in ("leases", "rate_limits")
        }


def _site(folder: Path, store_url: str, **sections) -> Path:
    folder.mkdir(exist_ok=True)
    return write_config(folder, store={"url": store_url} if store_url else {}, **sections)


def test_backup_and_restore_keep_every_row_and_free_the_old_claims(tmp_path, store_pair):
    original, restored_url = store_pair  # one backup format for both backends, restored into either
    config = _site(tmp_path / "a", original)
    engine = open_engine(_store_url(tmp_path / "a", original))
    _populate(engine)
    before = _rows(engine)

    backup = tmp_path / "feedsvc-backup.db"
    made = feedsvc("backup", str(backup), "--config", str(config), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "3 deliveries" in made.stdout and "1 editions" in made.stdout and "3 subscribers" in made.stdout

    target_config = _site(tmp_path / "b", restored_url)
    done = feedsvc("restore", str(backup), "--config", str(target_config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    restored_engine = open_engine(_store_url(tmp_path / "b", restored_url))
    after = _rows(restored_engine)

    # Every row is back; the claims of the old store's processes are freed on what was not sent.
    claim = [column.name for column in deliveries.columns].index("claimed_by")
    for table, rows in before.items():
        if table != "deliveries":
            assert after[table] == rows, table
    assert [row[:claim] + row[claim + 2:] for row in after["deliveries"]] == [
        row[:claim] + row[claim + 2:] for row in before["deliveries"]
    ]
    assert [(row.state, row.claimed_by) for row in _delivery_rows(restored_engine)] == [
        ("sent", "old-host:1"), ("sending", None), ("queued", None),
    ]
    # New rows get ids after the restored ones (PostgreSQL sequences moved past them).
    more = add_subscribers(restored_engine, ["d@example.org"], confirmed_at=NOW)
    assert more[0] > max(row[0] for row in after["subscribers"])

    # A store that holds data is never restored over; nor is something that is not a backup read.
    again = feedsvc("restore", str(backup), "--config", str(target_config), cwd=tmp_path)
    assert again.returncode == 1 and "is not empty (" in again.stderr and "4 subscribers" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
    junk = tmp_path / "junk.db"
    junk.write_text("not a database", encoding="utf-8")
    refused = feedsvc("restore", str(junk), "--config", str(_site(tmp_path / "c", "")), cwd=tmp_path)
    assert refused.returncode == 1 and "is not a feedsvc backup" in refused.stderr
    engine.dispose()
    restored_engine.dispose()


def _delivery_rows(engine: Engine):
    with engine.connect() as connection:
        return connection.execute(select(deliveries).order_by(deliveries.c.id)).all()


@pytest.fixture
def second_smtp_server() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.port = free_port()
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    controller.stop()


def test_a_backup_taken_mid_send_restored_and_resumed_sends_each_edition_once(
    tmp_path, two_stores, services, smtp_server, second_smtp_server  # noqa: F811
):
    original, restored_url = two_stores

    def slow(stage: str, _: object) -> None:
        if stage == "data":
            time.sleep(0.02)  # a slow relay, so the backup lands while the editions go out

    smtp_server.fault = slow
    first_site = tmp_path / "a"
    config = _site(first_site, original, mail={"smtp_url": smtp_server.url, "connections": 2})
    addresses = [f"reader{index}@example.org" for index in range(100)]
    engine = open_engine(_store_url(first_site, original))
    add_subscribers(engine, addresses, frequency="instant", confirmed_at=datetime.now(UTC) - timedelta(hours=1))
    engine.dispose()

    service = services(config)
    service.wait_healthy()
    for number in (1, 2):
        write_post(first_site / "posts", f"post-{number}.md", title=f"Post {number}", date=datetime.now(UTC))
        wait_for(lambda n=number: len(smtp_server.received) >= 15 * n, 30, f"post {number} under way")

    backup = tmp_path / "mid-send.db"
    made = feedsvc("backup", str(backup), "--config", str(config), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    # Restoring over a running site is refused, in one line (SQLite: the process holds it; PostgreSQL: data).
    busy = feedsvc("restore", str(backup), "--config", str(config), cwd=tmp_path)
    assert busy.returncode == 1 and len(busy.stderr.strip().splitlines()) == 1, busy.stderr
    assert "already running on the SQLite store" in busy.stderr or "is not empty" in busy.stderr
    # The original site is lost (the disaster the backup is for): stop it.
    assert service.stop(signal.SIGTERM) == 0

    with closing(sqlite3.connect(backup)) as copy:
        subjects = dict(copy.execute("SELECT id, subject FROM editions"))
        sent_in_backup = Counter(copy.execute(
            "SELECT s.email, d.edition_id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.state = 'sent'"
        ).fetchall())
        total = copy.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    assert len(subjects) == 2 and len(set(subjects.values())) == 2
    assert total == 2 * len(addresses)
    assert 0 < len(sent_in_backup) < total, "the backup must land mid-send"

    second_site = tmp_path / "b"
    second_config = _site(second_site, restored_url, mail={"smtp_url": second_smtp_server.url, "connections": 2})
    shutil.copytree(first_site / "posts", second_site / "posts", dirs_exist_ok=True)
    done = feedsvc("restore", str(backup), "--config", str(second_config), cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    resumed = services(second_config)
    resumed.wait_healthy()
    remaining = total - len(sent_in_backup)
    wait_for(lambda: len(second_smtp_server.received) >= remaining, 60, "the rest of the editions", interval=0.1)
    time.sleep(1.5)  # anything sent twice would arrive now
    edition_of = {subject: edition for edition, subject in subjects.items()}
    resumed_sends = Counter(
        (recipient, edition_of[mail.message["subject"]])
        for mail in second_smtp_server.received
        for recipient in mail.recipients
    )
    assert not set(resumed_sends) & set(sent_in_backup), "nothing already sent is sent again"
    everyone = Counter({(address, edition): 1 for address in addresses for edition in subjects})
    assert sent_in_backup + resumed_sends == everyone, "every subscriber gets each edition exactly once"
    assert resumed.stop() == 0


def test_backup_refuses_to_overwrite_the_live_store(tmp_path):
    config = _site(tmp_path, "")
    open_engine(_store_url(tmp_path, "")).dispose()
    live = tmp_path / "subscribers" / "feedsvc.db"
    result = feedsvc("backup", str(live), "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "is the store itself" in result.stderr


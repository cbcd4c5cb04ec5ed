import io
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from conftest import ROOT, add_subscribers, write_post
from sqlalchemy import inspect, text

from feedsvc.store import engine as engine_module
from feedsvc.store.engine import (
    StoreTooNew,
    create_store_engine,
    current_revision,
    head_revision,
    is_current,
    open_engine,
    pending_steps,
)
from feedsvc.store.schema import metadata


def test_migrations_build_the_schema_from_empty(store_url):
    engine = create_store_engine(store_url)
    assert not is_current(engine)
    engine.dispose()

    engine = open_engine(store_url)
    try:
        assert is_current(engine)
        tables = set(inspect(engine).get_table_names())
        assert set(metadata.tables) <= tables
        # The migrations and the table definitions describe the same schema.
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_opening_twice_is_a_no_op(store_url):
    open_engine(store_url).dispose()
    engine = open_engine(store_url)
    assert is_current(engine)
    engine.dispose()


def test_a_current_store_is_recognised_without_alembic_by_its_newest_migration_name(store_url):
    # open_engine skips alembic when the store is stamped with the newest file's name: that name must be the head.
    head = head_revision()
    assert engine_module.newest_migration_name() == head
    engine = create_store_engine(store_url)
    try:
        assert not engine_module.surely_current(engine)  # empty: no alembic_version table
    finally:
        engine.dispose()
    engine = open_engine(store_url)
    try:
        assert engine_module.surely_current(engine)
        for other in ("0001", "9999_from_a_newer_release"):
            with engine.begin() as connection:
                connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": other})
            assert not engine_module.surely_current(engine)  # alembic decides: upgrade, or refuse a newer store
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        assert engine_module.surely_current(engine)
    finally:
        engine.dispose()


# --- upgrades: a copy first, newer stores refused, the previous release's store upgraded in place ---------------

PREVIOUS_RELEASE = "ea06ae2"
DATA_TABLES = ("subscribers", "editions", "deliveries", "announcements", "digest_periods")


def _feedsvc(*args: str, cwd: Path, pythonpath: Path | None = None, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not (k.upper().startswith("FEEDSVC_") and "__" in k)}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)  # this release's code instead of the installed one
    result = subprocess.run(
        [sys.executable, "-m", "feedsvc", *args], cwd=cwd, env=env | variables,
        capture_output=True, text=True, timeout=120, check=False,
    )
    return result


def _snapshot(url: str) -> dict[str, Any]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            counts = {t: connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in DATA_TABLES}
            states = dict(connection.execute(text("SELECT state, count(*) FROM deliveries GROUP BY state")).all())
            emails = connection.execute(text("SELECT id, email, status, frequency FROM subscribers ORDER BY id")).all()
            subjects = connection.execute(text("SELECT id, subject FROM editions ORDER BY id")).all()
        return {"counts": counts, "states": states, "subscribers": emails, "editions": subjects}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The code of the release before this round, unpacked from the repository's history."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout with history to unpack the previous release")
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"], check=False)
    if known.returncode != 0:
        pytest.skip(f"commit {PREVIOUS_RELEASE} is not in this clone's history (a shallow clone?)")
    folder = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def test_a_store_of_the_previous_release_upgrades_in_place_with_everything_in_it(
    tmp_path, store_url, previous_release, smtp_server
):
    site = tmp_path / "site"
    posts = site / "posts"
    posts.mkdir(parents=True)
    config = site / "feedsvc.toml"
    config.write_text(
        f'[site]\nurl = "https://blog.example.org"\n[store]\nurl = "{store_url}"\n'
        '[web]\nsecret_key = "a-private-secret-of-forty-bytes-length!!"\n[mail]\nfrom_address = "news@example.org"\n',
        encoding="utf-8",
    )
    csv = site / "readers.csv"
    csv.write_text("email,frequency\n" + "".join(f"r{n}@example.org,{'instant' if n % 4 else 'daily'}\n" for n in range(40)))
    write_post(posts, "old.md", title="Before the list existed", date=datetime.now(UTC) - timedelta(days=2))

    def old(*args: str, **variables: str) -> None:
        result = _feedsvc(*args, "--config", str(config), cwd=site, pythonpath=previous_release, **variables)
        assert result.returncode == 0, result.stderr

    old("subscribers", "import", str(csv), "--confirmed")
    old("digest", "send")  # the first run: the existing post is the archive, not news
    write_post(posts, "news.md", title="News for the list", date=datetime.now(UTC) - timedelta(minutes=1))
    old("digest", "send")  # instant subscribers get it (into the Maildir)
    write_post(posts, "more.md", title="More news", date=datetime.now(UTC) - timedelta(seconds=30))
    smtp_server.fault = lambda stage, _: "451 4.3.0 try again later" if stage == "rcpt" else None
    old("digest", "send", FEEDSVC_MAIL__SMTP_URL=smtp_server.url)  # a relay saying "later": retries pending
    before = _snapshot(store_url)
    assert before["counts"]["subscribers"] == 40 and before["counts"]["editions"] == 2
    assert before["states"] == {"sent": 30, "retry": 30}

    planned = _feedsvc("db", "upgrade", "--dry-run", "--config", str(config), cwd=site)
    assert planned.returncode == 0, planned.stderr
    engine = create_store_engine(store_url)
    steps = pending_steps(engine)
    engine.dispose()
    if steps:
        assert f"-> {head_revision()}" in planned.stdout
    else:
        assert "is up to date" in planned.stdout
    assert _snapshot(store_url) == before, "a dry run changes nothing"

    upgraded = _feedsvc("db", "upgrade", "--config", str(config), cwd=site)
    assert upgraded.returncode == 0, upgraded.stderr
    assert _snapshot(store_url) == before, "every subscriber, edition and delivery is intact"
    engine = create_store_engine(store_url)
    assert is_current(engine) and current_revision(engine) == head_revision()
    engine.dispose()
    counted = _feedsvc("deliveries", "--config", str(config), cwd=site)
    assert counted.returncode == 0 and "30" in counted.stdout, counted.stdout + counted.stderr


@pytest.fixture
def next_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
    """Called: the migrations get one more step after the current head (as the next release will have)."""
    return lambda: _add_probe_step(tmp_path / "migrations", monkeypatch)


def _add_probe_step(folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    shutil.copytree(engine_module.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    revision = "9999_probe"
    (folder / "versions" / f"{revision}.py").write_text(
        f'"""probe step"""\nimport sqlalchemy as sa\nfrom alembic import op\n\nrevision = "{revision}"\n'
        f'down_revision = "{head_revision()}"\nbranch_labels = None\ndepends_on = None\n\n\n'
        'def upgrade() -> None:\n    op.create_table("upgrade_probe", sa.Column("id", sa.Integer, primary_key=True))\n\n\n'
        'def downgrade() -> None:\n    op.drop_table("upgrade_probe")\n',
        encoding="utf-8",
    )
    monkeypatch.setattr(engine_module, "MIGRATIONS", folder)
    return revision


def test_an_sqlite_store_is_copied_before_its_schema_is_upgraded(tmp_path, next_release):
    database = tmp_path / "subscribers" / "feedsvc.db"
    url = f"sqlite:///{database}"
    engine = open_engine(url)
    add_subscribers(engine, ["a@example.org", "b@example.org"], confirmed_at=datetime.now(UTC))
    engine.dispose()
    old_head = head_revision()
    before = _snapshot(url)

    new_head = next_release()
    engine = create_store_engine(url)
    assert [step.revision for step in pending_steps(engine)] == [new_head]
    engine.dispose()
    open_engine(url).dispose()
    engine = create_store_engine(url)
    assert current_revision(engine) == new_head
    engine.dispose()

    copies = list((database.parent / "backups").glob(f"feedsvc-{old_head}-*.db"))
    assert len(copies) == 1, copies
    assert _snapshot(f"sqlite:///{copies[0]}") == before
    with closing(sqlite3.connect(copies[0])) as copy:
        assert copy.execute("SELECT version_num FROM alembic_version").fetchone() == (old_head,)
    # An empty (new) store has nothing to lose: no copy.
    fresh = tmp_path / "fresh" / "feedsvc.db"
    open_engine(f"sqlite:///{fresh}").dispose()
    assert not (fresh.parent / "backups").exists()


def test_a_store_newer_than_the_code_is_refused_with_a_clear_message(tmp_path, store_url):
    open_engine(store_url).dispose()
    engine = create_store_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    engine.dispose()
    with pytest.raises(StoreTooNew, match="'9999_from_the_future', which this feedsvc does not know"):
        open_engine(store_url)

    config = tmp_path / "feedsvc.toml"
    config.write_text(f'[site]\nurl = "https://blog.example.org"\n[store]\nurl = "{store_url}"\n', encoding="utf-8")
    for command in (["run", "--port", "0"], ["db", "upgrade", "--dry-run"]):
        result = _feedsvc(*command, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        problems = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("{", "20"))]
        assert len(problems) == 1 and "written by a newer release" in problems[0], result.stderr
        assert "Traceback" not in result.stderr


MIGRATE_AT = """
import sys, time
from feedsvc.store import open_engine
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
open_engine(sys.argv[1]).dispose()
"""


@pytest.mark.postgres
def test_instances_starting_at_once_on_an_empty_postgres_store_migrate_it_once(postgres_url):
    start = f"{time.time() + 2.0}"
    processes = [
        subprocess.Popen([sys.executable, "-c", MIGRATE_AT, postgres_url, start], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    failures = [process.communicate(timeout=60)[1] for process in processes if process.wait(timeout=60) != 0]
    assert failures == [], failures[0][-2000:] if failures else ""
    engine = create_store_engine(postgres_url)
    assert is_current(engine)
    engine.dispose()

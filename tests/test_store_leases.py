"""Leases on both backends, and the SQLite single-instance guard (real files, real locks, real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from feedsvc.store import open_engine
from feedsvc.store.leases import (
    LEADER,
    SqliteGuard,
    StoreInUse,
    acquire,
    release,
    single_instance_guard,
)
from feedsvc.store.schema import leases

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def holder_of(engine: Engine, name: str, *, now: datetime) -> str | None:
    """Who holds the lease `name` at `now`, read from its row (the service itself never needs to ask)."""
    with engine.connect() as connection:
        return connection.execute(
            select(leases.c.holder).where(leases.c.name == name, leases.c.expires_at >= now)
        ).scalar_one_or_none()


def test_one_holder_at_a_time_until_the_lease_expires(store_url):
    engine = open_engine(store_url)
    assert acquire(engine, LEADER, "a", ttl=15, now=T0)
    assert not acquire(engine, LEADER, "b", ttl=15, now=T0 + timedelta(seconds=5))
    # The holder renews and keeps it; the other still cannot take it before the renewed expiry.
    assert acquire(engine, LEADER, "a", ttl=15, now=T0 + timedelta(seconds=10))
    assert not acquire(engine, LEADER, "b", ttl=15, now=T0 + timedelta(seconds=20))
    assert holder_of(engine, LEADER, now=T0 + timedelta(seconds=20)) == "a"
    # "a" stops renewing (killed): once expired, "b" takes over and "a" is refused.
    assert acquire(engine, LEADER, "b", ttl=15, now=T0 + timedelta(seconds=26))
    assert not acquire(engine, LEADER, "a", ttl=15, now=T0 + timedelta(seconds=27))
    assert holder_of(engine, LEADER, now=T0 + timedelta(seconds=27)) == "b"
    engine.dispose()


def test_a_released_lease_is_free_at_once_and_only_its_holder_releases_it(store_url):
    engine = open_engine(store_url)
    assert acquire(engine, LEADER, "a", ttl=60, now=T0)
    release(engine, LEADER, "b")  # not b's to give
    assert holder_of(engine, LEADER, now=T0) == "a"
    release(engine, LEADER, "a")
    assert holder_of(engine, LEADER, now=T0) is None
    assert acquire(engine, LEADER, "b", ttl=60, now=T0 + timedelta(seconds=1))
    engine.dispose()


def test_leases_are_independent_by_name(store_url):
    engine = open_engine(store_url)
    assert acquire(engine, "one", "a", ttl=60, now=T0)
    assert acquire(engine, "two", "b", ttl=60, now=T0)
    assert (holder_of(engine, "one", now=T0), holder_of(engine, "two", now=T0)) == ("a", "b")
    engine.dispose()


def test_the_guard_is_for_sqlite_only(tmp_path):
    assert isinstance(single_instance_guard(f"sqlite:///{tmp_path / 'x.db'}"), SqliteGuard)
    assert single_instance_guard("postgresql+psycopg://u@h/db") is None


def test_a_second_user_of_a_sqlite_file_is_refused_with_the_holders_pid(tmp_path):
    url = f"sqlite:///{tmp_path / 'store' / 'feedsvc.db'}"
    with SqliteGuard(url):
        with pytest.raises(StoreInUse) as refused:
            SqliteGuard(url).acquire()
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message
        assert str(tmp_path / "store" / "feedsvc.db") in message
        assert "PostgreSQL" in message
    # Released: the next process gets it.
    with SqliteGuard(url):
        pass


def test_the_lock_dies_with_its_process(tmp_path):
    """kill -9 frees the store at once: the kernel drops the lock, no stale lease to wait out."""
    url = f"sqlite:///{tmp_path / 'feedsvc.db'}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from feedsvc.store.leases import SqliteGuard; "
            f"SqliteGuard({url!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreInUse, match=f"pid {holder.pid}"):
            SqliteGuard(url).acquire()
    finally:
        holder.kill()
        holder.wait()
    with SqliteGuard(url):
        assert Path(f"{tmp_path / 'feedsvc.db'}.lock").exists()

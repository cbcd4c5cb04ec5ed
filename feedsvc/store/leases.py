"""Named leases (the `leases` table) and the SQLite single-instance guard.

A lease row names its holder and an expiry. Taking it is one atomic upsert that succeeds only when the row is
free, expired or already ours, so among any number of processes on any number of machines exactly one holds it
at a time; a holder that dies (kill -9) loses it when it expires. The scheduler leader is such a lease.

SQLite is the single-process store: `SqliteGuard` takes an OS lock on a file beside the database, which the
kernel releases when the process ends however it ends, so a restart is never locked out.
"""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, and_, delete, or_, select
from sqlalchemy.engine import make_url

from feedsvc.errors import ExplainedFailure
from feedsvc.store.dialects import upsert
from feedsvc.store.schema import leases

LEADER = "scheduler-leader"


def acquire(engine: Engine, name: str, holder: str, *, ttl: float, now: datetime) -> bool:
    """Take or renew the lease `name` for `ttl` seconds; True when `holder` holds it afterwards."""
    expires = now + timedelta(seconds=ttl)
    with engine.begin() as connection:
        statement = upsert(connection, leases).values(name=name, holder=holder, expires_at=expires)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[leases.c.name],
                set_={"holder": holder, "expires_at": expires},
                where=or_(leases.c.holder == holder, leases.c.expires_at < now),
            )
        )
        current = connection.execute(select(leases.c.holder).where(leases.c.name == name)).scalar_one()
    return current == holder


def release(engine: Engine, name: str, holder: str) -> None:
    """Give the lease up at once (graceful shutdown) so another instance need not wait for it to expire."""
    with engine.begin() as connection:
        connection.execute(delete(leases).where(and_(leases.c.name == name, leases.c.holder == holder)))


class StoreInUse(ExplainedFailure):
    """Another feedsvc process already runs on this SQLite database."""


class SqliteGuard:
    """Holds an exclusive lock on `<database>.lock` while the process uses a SQLite store."""

    def __init__(self, url: str) -> None:
        database = make_url(url).database
        self.path = Path(f"{database}.lock") if database and database != ":memory:" else None
        self._fd: int | None = None

    def acquire(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreInUse(
                f"another feedsvc process (pid {other}) is already running on the SQLite store "
                f"{self.path.with_suffix('')}; SQLite supports one process — stop the other one, or use "
                "PostgreSQL (store.url) to run several instances"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SqliteGuard:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def single_instance_guard(url: str) -> SqliteGuard | None:
    """The guard a process must hold on this store, or None when the store is shared safely (PostgreSQL)."""
    return SqliteGuard(url) if make_url(url).get_backend_name() == "sqlite" else None

"""Opening the store: engine set-up per backend, waiting for a database that is still coming up, and the
schema migrations run at start (after a copy of an SQLite store, so a failed upgrade loses nothing)."""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from feedsvc.errors import ExplainedFailure
from feedsvc.logging import fields

if TYPE_CHECKING:  # alembic is imported when a migration question needs it, not by every command's start
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Copies of an SQLite store taken just before its schema is upgraded, beside the database file.
UPGRADE_BACKUPS = "backups"

log = logging.getLogger(__name__)


class StoreError(ExplainedFailure):
    """The store cannot be used as it is; the message says why and what to do."""


class StoreUnavailable(StoreError):
    """The database does not answer (server down or unreachable, file not openable)."""


class StoreTooNew(StoreError):
    """The store's schema was written by a newer feedsvc than this one."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; busy_timeout: writers wait for each other instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None for other backends and in-memory databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def masked_url(url: str) -> str:
    """The URL as it may be shown or logged: the password replaced by ***."""
    return make_url(url).render_as_string(hide_password=True)


def create_store_engine(url: str) -> Engine:
    path = sqlite_path(url)
    if is_sqlite(url):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def connect(engine: Engine, timeout: float = 0.0) -> None:
    """Wait until the database answers, retrying for up to `timeout` s (a server still starting up).

    Raises StoreUnavailable with the database's own reason in one line; an SQLite file that cannot be opened
    is not retried (waiting does not make a folder writable).
    """
    url = engine.url.render_as_string(hide_password=False)
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return
        except OperationalError as exc:
            reason = " ".join(str(exc.orig or exc).split())
            if is_sqlite(url):
                raise StoreUnavailable(
                    f"cannot open the SQLite store {sqlite_path(url)}: {reason} (is its folder writable by this user?)"
                ) from None
            # The whole timeout is waited out: the last sleep is cut to what is left of it, not skipped.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = f" after waiting {timeout:g} s ([store] connect_timeout)" if timeout else ""
                raise StoreUnavailable(
                    f"cannot reach the store at {masked_url(url)}{waited}: {reason} "
                    "(is the database running, and is [store] url right?)"
                ) from None
            log.warning("store.waiting", extra=fields(store=masked_url(url), error=reason))
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def newest_migration_name() -> str:
    """The name of the newest file in versions/ (`000N_<area>`), which is also its revision id."""
    return max((path.stem for path in (MIGRATIONS / "versions").glob("[0-9]*.py")), default="")


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision; None for an empty database."""
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_known(revision: str | None, what: str) -> None:
    """Raise StoreTooNew when `revision` is not one of this code's migrations (a newer feedsvc wrote it)."""
    if revision is None:
        return
    from alembic.util import CommandError

    try:
        known = _scripts().get_revision(revision) is not None
    except CommandError:
        known = False
    if not known:
        raise StoreTooNew(
            f"{what} has schema revision {revision!r}, which this feedsvc does not know (its newest is "
            f"{head_revision()!r}): it was written by a newer release. Run that release, or restore a backup "
            "made by this one"
        )


def pending_steps(engine: Engine) -> list[Script]:
    """The migrations an upgrade to head would run, oldest first; StoreTooNew when the store is ahead."""
    current = current_revision(engine)
    check_known(current, "the store")
    steps = list(_scripts().iterate_revisions(head_revision(), current or "base"))
    return list(reversed(steps))


def is_current(engine: Engine) -> bool:
    return not pending_steps(engine)


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def sqlite_online_copy(source: Path, destination: Path) -> None:
    """A consistent copy of a live SQLite database (its online backup API), as one self-contained file."""
    if not source.is_file():
        raise StoreError(f"there is no SQLite store at {source}")
    with closing(sqlite3.connect(source, timeout=10)) as live, closing(sqlite3.connect(destination)) as copy:
        live.backup(copy)  # all pages in one step, under one read transaction: a single point in time
        copy.execute("PRAGMA journal_mode=DELETE")  # no -wal/-shm files beside the copy


def surely_current(engine: Engine) -> bool:
    """Whether the store is at the newest migration, asked without loading alembic and every migration script
    (a third of a short command's start). Only a store stamped with the newest file's name passes; for any
    other answer, or when that file's revision id is not its name, alembic decides."""
    try:
        with engine.connect() as connection:
            stamped = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except sqlalchemy.exc.DBAPIError:  # no such table yet: an empty store
        return False
    newest = newest_migration_name()  # "" where only compiled files were installed: alembic decides
    return bool(newest) and stamped == [newest]


def upgrade_store(engine: Engine) -> Path | None:
    """Run the pending migrations; an SQLite store with data is copied first (the copy's path is returned)."""
    if surely_current(engine):
        return None
    steps = pending_steps(engine)
    if not steps:
        return None
    copy = None
    path = sqlite_path(engine.url.render_as_string(hide_password=False))
    current = current_revision(engine)
    if path and current is not None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        copy = path.parent / UPGRADE_BACKUPS / f"{path.stem}-{current}-{stamp}.db"
        copy.parent.mkdir(exist_ok=True)
        sqlite_online_copy(path, copy)
        log.info("store.backed_up_before_upgrade", extra=fields(backup=str(copy), revision=current))
    upgrade(engine)
    log.info("store.upgraded", extra=fields(revision_before=current, revision=steps[-1].revision))
    return copy


def open_engine(url: str, *, connect_timeout: float = 0.0) -> Engine:
    """An engine on an up-to-date schema (migrations run here when the store is behind)."""
    engine = create_store_engine(url)
    try:
        connect(engine, connect_timeout)
        upgrade_store(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def ping(engine: Engine) -> None:
    """Raise when the store cannot answer a trivial query (for /healthz)."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


# SQLite's "database is locked" (another process holds the write lock past busy_timeout) and "table is locked".
_SQLITE_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def unavailable(exc: BaseException) -> bool:
    """Whether an error means the store is busy or unreachable for now (worth retrying), not a fault of ours."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    original = exc.orig
    if isinstance(original, sqlite3.OperationalError):
        return getattr(original, "sqlite_errorcode", None) in _SQLITE_BUSY
    # psycopg's OperationalError: cannot connect, connection lost, server shutting down or starting up.
    return type(original).__module__.startswith("psycopg") and isinstance(exc, sqlalchemy.exc.OperationalError)

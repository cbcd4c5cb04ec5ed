"""Backups of the whole store into one SQLite file, and restores from such a file into an empty store.

One format for both backends: an SQLite store is copied with SQLite's online backup API; a PostgreSQL store
is exported table by table inside one REPEATABLE READ transaction (a single snapshot, while the service keeps
writing) into an SQLite file built by the same migrations. A restore upgrades a copy of the backup to this
code's schema, then copies every row into the target (SQLite or PostgreSQL) in one transaction, so a failed
restore leaves the target empty. A backup can therefore also move a store from SQLite to PostgreSQL.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Connection, Engine, MetaData, Table, func, insert, select, text, update
from sqlalchemy.exc import DatabaseError

from feedsvc.store import schema
from feedsvc.store.engine import (
    StoreError,
    check_known,
    connect,
    create_store_engine,
    current_revision,
    masked_url,
    sqlite_online_copy,
    sqlite_path,
    upgrade,
)
from feedsvc.store.leases import single_instance_guard

# Coordination between running processes, not data: neither copied nor counted.
TRANSIENT = frozenset({"leases", "rate_limits", "alembic_version"})
# Rows read and written per round trip.
CHUNK = 1000


@dataclass(frozen=True)
class Summary:
    revision: str
    rows: dict[str, int]  # table -> rows


def backup(url: str, destination: Path) -> Summary:
    """Write a consistent copy of the store at `url` to `destination` (replaced only once complete)."""
    source = sqlite_path(url)
    if source and not source.is_file():
        raise StoreError(f"there is no SQLite store at {source} (check [store] dir)")
    engine = create_store_engine(url)
    partial = destination.with_name(f".{destination.name}.{os.getpid()}.partial")
    try:
        connect(engine)
        revision = current_revision(engine)
        if revision is None:
            raise StoreError(f"the store at {masked_url(url)} is empty: there is nothing to back up")
        check_known(revision, "the store")
        partial.unlink(missing_ok=True)
        if source and destination.resolve() == source.resolve():
            raise StoreError(f"{destination} is the store itself: write the backup to another file")
        if source:
            sqlite_online_copy(source, partial)
        else:
            _export(engine, revision, partial)
        summary = read_summary(partial)
        os.replace(partial, destination)
        return summary
    finally:
        partial.unlink(missing_ok=True)
        engine.dispose()


def _export(engine: Engine, revision: str, destination: Path) -> None:
    copy = _sqlite_engine(destination)
    try:
        upgrade(copy, revision)
        snapshot = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with snapshot as source, source.begin(), copy.begin() as target:
            _copy_rows(source, target)
        with copy.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=DELETE")
    finally:
        copy.dispose()


def read_summary(path: Path) -> Summary:
    """The schema revision and row counts of a backup file; StoreError when it is not one."""
    if not path.is_file():
        raise StoreError(f"{path} does not exist")
    engine = _sqlite_engine(path)
    try:
        with engine.connect() as connection:
            tables = _reflect(connection)
            if "alembic_version" not in tables:
                raise StoreError(f"{path} is not a feedsvc backup (no schema revision in it)")
            return Summary(_revision(connection), _counts(connection, tables.values()))
    except DatabaseError as exc:  # a file that is not an SQLite database at all
        raise StoreError(f"{path} is not a feedsvc backup: {' '.join(str(exc).split())}") from None
    finally:
        engine.dispose()


def restore(source: Path, url: str, *, connect_timeout: float = 0.0) -> Summary:
    """Copy the backup `source` into the empty store at `url`, upgraded to this code's schema."""
    summary = read_summary(source)
    check_known(summary.revision, f"the backup {source}")
    guard = single_instance_guard(url)
    target = create_store_engine(url)
    try:
        if guard:
            guard.acquire()  # no feedsvc process may run on this SQLite store meanwhile
        connect(target, connect_timeout)
        _require_empty(target, url)
        with tempfile.TemporaryDirectory(prefix="feedsvc-restore-") as scratch:
            working = Path(scratch) / "backup.db"
            sqlite_online_copy(source, working)  # the backup itself is never changed
            copy = _sqlite_engine(working)
            try:
                upgrade(copy)
                upgrade(target)
                with copy.connect() as reader, target.begin() as writer:
                    _copy_rows(reader, writer)
                    _release_claims(writer)
                    _advance_sequences(writer)
                    restored = Summary(_revision(writer), _counts(writer, _reflect(writer).values()))
            finally:
                copy.dispose()
        return restored
    finally:
        target.dispose()
        if guard:
            guard.release()


def _revision(connection: Connection) -> str:
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def _require_empty(engine: Engine, url: str) -> None:
    revision = current_revision(engine)
    if revision is None:
        return
    check_known(revision, "the store")
    with engine.connect() as connection:
        filled = {name: count for name, count in _counts(connection, _reflect(connection).values()).items() if count}
    if filled:
        contents = ", ".join(f"{count} {name}" for name, count in sorted(filled.items()))
        raise StoreError(
            f"the store at {masked_url(url)} is not empty ({contents}): restore into a new, empty store "
            "(another [store] dir or database), so nothing in it is overwritten"
        )


def _sqlite_engine(path: Path) -> Engine:
    return create_store_engine(f"sqlite:///{path}")


def _reflect(connection: Connection) -> dict[str, Table]:
    present = MetaData()
    present.reflect(connection)
    return {table.name: table for table in present.sorted_tables}


def _data_tables(tables: Iterable[Table]) -> list[Table]:
    return [table for table in tables if table.name not in TRANSIENT]


def _counts(connection: Connection, tables: Iterable[Table]) -> dict[str, int]:
    return {
        table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
        for table in _data_tables(tables)
    }


def _typed(table: Table) -> Table:
    """The reflected table with feedsvc's own column types where it has them (aware UTC times, JSON), so
    values convert between backends the way the application writes them."""
    known = schema.metadata.tables.get(table.name)
    columns = []
    for column in table.columns:
        own = known.c.get(column.name) if known is not None else None
        columns.append(Column(column.name, own.type if own is not None else column.type))
    return Table(table.name, MetaData(), *columns)


def _copy_rows(source: Connection, target: Connection) -> None:
    """Every data row of `source` into `target` (same schema revision on both), parents before children."""
    for table in _data_tables(_reflect(source).values()):
        typed = _typed(table)
        rows = source.execution_options(yield_per=CHUNK).execute(select(typed))
        for chunk in rows.mappings().partitions(CHUNK):
            target.execute(insert(typed), [dict(row) for row in chunk])


def _release_claims(connection: Connection) -> None:
    """Claims in a backup belong to processes of the old store: free them, so the deliveries they held are
    taken at once (a `sending` one was in flight at the backup and goes out again; nothing `sent` does)."""
    deliveries = schema.deliveries
    connection.execute(
        update(deliveries)
        .where(deliveries.c.state != "sent", deliveries.c.claimed_by.is_not(None))
        .values(claimed_by=None, lease_until=None)
    )


def _advance_sequences(connection: Connection) -> None:
    """PostgreSQL: rows came with their ids, so each id sequence moves past the largest one."""
    if connection.dialect.name != "postgresql":
        return
    for table in schema.metadata.sorted_tables:
        if "id" in table.c and table.c.id.autoincrement is True:
            connection.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                )
            )

"""The few statements whose spelling differs between SQLite and PostgreSQL (both speak ON CONFLICT)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert(connection: Connection, table: Table):
    """An INSERT that can take `.on_conflict_do_update()` / `.on_conflict_do_nothing()` on this backend."""
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"feedsvc supports SQLite and PostgreSQL, not {dialect}")


def insert_ignoring_conflicts(connection: Connection, table: Table, index_elements: Sequence[str]):
    return upsert(connection, table).on_conflict_do_nothing(index_elements=list(index_elements))

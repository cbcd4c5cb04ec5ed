"""The few statements whose spelling differs between SQLite and PostgreSQL (both speak ON CONFLICT)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table


def upsert(connection: Connection, table: Table):
    """An INSERT that can take `.on_conflict_do_update()` / `.on_conflict_do_nothing()` on this backend."""
    # Each dialect's package imported when its store is in use: the PostgreSQL one (with its asyncpg, pg8000 and
    # psycopg2 modules) costs an SQLite command a tenth of a second of start-up.
    dialect = connection.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table)
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    raise NotImplementedError(f"feedsvc supports SQLite and PostgreSQL, not {dialect}")


def insert_ignoring_conflicts(connection: Connection, table: Table, index_elements: Sequence[str]):
    return upsert(connection, table).on_conflict_do_nothing(index_elements=list(index_elements))

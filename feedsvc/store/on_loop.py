"""PostgreSQL from the event loop: psycopg's asyncio connection, for the statements a drain runs every few mails.

A worker thread's store call on PostgreSQL spends most of its time waiting: for the server, then for the
interpreter lock while the loop personalises and sends. A wave's write took 1.3-2.1 ms that way against about
0.5 ms on the wire, and the senders waited for it. From the loop, the statement goes out and the loop carries on
until the answer arrives. SQLAlchemy's own asyncio engine does this through greenlets, which cost a drain a third
more CPU per mail when tried; so the statements here are SQLAlchemy's, compiled once, and run on the driver.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ClauseElement

if TYPE_CHECKING:  # psycopg is imported when a connection is opened: an SQLite store never needs it
    import psycopg

# How SQLAlchemy renders an expanding IN parameter named "ids"; on the driver it becomes one array parameter.
_EXPANDING_IDS = "IN (__[POSTCOMPILE_ids])"


class LoopConnection:
    """One autocommit connection driven by the event loop: each statement is a whole write by itself.

    Failures come out as SQLAlchemy's exceptions (`OperationalError` for a server that went away), as they do
    from the engine's connections, so callers handle an outage the same way whichever connection met it."""

    def __init__(self, connection: psycopg.AsyncConnection[Any], dialect: Dialect) -> None:
        self._connection = connection
        self._dialect = dialect

    @classmethod
    async def open(cls, engine: Engine) -> LoopConnection:
        import psycopg

        # The engine's own reading of its URL (host, port, user, options such as a search_path).
        _, options = engine.dialect.create_connect_args(engine.url)
        try:
            connection = await psycopg.AsyncConnection.connect(**options, autocommit=True)
        except psycopg.Error as exc:
            raise DBAPIError.instance("connect", {}, exc, psycopg.Error) from exc
        return cls(connection, engine.dialect)

    async def execute(self, statement: ClauseElement, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run `statement` with `params` (values as the driver takes them); its rows, if it returns any."""
        import psycopg

        sql, fixed = _driver_form(statement, self._dialect)
        values = {**fixed, **params}
        try:
            cursor = await self._connection.execute(sql, values)
            return await cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise DBAPIError.instance(sql, values, exc, psycopg.Error) from exc

    async def close(self) -> None:
        await self._connection.close()


@functools.cache
def _driver_form(statement: ClauseElement, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """The statement's SQL for psycopg and its fixed parameters' values, compiled once. An `ids` IN list becomes
    `= ANY(array)`: the same text whatever the count, so psycopg prepares it on the server after a few runs."""
    compiled = statement.compile(dialect=dialect)
    sql = compiled.string
    if "ids" in compiled.params:
        if _EXPANDING_IDS not in sql:
            raise ValueError(f"expected {_EXPANDING_IDS!r} in {sql!r}")
        sql = sql.replace(_EXPANDING_IDS, "= ANY(%(ids)s::BIGINT[])")  # the type of every id column
    return sql, {name: value for name, value in compiled.params.items() if name != "ids"}

"""Alembic environment: the engine comes from feedsvc (`feedsvc.store.engine.upgrade`), never from an ini file."""

from alembic import context
from sqlalchemy import text

from feedsvc.store.schema import metadata

# Several instances starting at once on one PostgreSQL database: one migrates, the others wait for this lock
# in their own transaction and then find the schema current (the key is arbitrary, fixed for feedsvc).
MIGRATION_LOCK = 0x0FEED5C

engine = context.config.attributes["engine"]

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite rebuilds a table to change it (batch mode); with foreign keys on, dropping the old table would
        # cascade into the rows that refer to it. SQLite's own procedure: keys off outside the transaction,
        # checked before commit, on again after.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.configure(connection=connection, target_metadata=metadata, render_as_batch=sqlite)
            context.run_migrations()
            if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                raise RuntimeError(f"the migration leaves rows pointing at nothing: {broken[:5]}")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()

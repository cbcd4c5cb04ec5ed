"""Alembic environment: the engine comes from feedsvc (`feedsvc.store.engine.upgrade`), never from an ini file."""

from alembic import context
from sqlalchemy import text

from feedsvc.store.schema import metadata

# Several instances starting at once on one PostgreSQL database: one migrates, the others wait for this lock
# in their own transaction and then find the schema current (the key is arbitrary, fixed for feedsvc).
MIGRATION_LOCK = 0x0FEED5C

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()

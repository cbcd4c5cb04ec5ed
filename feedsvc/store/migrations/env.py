"""Alembic environment: the engine comes from feedsvc (`feedsvc.store.engine.upgrade`), never from an ini file."""

from alembic import context

from feedsvc.store.schema import metadata

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()

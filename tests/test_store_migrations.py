from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from feedsvc.store.engine import create_store_engine, is_current, open_engine
from feedsvc.store.schema import metadata


def test_migrations_build_the_schema_from_empty(store_url):
    engine = create_store_engine(store_url)
    assert not is_current(engine)
    engine.dispose()

    engine = open_engine(store_url)
    try:
        assert is_current(engine)
        tables = set(inspect(engine).get_table_names())
        assert set(metadata.tables) <= tables
        # The migrations and the table definitions describe the same schema.
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_opening_twice_is_a_no_op(store_url):
    open_engine(store_url).dispose()
    engine = open_engine(store_url)
    assert is_current(engine)
    engine.dispose()

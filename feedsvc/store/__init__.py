"""Storage: tables, migrations and every query feedsvc makes. No SQL lives outside this package."""

from feedsvc.store.engine import open_engine, upgrade

__all__ = ["open_engine", "upgrade"]

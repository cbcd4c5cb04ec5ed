"""The `feedsvc` command. Each command group lives in its own module and registers itself on `app`."""

from __future__ import annotations

# Importing the command modules registers their commands on `app`.
from feedsvc.cli import (  # noqa: F401  (subscribers …, serve, db upgrade)
    build,
    digest,
    service,
    subscribers,
    web,
)
from feedsvc.cli.common import app


def main() -> None:
    app()

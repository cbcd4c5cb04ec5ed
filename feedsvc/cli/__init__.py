"""The `feedsvc` command. Each command group lives in its own module and registers itself on `app`."""

from __future__ import annotations

from feedsvc.cli.common import app

# Importing the command modules registers their commands on `app`.




def main() -> None:
    app()

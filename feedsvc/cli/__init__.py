"""The `feedsvc` command. Each command group lives in its own module and registers itself on `app`."""

from __future__ import annotations

from feedsvc.cli.common import app

# Importing the command modules registers their commands on `app`.
from feedsvc.cli import service  # noqa: F401,E402  (run, worker, init)
from feedsvc.cli import build  # noqa: F401,E402  (build, check)
from feedsvc.cli import digest  # noqa: F401,E402  (digest preview|send, deliveries)
from feedsvc.cli import subscribers, web  # noqa: F401,E402  (subscribers …, serve, db upgrade)




def main() -> None:
    app()

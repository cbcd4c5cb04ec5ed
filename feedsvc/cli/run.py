"""`feedsvc run` and `feedsvc worker`: the long-running service (`feedsvc.service`) from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from feedsvc.cli.common import EXIT_PROBLEMS, ConfigOption, app, errors, settings_or_exit


def _serve(config: Path | None, *, with_scheduler: bool, host: str | None = None, port: int | None = None) -> None:
    # The service pulls in every layer: imported here, not when `feedsvc --help` imports every command's module.
    from feedsvc import service
    from feedsvc.logging import configure_logging
    from feedsvc.store.leases import StoreInUse

    settings = settings_or_exit(config)
    configure_logging(settings.log)
    try:
        status = asyncio.run(service.run(settings, with_scheduler=with_scheduler, host=host, port=port))
    except (StoreInUse, service.CannotListen) as exc:
        errors.print(f"[bold red]cannot start:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_PROBLEMS) from None
    raise typer.Exit(status)


@app.command()
def run(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: web.port).")] = None,
) -> None:
    """Run the service: feeds rebuilt on every save, scheduled posts and digests, mail delivery, the web app."""
    _serve(config, with_scheduler=True, host=host, port=port)


@app.command()
def worker(config: ConfigOption = None) -> None:
    """Only deliver queued mail (run any number beside `feedsvc run` when the store is PostgreSQL)."""
    _serve(config, with_scheduler=False)

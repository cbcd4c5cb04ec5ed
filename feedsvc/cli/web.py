"""`feedsvc serve` (the HTTP app alone, without the scheduler) and `feedsvc db upgrade`."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from feedsvc.cli.common import ConfigOption, app, console, settings_or_exit
from feedsvc.logging import configure_logging
from feedsvc.store.engine import create_store_engine, is_current, upgrade
from feedsvc.web.app import create_app
from feedsvc.web.server import server_config

db_app = typer.Typer(help="The subscriber store.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: web.host).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port to listen on (default: web.port).")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the feeds, the subscribe pages and the admin API (no scheduling: see `feedsvc run`)."""
    settings = settings_or_exit(config)
    settings.web.host = host or settings.web.host
    settings.web.port = settings.web.port if port is None else port
    configure_logging(settings.log)
    uvicorn.Server(server_config(create_app(settings), settings, host=settings.web.host, port=settings.web.port)).run()


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Bring the store's schema up to date (feedsvc also does this by itself at start)."""
    settings = settings_or_exit(config)
    engine = create_store_engine(settings.store.database_url)
    try:
        if is_current(engine):
            console.print("the store is up to date")
            return
        upgrade(engine)
        console.print("the store is upgraded")
    finally:
        engine.dispose()

"""`feedsvc serve`: the HTTP app alone, without the scheduler."""

from __future__ import annotations

from typing import Annotated

import typer

from feedsvc.cli.common import ConfigOption, app, settings_or_exit


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: web.host).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port to listen on (default: web.port).")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve the feeds, the subscribe pages and the admin API (no scheduling: see `feedsvc run`)."""
    # Imported here, as in every command: `feedsvc --help` imports every command's module (cli/__init__.py).
    import uvicorn

    from feedsvc.logging import configure_logging
    from feedsvc.web.app import create_app
    from feedsvc.web.server import server_config

    settings = settings_or_exit(config)
    settings.web.host = host or settings.web.host
    settings.web.port = settings.web.port if port is None else port
    configure_logging(settings.log)
    uvicorn.Server(server_config(create_app(settings), settings, host=settings.web.host, port=settings.web.port)).run()


"""`feedsvc db upgrade`: the store's schema."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from feedsvc.cli.common import ConfigOption, app, console, settings_or_exit

db_app = typer.Typer(help="The subscriber store.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list the migrations an upgrade would run.")] = False,
) -> None:
    """Bring the store's schema up to date (feedsvc also does this at start; an SQLite store is copied first)."""
    # Imported here, as in every command: `feedsvc --help` imports every command's module (cli/__init__.py).
    from feedsvc.logging import configure_logging
    from feedsvc.store.engine import (
        connect,
        create_store_engine,
        current_revision,
        masked_url,
        pending_steps,
        upgrade_store,
    )

    settings = settings_or_exit(config)
    configure_logging(settings.log)
    url = settings.store.database_url
    engine = create_store_engine(url)
    try:
        connect(engine, settings.store.connect_timeout)
        steps = pending_steps(engine)
        current = current_revision(engine) or "empty"
        if not steps:
            console.print(f"the store at {escape(masked_url(url))} is up to date (schema {current})", highlight=False)
            return
        if dry_run:
            console.print(f"the store at {escape(masked_url(url))} is at schema {current}; an upgrade runs:", highlight=False)
            for step in steps:
                console.print(f"  {step.down_revision or 'empty'} -> {step.revision}: {escape(step.doc)}", highlight=False)
            return
        copy = upgrade_store(engine)
        saved = f" (the store before it: {copy})" if copy else ""
        console.print(f"the store is upgraded from schema {current} to {steps[-1].revision}{escape(saved)}", highlight=False)
    finally:
        engine.dispose()

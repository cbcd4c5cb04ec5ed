"""`feedsvc backup FILE` and `feedsvc restore FILE`: copies of the whole store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from feedsvc.cli.common import ConfigOption, app, console, settings_or_exit

if TYPE_CHECKING:  # the store is imported in the commands: `feedsvc --help` imports every command's module
    from feedsvc.store.backup import Summary


def _describe(summary: Summary) -> str:
    counts = ", ".join(f"{count} {table}" for table, count in sorted(summary.rows.items()))
    return f"schema {summary.revision}: {counts}"


@app.command("backup")
def backup_command(
    file: Annotated[Path, typer.Argument(help="The backup file to write (an SQLite database; replaced when complete).")],
    config: ConfigOption = None,
) -> None:
    """Write a consistent copy of the whole store, also while the service runs and sends."""
    from feedsvc.store.backup import backup

    settings = settings_or_exit(config)
    summary = backup(settings.store.database_url, file)
    console.print(f"backup written to {escape(str(file))}: {escape(_describe(summary))}", highlight=False)


@app.command("restore")
def restore_command(
    file: Annotated[Path, typer.Argument(help="A file written by `feedsvc backup`.")],
    config: ConfigOption = None,
) -> None:
    """Copy a backup into the configured store, which must be empty (stop feedsvc first)."""
    from feedsvc.store.backup import restore
    from feedsvc.store.engine import masked_url

    settings = settings_or_exit(config)
    summary = restore(file, settings.store.database_url, connect_timeout=settings.store.connect_timeout)
    console.print(
        f"restored {escape(str(file))} into {escape(masked_url(settings.store.database_url))}: {escape(_describe(summary))}",
        highlight=False,
    )

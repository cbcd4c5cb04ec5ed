"""Shared pieces of the CLI: the Typer app, the --config option, settings loading with exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from feedsvc.config import ConfigError, Settings, load_settings

app = typer.Typer(
    name="feedsvc",
    help="Feeds and email newsletters for a folder of blog posts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# soft_wrap: long lines (paths, URLs) are never broken in the middle when output is piped or logged.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Path to feedsvc.toml (default: $FEEDSVC_CONFIG, then ./feedsvc.toml, then the example site)."),
]


def settings_or_exit(config: Path | None) -> Settings:
    """Load the configuration, or print what is wrong with it and exit with status 2."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        errors.print(f"[bold red]configuration error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    if settings.config_path is None:
        errors.print("no feedsvc.toml found: using the bundled example site (`feedsvc init` writes your own)")
    return settings

"""Shared pieces of the CLI: the Typer app, the --config and --debug options, settings loading with exit code 2,
and the one-line report of a failure."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from feedsvc.errors import ExplainedFailure

if TYPE_CHECKING:  # the configuration's models (pydantic) are imported when a command loads them, not for --help
    from feedsvc.config import Settings

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

# Exit statuses (README "Exit status"): 1 is a problem at start or at run time, 2 a configuration to fix.
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Path to feedsvc.toml (default: $FEEDSVC_CONFIG, then ./feedsvc.toml, then FEEDSVC_ variables alone, "
        "then the bundled example site).",
    ),
]


@dataclass
class GlobalOptions:
    debug: bool = False


options = GlobalOptions()


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="On a failure, show the full traceback, not one line.")] = False,
) -> None:
    """Feeds and email newsletters for a folder of blog posts."""
    options.debug = debug


def describe_failure(exc: Exception) -> str:
    """One line saying what failed and what to do about it."""
    if isinstance(exc, ExplainedFailure):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename:
        reason = exc.strerror or str(exc)
        return (
            f"cannot use {exc.filename}: {reason} (feedsvc runs as uid {os.getuid()}: give that user the folder, "
            "e.g. with chown, or point the setting at a writable one)"
        )
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail} (run with `feedsvc --debug …` to see the traceback)"


def settings_or_exit(config: Path | None) -> Settings:
    """Load the configuration, or print what is wrong with it and exit with status 2."""
    from feedsvc.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        errors.print(f"[bold red]configuration error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    if settings.bundled_example:
        errors.print(
            "no feedsvc.toml and no FEEDSVC_ variables: running the bundled example site "
            "(`feedsvc init` writes your own config)"
        )
    started()
    return settings


def started() -> None:
    """The command has imported what it uses (a command imports most of it before it asks for its settings): those
    modules and the settings live as long as the process, so they are frozen out of the cyclic collector's passes,
    as `main` does with the CLI's own imports, and the collector, off since `main` began, is turned back on. A
    command that loads no settings calls this itself."""
    gc.freeze()
    gc.enable()

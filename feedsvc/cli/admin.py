"""`feedsvc admin password`: the dashboard's sign-in password."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from feedsvc.cli.common import EXIT_PROBLEMS, ConfigOption, app, console, errors, settings_or_exit
from feedsvc.vocabulary import DEFAULT_ADMIN_USERNAME

admin_app = typer.Typer(help="The dashboard at /admin/.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


def _new_password() -> str:
    """Asked twice on a terminal; otherwise the first line of standard input (scripts, tests, a secret store)."""
    if sys.stdin.isatty():
        return typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


@admin_app.command("password")
def password(
    user: Annotated[str, typer.Option(help="The account to create or change.")] = DEFAULT_ADMIN_USERNAME,
    config: ConfigOption = None,
) -> None:
    """Set the dashboard password (argon2id); read from standard input when that is not a terminal.
    Every session of the account ends."""
    # Imported here, as in every command: `feedsvc --help` imports every command's module (cli/__init__.py).
    from feedsvc import admins
    from feedsvc.store import open_engine

    settings = settings_or_exit(config)
    new_password = _new_password()
    try:
        admins.check_new_password(new_password)
    except admins.WeakPassword as exc:
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_PROBLEMS) from None
    engine = open_engine(settings.store.database_url)
    try:
        admins.set_password(engine, user, new_password, datetime.now(UTC))
    finally:
        engine.dispose()
    console.print(f"password set for {user!r}; sign in at {settings.web.base_url}/admin/", markup=False, highlight=False)

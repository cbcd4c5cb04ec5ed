"""`feedsvc config show`: the effective settings, secrets masked, each with where its value came from."""

from __future__ import annotations

import typer

from feedsvc.cli.common import ConfigOption, app, console, settings_or_exit

config_app = typer.Typer(help="The configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def show(config: ConfigOption = None) -> None:
    """Print every setting's effective value (secrets masked) and its source: file, environment or default."""
    # Imported here, as in every command: `feedsvc --help` imports every command's module (cli/__init__.py).
    from feedsvc.settings_view import origin, shown_settings

    settings = settings_or_exit(config)
    console.print(
        f"# effective configuration ({origin(settings)}; FEEDSVC_<SECTION>__<KEY> variables override)", markup=False
    )
    section = None
    for shown in shown_settings(settings):
        if shown.section != section:
            section = shown.section
            console.print(f"\n[{section}]", markup=False)
        console.print(f"{shown.key} = {shown.value}  # {shown.source}", markup=False, highlight=False)

"""`feedsvc config show`: the effective settings, secrets masked, each with where its value came from."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import typer

from feedsvc.cli.common import ConfigOption, app, console, settings_or_exit
from feedsvc.config import Settings

config_app = typer.Typer(help="The configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

SECRETS = {("web", "secret_key"), ("web", "admin_token")}
# URLs that may carry a password (user:password@host).
URLS_WITH_CREDENTIALS = {("store", "url"), ("mail", "smtp_url")}
MASK = "********"


def masked(section: str, key: str, value: Any) -> Any:
    if (section, key) in SECRETS and value:
        return MASK
    if (section, key) in URLS_WITH_CREDENTIALS and value:
        parts = urlsplit(value)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{MASK}@{host}"))
    return value


def source_note(settings: Settings, section: str, key: str) -> str:
    source = settings.source_of(section, key)
    if (section, key) == ("web", "secret_key") and not settings.web.secret_key:
        return f"{source}: generated into {settings.store.dir / 'secret.key'}"
    return source


@config_app.command("show")
def show(config: ConfigOption = None) -> None:
    """Print every setting's effective value (secrets masked) and its source: file, environment or default."""
    settings = settings_or_exit(config)
    origin = settings.config_path or ("the bundled example" if settings.bundled_example else "no file")
    console.print(f"# effective configuration ({origin}; FEEDSVC_<SECTION>__<KEY> variables override)", markup=False)
    for section, values in settings.model_dump(mode="json").items():
        console.print(f"\n[{section}]", markup=False)
        for key, value in values.items():
            shown = json.dumps(masked(section, key, value), ensure_ascii=False)
            console.print(f"{key} = {shown}  # {source_note(settings, section, key)}", markup=False, highlight=False)

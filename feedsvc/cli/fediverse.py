"""`feedsvc fediverse followers [list|count|remove|block]` and `feedsvc fediverse deliver`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from feedsvc.cli.common import EXIT_PROBLEMS, ConfigOption, app, console, errors, settings_or_exit

fediverse_app = typer.Typer(help="The blog's ActivityPub account: followers, deliveries.")
followers_app = typer.Typer(help="Who follows the blog from the fediverse.")
fediverse_app.add_typer(followers_app, name="followers")
app.add_typer(fediverse_app, name="fediverse")


def _engine(config):
    from feedsvc.store import open_engine

    settings = settings_or_exit(config)
    return settings, open_engine(settings.store.database_url)


@followers_app.callback(invoke_without_command=True)
def followers_list(ctx: typer.Context, config: ConfigOption = None) -> None:
    """List the followers: actor, since, inbox delivered to (tab separated)."""
    if ctx.invoked_subcommand is not None:
        return
    from feedsvc.store import fediverse as store

    _, engine = _engine(config)
    try:
        with engine.connect() as connection:
            rows = store.followers(connection)
    finally:
        engine.dispose()
    for row in rows:
        print("\t".join([row.actor, row.created_at.isoformat(timespec="seconds"), row.delivery_inbox]))
    errors.print(f"{len(rows)} followers", highlight=False)


@followers_app.command("count")
def followers_count(config: ConfigOption = None) -> None:
    """Print how many accounts follow the blog."""
    from feedsvc.store import fediverse as store

    _, engine = _engine(config)
    try:
        with engine.connect() as connection:
            print(store.follower_count(connection))
    finally:
        engine.dispose()


@followers_app.command("remove")
def followers_remove(
    actor: Annotated[str, typer.Argument(help="The follower's actor URL, as `followers` lists it.")],
    config: ConfigOption = None,
) -> None:
    """Remove a follower (it may follow again; `block` to stop that)."""
    from feedsvc.store import fediverse as store

    _, engine = _engine(config)
    try:
        with engine.begin() as connection:
            removed = store.remove_follower(connection, actor)
    finally:
        engine.dispose()
    if not removed:
        errors.print(f"[bold red]error:[/] {escape(actor)} does not follow the blog", highlight=False)
        raise typer.Exit(EXIT_PROBLEMS)
    console.print(f"removed {escape(actor)}", highlight=False)


@followers_app.command("block")
def followers_block(
    target: Annotated[str, typer.Argument(help="An actor URL, or a server's host name (e.g. spam.example) to block all of it.")],
    config: ConfigOption = None,
) -> None:
    """Block an actor or a whole server: its followers are removed, its requests refused from now on."""
    parts = urlsplit(target)
    if parts.scheme and parts.scheme not in ("http", "https"):
        errors.print(f"[bold red]error:[/] {escape(target)} is neither an http(s) actor URL nor a host name", highlight=False)
        raise typer.Exit(EXIT_PROBLEMS)
    pattern = target if parts.scheme else target.lower().strip("/")
    from feedsvc.store import fediverse as store

    _, engine = _engine(config)
    try:
        with engine.begin() as connection:
            removed = store.block(connection, pattern, datetime.now(UTC))
    finally:
        engine.dispose()
    console.print(f"blocked {escape(pattern)}; {removed} followers removed", highlight=False)


@fediverse_app.command("deliver")
def deliver(config: ConfigOption = None) -> None:
    """POST every activity due now to its inboxes, once (for cron; `feedsvc run` delivers continually)."""
    from feedsvc.fediverse import keys
    from feedsvc.fediverse.delivery import deliver as deliver_queue
    from feedsvc.service import instance_id

    settings, engine = _engine(config)
    try:
        report = asyncio.run(deliver_queue(settings, engine, keys.load_or_create(settings.store.dir), worker_id=instance_id()))
    finally:
        engine.dispose()
    console.print(f"{report.sent} sent, {report.retried} to retry, {report.failed} failed, {report.gone} gone", highlight=False)

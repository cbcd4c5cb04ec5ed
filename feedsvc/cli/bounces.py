"""`feedsvc bounces [fetch|clear]`: what mail systems reported, reading the inbound mailboxes once, lifting a
suppression."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from feedsvc.cli.common import EXIT_PROBLEMS, ConfigOption, app, console, errors, settings_or_exit
from feedsvc.vocabulary import MAIL_EVENT_KINDS

bounces_app = typer.Typer(help="Bounces, complaints and mailto unsubscribes reported by mail systems.")
app.add_typer(bounces_app, name="bounces")


@bounces_app.callback(invoke_without_command=True)
def recent(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help=f"Only this kind: {', '.join(MAIL_EVENT_KINDS)}.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 50,
    config: ConfigOption = None,
) -> None:
    """List recent events, newest first: time, address, kind, source, detail (tab separated)."""
    if ctx.invoked_subcommand is not None:
        return
    # Imported here, as in every command: `feedsvc --help` imports every command's module (cli/__init__.py).
    from feedsvc import mail_events
    from feedsvc.store import open_engine

    settings = settings_or_exit(config)
    if kind is not None and kind not in MAIL_EVENT_KINDS:
        errors.print(f"[bold red]error:[/] --kind must be one of {', '.join(MAIL_EVENT_KINDS)}", highlight=False)
        raise typer.Exit(EXIT_PROBLEMS)
    engine = open_engine(settings.store.database_url)
    try:
        events = mail_events.recent(engine, kind=kind, limit=limit)
    finally:
        engine.dispose()
    for event in events:
        print("\t".join([event.created_at.isoformat(timespec="seconds"), event.email, event.kind, event.source, event.detail]))
    errors.print(f"{len(events)} events", highlight=False)


@bounces_app.command("fetch")
def fetch(config: ConfigOption = None) -> None:
    """Read the configured Maildir and IMAP mailbox once (for cron; `feedsvc run` reads them continually)."""
    from feedsvc.inbound import enabled_sources
    from feedsvc.inbound.imap import Source as ImapSource
    from feedsvc.inbound.maildir import Source as MaildirSource
    from feedsvc.store import open_engine
    from feedsvc.tokens import tokens_for

    settings = settings_or_exit(config)
    engine = open_engine(settings.store.database_url)
    try:
        sources = [
            source for source in enabled_sources(settings, engine, tokens_for(settings))
            if isinstance(source, MaildirSource | ImapSource)
        ]
        if not sources:
            errors.print("[bold red]error:[/] neither inbound.maildir nor inbound.imap_url is set", highlight=False)
            raise typer.Exit(EXIT_PROBLEMS)
        for source in sources:
            handled = asyncio.run(asyncio.to_thread(source.process_new))
            console.print(f"{source.name}: {handled} messages handled", highlight=False)
    finally:
        engine.dispose()


@bounces_app.command("clear")
def clear(
    email: Annotated[str, typer.Argument(help="The bounced or complained address.")],
    config: ConfigOption = None,
) -> None:
    """Lift a bounce or complaint: the address becomes unsubscribed, and may subscribe again through the form."""
    from feedsvc import mail_events
    from feedsvc.store import open_engine
    from feedsvc.subscriptions import InvalidInput

    settings = settings_or_exit(config)
    engine = open_engine(settings.store.database_url)
    now = datetime.now(UTC)
    try:
        before = mail_events.clear(engine, email, now, event_key=f"clear:{email.lower()}:{now.isoformat()}")
    except InvalidInput as exc:
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_PROBLEMS) from None
    finally:
        engine.dispose()
    if before is None:
        errors.print(f"[bold red]error:[/] {escape(email)} is not on the list", highlight=False)
        raise typer.Exit(EXIT_PROBLEMS)
    if before in ("bounced", "complained"):
        console.print(f"{escape(email)} was {before}; now unsubscribed (may subscribe again through the form)", highlight=False)
    else:
        console.print(f"{escape(email)} is {before}: nothing to clear", highlight=False)

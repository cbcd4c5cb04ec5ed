"""`feedsvc subscribers add|remove|list|import|export`: the operator's hands on the subscriber list."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from feedsvc.cli.common import EXIT_PROBLEMS, ConfigOption, app, console, errors, settings_or_exit
from feedsvc.vocabulary import DEFAULT_FREQUENCY, FREQUENCIES, STATUSES

if TYPE_CHECKING:  # what the commands use is imported in them: `feedsvc --help` imports every command's module
    from sqlalchemy import Engine

    from feedsvc.config import Settings
    from feedsvc.subscriptions import Consent

subscribers_app = typer.Typer(help="Manage subscribers (add, remove, list, import, export).", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")

ConfirmedOption = Annotated[
    bool,
    typer.Option("--confirmed", help="You already hold these people's consent: active at once, no confirmation mail."),
]


@contextmanager
def _store(settings: Settings) -> Iterator[Engine]:
    from feedsvc.store import open_engine

    engine = open_engine(settings.store.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(EXIT_PROBLEMS)


def _operator_consent(source: str) -> Consent:
    from feedsvc.subscriptions import Consent

    return Consent(at=datetime.now(UTC), source=source, user_agent="feedsvc cli")


def _send_confirmations(settings: Settings, due: bool) -> int:
    if not due:
        return 0

    from feedsvc import subscriptions
    from feedsvc.mail.transport import transport_from_settings

    async def send() -> int:
        transport = transport_from_settings(settings)
        try:
            with _store(settings) as engine:
                return await subscriptions.send_confirmations(settings, engine, transport)
        finally:
            await transport.aclose()

    return asyncio.run(send())


@subscribers_app.command("add")
def add(
    email: Annotated[str, typer.Argument(help="The address to add.")],
    name: Annotated[str, typer.Option(help="The person's name.")] = "",
    frequency: Annotated[str, typer.Option(help=f"One of {', '.join(FREQUENCIES)}.")] = DEFAULT_FREQUENCY,
    tags: Annotated[str, typer.Option(help="Only posts with these tags (space or comma separated); empty: all.")] = "",
    confirmed: ConfirmedOption = False,
    config: ConfigOption = None,
) -> None:
    """Add an address: pending with a confirmation mail, or active at once with --confirmed."""
    from feedsvc import subscriptions
    from feedsvc.subscriptions import AddOutcome, InvalidInput

    settings = settings_or_exit(config)
    try:
        request = subscriptions.subscription_request(email, name, frequency, tags)
    except InvalidInput as exc:
        raise _fail(str(exc)) from None
    with _store(settings) as engine:
        result = subscriptions.add(
            engine, request, confirmed=confirmed, consent=_operator_consent("operator-import" if confirmed else "operator-add")
        )
    subscriber = result.subscriber
    if result.outcome is AddOutcome.SUPPRESSED:
        raise _fail(
            f"{subscriber.email} is {subscriber.status} ({subscriber.status_reason or 'no reason recorded'}); "
            "it is kept as a suppression and not resubscribed (the person can subscribe again through the form)"
        )
    if result.outcome is AddOutcome.EXISTS:
        console.print(f"{escape(subscriber.email)} is already on the list ({subscriber.status})", highlight=False)
        return
    if result.needs_confirmation:
        sent = _send_confirmations(settings, True)
        note = "confirmation mail sent" if sent else "the confirmation mail is queued for a retry (see the log)"
        console.print(f"added {escape(subscriber.email)} (pending: {note})", highlight=False)
        return
    console.print(f"{result.outcome.value} {escape(subscriber.email)} (active)", highlight=False)


@subscribers_app.command("remove")
def remove(
    email: Annotated[str, typer.Argument(help="The address to remove.")],
    forget: Annotated[
        bool, typer.Option("--forget", help="Erase the address entirely (GDPR erasure) instead of keeping it as a suppression.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Unsubscribe an address (it stays as a suppression), or erase it with --forget."""
    from feedsvc import subscriptions
    from feedsvc.subscriptions import InvalidInput

    settings = settings_or_exit(config)
    with _store(settings) as engine:
        try:
            removed = subscriptions.remove(engine, email, datetime.now(UTC), forget=forget)
        except InvalidInput as exc:
            raise _fail(str(exc)) from None
    if removed is None:
        raise _fail(f"{email} is not on the list")
    if forget:
        console.print(f"erased {escape(removed.email)}", highlight=False)
    else:
        console.print(f"{escape(removed.email)} is now {removed.status}", highlight=False)


@subscribers_app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help=f"Only this status: {', '.join(STATUSES)}.")] = None,
    search: Annotated[str | None, typer.Option(help="Part of the address or the name.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 1000,
    config: ConfigOption = None,
) -> None:
    """List subscribers, one per line: email, status, frequency, tags, name (tab separated)."""
    from feedsvc import subscriptions

    settings = settings_or_exit(config)
    if status is not None and status not in STATUSES:
        raise _fail(f"--status must be one of {', '.join(STATUSES)}")
    with _store(settings) as engine:
        total, found = subscriptions.search(engine, status=status, query=search, limit=limit)
    for subscriber in found:
        # Plain print, not rich: the list is for pipes and scripts, and names must not be read as markup.
        print("\t".join([subscriber.email, subscriber.status, subscriber.frequency, ",".join(subscriber.tags), subscriber.name]))
    errors.print(f"{len(found)} of {total} subscribers", highlight=False)


@subscribers_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CSV with a header row naming at least `email` (also name, frequency, tags, status).")],
    confirmed: ConfirmedOption = False,
    config: ConfigOption = None,
) -> None:
    """Import a CSV (an export restores its list). Bad rows are reported by line and skipped; suppressed
    addresses are not resubscribed; running an interrupted import again finishes it."""
    from rich.progress import Progress

    from feedsvc import subscriptions
    from feedsvc.subscriptions import ImportFileError

    settings = settings_or_exit(config)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror or exc}") from None
    with _store(settings) as engine, Progress(console=errors, transient=True) as progress:
        task = progress.add_task("importing", total=None)
        try:
            report = subscriptions.import_csv(
                engine, data, confirmed=confirmed, consent=_operator_consent("operator-import"),
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except ImportFileError as exc:
            raise _fail(f"{file}: {exc}") from None
    sent = _send_confirmations(settings, report.pending > 0)
    for line, reason in report.refused:
        errors.print(f"{escape(str(file))}:{line}: {escape(reason)}", highlight=False)
    console.print(
        f"imported {report.imported} ({report.pending} pending, {sent} confirmation mails sent), "
        f"updated {report.updated}, skipped {report.skipped} (already there or kept as suppressions), "
        f"refused {len(report.refused)}",
        highlight=False,
    )
    if report.refused:
        raise typer.Exit(EXIT_PROBLEMS)


@subscribers_app.command("export")
def export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of standard output.")] = None,
    config: ConfigOption = None,
) -> None:
    """Export every subscriber (suppressions included) as CSV."""
    from feedsvc import subscriptions

    settings = settings_or_exit(config)
    with _store(settings) as engine:
        if out is None:
            count = subscriptions.export_csv(engine, sys.stdout)
        else:
            with out.open("w", encoding="utf-8", newline="") as handle:
                count = subscriptions.export_csv(engine, handle)
    errors.print(f"exported {count} subscribers" + (f" to {out}" if out else ""), highlight=False)

"""`feedsvc digest preview|send` and `feedsvc deliveries`: the newsletter from the command line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from feedsvc.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    ConfigOption,
    app,
    console,
    describe_failure,
    errors,
    settings_or_exit,
)

if TYPE_CHECKING:  # what the commands use is imported in them: `feedsvc --help` imports every command's module
    from feedsvc.config import Settings
    from feedsvc.digests import EditionSummary
    from feedsvc.store.leases import StoreInUse

digest_app = typer.Typer(help="Email digests: preview the next one, send what is due.", no_args_is_help=True)
app.add_typer(digest_app, name="digest")

log = logging.getLogger("feedsvc.digests")

PREVIEW_NAME = "digest-preview"


@digest_app.command("preview")
def preview_command(
    config: ConfigOption = None,
    subscriber: Annotated[
        str | None, typer.Option("--subscriber", help="Preview what this subscriber gets next (their frequency and tags).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder to write the preview into.", file_okay=False)] = Path("."),
    open_browser: Annotated[bool, typer.Option("--open", help="Open the HTML preview in a browser.")] = False,
) -> None:
    """Write the next digest as .html, .txt and .eml files, without storing or sending anything."""
    # Imported here: `digest send` has no use for them, and every module is start-up time of a send.
    import email
    import email.policy
    import webbrowser

    from feedsvc.digests.preview import PreviewError, preview
    from feedsvc.posts import Collection
    from feedsvc.store import open_engine
    from feedsvc.subscriptions import InvalidInput

    settings = settings_or_exit(config)
    engine = open_engine(settings.store.database_url)
    try:
        result = preview(settings, engine, Collection(settings).scan(), datetime.now(UTC), email=subscriber)
    except (PreviewError, InvalidInput) as exc:
        errors.print(f"[bold red]cannot preview:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(EXIT_PROBLEMS) from None
    finally:
        engine.dispose()
    message = email.message_from_bytes(result.message, policy=email.policy.default)
    out.mkdir(parents=True, exist_ok=True)
    paths = {suffix: out / f"{PREVIEW_NAME}.{suffix}" for suffix in ("html", "txt", "eml")}
    for suffix, subtype in (("html", "html"), ("txt", "plain")):
        part = message.get_body((subtype,))
        assert part is not None, f"a digest has a {subtype} part"
        # The mail's CRLF line ends become the platform's in a file meant for people.
        paths[suffix].write_text(part.get_content().replace("\r\n", "\n"), encoding="utf-8")
    paths["eml"].write_bytes(result.message)
    if result.sample:
        console.print(f"nothing new for {escape(result.to_email)} yet: previewing with the newest posts", highlight=False)
    console.print(
        f"{result.frequency} digest for {escape(result.to_email)}, {len(result.posts)} posts: "
        f"{escape(str(message['Subject']))}",
        highlight=False,
        soft_wrap=True,
    )
    for path in paths.values():
        console.print(f"  {escape(str(path))}", highlight=False, soft_wrap=True)
    if open_browser:
        webbrowser.open(paths["html"].resolve().as_uri())


@digest_app.command("send")
def send_command(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be announced and queued; store and send nothing.")
    ] = False,
    include_archive: Annotated[
        bool,
        typer.Option(
            "--include-archive",
            help="Mail the posts that were already there on the first run (normally recorded, never mailed).",
        ),
    ] = False,
) -> None:
    """Announce new posts, create the digests due now and send every queued mail.

    Exits non-zero when mail due now remains queued: stopped by a signal, or held by another process (a running
    service on the same SQLite store, or a process whose claims have not expired yet, alive or dead).
    """
    from feedsvc.logging import configure_logging
    from feedsvc.outputs import POSTS, Rebuild, run_outputs
    from feedsvc.posts import Collection
    from feedsvc.store import deliveries, editions, leases, open_engine

    settings = settings_or_exit(config)
    configure_logging(settings.log)
    guard = None if dry_run else leases.single_instance_guard(settings.store.database_url)
    if guard is not None:
        try:
            guard.acquire()
        except leases.StoreInUse as exc:
            _refuse_in_use(settings, exc)
    worker_id = f"cli-{socket.gethostname()}-{os.getpid()}"
    engine = open_engine(settings.store.database_url)
    try:
        scan = Collection(settings).scan()
        skipped = [problem for problem in scan.problems if problem.severity == "error"]
        for problem in skipped:
            errors.print(f"[yellow]skipped[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
        now = datetime.now(UTC)
        rebuild = Rebuild(settings, engine, now, scan, include_archive=include_archive, dry_run=dry_run)
        outcome = asyncio.run(run_outputs(rebuild, POSTS))
        for failure in outcome.failed:
            errors.print(
                f"[bold red]error:[/] {failure.output}: {escape(describe_failure(failure.exception))}", highlight=False
            )
        if outcome.failed:
            raise typer.Exit(EXIT_PROBLEMS)
        summaries = rebuild.editions
        if dry_run:
            _print_plan(summaries, engine, now)
            raise typer.Exit(EXIT_OK)
        with engine.connect() as connection:
            waiting = editions.unfinished_editions(connection)
        stopped = _run(_send(settings, engine, worker_id))
        _log_editions(engine, {summary.edition_id: summary.edition_key for summary in summaries} | waiting)
        with engine.connect() as connection:
            held = deliveries.held_by_others(connection, worker_id, datetime.now(UTC))
    finally:
        engine.dispose()
        if guard is not None:
            guard.release()
    if held.count:
        until = held.until.isoformat(timespec="seconds") if held.until else "?"
        errors.print(
            f"[bold red]{held.count} mails remain queued[/], claimed by {escape(', '.join(held.holders))} until {until}: "
            "that process is sending them, or it died and they go out with the first run after that time",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_PROBLEMS if stopped or held.count else EXIT_OK)


def _refuse_in_use(settings: Settings, exc: StoreInUse) -> None:
    """Another process runs on this SQLite store and sends its queue: say so, and whether mail is waiting."""
    from feedsvc.store import deliveries, open_engine

    engine = open_engine(settings.store.database_url)
    try:
        with engine.connect() as connection:
            counts = deliveries.count_by_state(connection)
    finally:
        engine.dispose()
    queued = sum(counts[state] for state in (*deliveries.WAITING, "sending"))
    errors.print(f"[bold red]not sending:[/] {escape(str(exc))}; {queued} mails queued", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_PROBLEMS if queued else EXIT_OK)


def _run(coroutine: Coroutine[Any, Any, bool]) -> bool:
    """On uvloop when it is installed (it comes with uvicorn[standard]): its transports move each mail in C,
    a sixth of a send's CPU on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


async def _send(settings: Settings, engine, worker_id: str) -> bool:
    """Drain the queue with a progress bar. Returns whether it was stopped by a signal before the end."""
    from feedsvc.mail.queue import drain
    from feedsvc.mail.transport import transport_from_settings

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    transport = transport_from_settings(settings)
    try:
        with _progress_bar() as on_progress:
            report = await drain(
                settings,
                engine,
                transport,
                worker_id=worker_id,
                stop=stop,
                on_progress=on_progress,
                store_inline=True,  # this process only sends: no thread hand-off per store call
            )
    finally:
        await transport.aclose()
    console.print(
        f"sent {report.sent}, to retry {report.retried}, failed {report.failed}, bounced {report.bounced}",
        highlight=False,
    )
    return stop.is_set()


@contextmanager
def _progress_bar() -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal, as `on_progress` for `drain`. None elsewhere: the bar is transient, so a pipe
    or a log never shows it, and rich's progress module is start-up time spent for nothing there."""
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("sending"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("sending", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield on_progress


def _print_plan(summaries: list[EditionSummary], engine, now: datetime) -> None:
    from feedsvc.store import deliveries

    for summary in summaries:
        console.print(
            f"would queue {summary.deliveries} × {escape(summary.edition_key)} ({len(summary.post_ids)} posts)",
            highlight=False,
            soft_wrap=True,
        )
    with engine.connect() as connection:
        due = deliveries.count_due(connection, now)
    console.print(f"dry run: {len(summaries)} new editions; {due} mails already queued; nothing sent", highlight=False)


def _log_editions(engine, keys: dict[int, str]) -> None:
    """One log line per edition this run touched, with its deliveries by state."""
    if not keys:
        return
    from feedsvc.logging import fields
    from feedsvc.store import editions

    with engine.connect() as connection:
        states = editions.delivery_states(connection, list(keys))
    for edition_id, key in keys.items():
        log.info("digest.sent", extra=fields(edition=key, **states[edition_id]))


@app.command("deliveries")
def deliveries_command(
    config: ConfigOption = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Queue again the mails that ran out of attempts (after a long relay outage); sent by the next run.",
        ),
    ] = False,
) -> None:
    """How many mails are queued, sending, to retry, failed, bounced and sent."""
    from rich.table import Table

    from feedsvc.store import deliveries, open_engine

    settings = settings_or_exit(config)
    engine = open_engine(settings.store.database_url)
    try:
        with engine.begin() as connection:
            if retry_failed:
                requeued = deliveries.requeue_failed(connection, datetime.now(UTC))
                console.print(f"{requeued} failed deliveries queued again")
            counts = deliveries.count_by_state(connection)
    finally:
        engine.dispose()
    table = Table("state", "deliveries")
    for state, number in counts.items():
        table.add_row(state, str(number))
    console.print(table)

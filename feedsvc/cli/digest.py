"""`feedsvc digest preview|send` and `feedsvc deliveries`: the newsletter from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

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
    from feedsvc.mail.queue import DrainReport
    from feedsvc.store.leases import StoreInUse

digest_app = typer.Typer(help="Email digests: preview the next one, send what is due.", no_args_is_help=True)
app.add_typer(digest_app, name="digest")

log = logging.getLogger("feedsvc.digests")

T = TypeVar("T")

PREVIEW_NAME = "digest-preview"

# The signals that stop a send: its mails in flight finish and are recorded, its unsent claims are given back.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# A second sending process pays from this many batches due on (2,000 mails with the default batch_size). The fork
# costs ~0.1 s of CPU (pages copied on write in both processes) and each process's mails cost ~15 % more CPU than
# in one (smaller waves of SMTP work per wake-up, more store transactions), against half the mails per core; at
# 1,000 mails two processes were measured no faster than one. The queue is claimed a batch at a time, so the last
# batch may leave one process sending alone: at ten batches that is a tenth of the run at most.
HELPER_MIN_BATCHES = 10
# How often the progress bar shows the helper's count once this process has nothing left to send.
PROGRESS_INTERVAL = 0.1


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
    helper: _Helper | None = None
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
            due = deliveries.count_due(connection, datetime.now(UTC))
        connections, helper = _start_helper(settings, engine, due)
        stopped, helper_ended = _run(_send(settings, engine, worker_id, connections, helper, due))
        _log_editions(engine, {summary.edition_id: summary.edition_key for summary in summaries} | waiting)
        with engine.connect() as connection:
            held = deliveries.held_by_others(connection, worker_id, datetime.now(UTC))
    finally:
        if helper is not None:
            helper.reap()
        engine.dispose()
        if guard is not None:
            guard.release()
    if helper_ended:
        errors.print(f"[bold red]{escape(helper_ended)}[/]", highlight=False, soft_wrap=True)
    if held.count:
        until = held.until.isoformat(timespec="seconds") if held.until else "?"
        errors.print(
            f"[bold red]{held.count} mails remain queued[/], claimed by {escape(', '.join(held.holders))} until {until}: "
            "that process is sending them, or it died and they go out with the first run after that time",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_PROBLEMS if stopped or helper_ended or held.count else EXIT_OK)


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


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """On uvloop when it is installed (it comes with uvicorn[standard]): its transports move each mail in C,
    a sixth of a send's CPU on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


async def _send(
    settings: Settings, engine, worker_id: str, connections: int, helper: _Helper | None, due: int
) -> tuple[bool, str]:
    """Drain the queue with a progress bar, beside the helper if there is one, and print what became of the mails.

    Returns whether it was stopped by a signal before the end, and how the helper ended when that went wrong
    ("" when it finished its drain, or when there is none)."""
    # SIGINT and SIGTERM stop both processes: a terminal's Ctrl-C reaches both, a `kill` of this one is passed on.
    forward = helper.stop if helper is not None else None
    with _progress_bar() as show:
        counted = _Progress(show, helper, due)
        report, stopped = await _drain_until_signalled(
            settings, engine, worker_id, connections, counted.on_progress if show else None, forward
        )
        ended = ""
        if helper is not None:
            report, ended = await helper.wait(report, stopped, counted.refresh if show else None)
    console.print(
        f"sent {report.sent}, to retry {report.retried}, failed {report.failed}, bounced {report.bounced}",
        highlight=False,
    )
    return stopped, ended


async def _drain_until_signalled(
    settings: Settings,
    engine,
    worker_id: str,
    connections: int,
    on_progress: Callable[[int, int], None] | None,
    on_signal: Callable[[int], None] | None = None,
) -> tuple[DrainReport, bool]:
    """Drain the queue until it is empty or SIGINT/SIGTERM arrives (then `on_signal(signum)` too); return the
    report and whether a signal stopped it. The drain works in waves of `mail.connections` as always; the relay
    gets `connections` sessions from this process (its share, beside the helper's)."""
    from feedsvc.mail.queue import drain
    from feedsvc.mail.transport import transport_from_settings

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stopping(signum: int) -> None:
        stop.set()
        if on_signal is not None:
            on_signal(signum)

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stopping, signum)
    # Blocked from before the helper was forked until now, so that neither process missed one or died of one.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    mail = settings.mail.model_copy(update={"connections": connections})
    transport = transport_from_settings(settings.model_copy(update={"mail": mail}))
    try:
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
    return report, stop.is_set()


def _start_helper(settings: Settings, engine, due: int) -> tuple[int, _Helper | None]:
    """Fork the helper, a second process sending the same queue, when it pays. Returns this process's share of the
    relay's `mail.connections`, and the helper. In the helper itself it does not return: it drains and exits.

    One process spends ~190 µs of CPU a mail (personalising, the store, its SMTP sessions' Python), so a send is
    bound by one core long before the relay is. The queue's claims already let several processes drain it (as the
    service's workers on PostgreSQL do): the helper, with its own worker id and half the connections, takes the
    other core, and the relay still sees `mail.connections` sessions in all. A fork, not a new process: the helper
    starts at once with what this one imported and read. Not with a rate limit: the limit, not the CPU, bounds such
    a send, and it is one limit over all connections.
    """
    mail = settings.mail
    share = mail.connections // 2
    if (
        not share
        or mail.rate_limit
        or due < HELPER_MIN_BATCHES * mail.batch_size
        or (os.cpu_count() or 1) < 2
        or threading.active_count() > 1  # a forked child could inherit a lock no thread of its own releases
    ):
        return mail.connections, None
    # Each process opens its own store connections: none may be shared across the fork.
    engine.dispose()
    counts = _SharedReport()
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    # Blocked until each process has its handlers (`_drain_until_signalled`): a Ctrl-C in between stops both alike.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    pid = os.fork()
    if pid == 0:
        _help(settings, engine, share, parent, counts)
    return mail.connections - share, _Helper(pid, counts)


def _help(settings: Settings, engine, connections: int, parent: int, counts: _SharedReport) -> NoReturn:
    """The helper's whole life: drain the queue beside its parent, leave its report in `counts`, exit."""
    from feedsvc.child_processes import die_with_parent

    code = EXIT_PROBLEMS
    try:
        # Killed with its parent, whatever kills that: no orphan sends beside the next run. (Elsewhere than on
        # Linux an orphan drains the queue to its end.) Its claims are then a dead process's: see held_by_others.
        die_with_parent()
        if os.getppid() == parent:  # else the parent died before this process asked to die with it
            worker_id = f"cli-{socket.gethostname()}-{os.getpid()}"
            report, stopped = _run(_drain_until_signalled(settings, engine, worker_id, connections, counts.progress))
            counts.finish(report, stopped)
            engine.dispose()
            code = EXIT_OK
    except Exception as exc:
        errors.print(f"[bold red]error:[/] second sending process: {escape(describe_failure(exc))}", highlight=False)
    finally:
        sys.stderr.flush()
        os._exit(code)  # not the parent's exit path: its atexit handlers, its buffers, its lock file


class _SharedReport:
    """The helper's outcomes in memory shared across the fork: how many it has recorded so far (for the progress
    bar), then its whole report once its drain has ended."""

    _LAYOUT = struct.Struct("qqqqqqq")  # done, ended (0: not yet), DrainReport's five counts
    _FINISHED, _STOPPED = 1, 2

    def __init__(self) -> None:
        self.memory = mmap.mmap(-1, self._LAYOUT.size)  # anonymous and shared: the child writes, the parent reads

    def progress(self, done: int, _total: int) -> None:
        struct.pack_into("q", self.memory, 0, done)

    def finish(self, report: DrainReport, stopped: bool) -> None:
        ended = self._STOPPED if stopped else self._FINISHED
        self._LAYOUT.pack_into(self.memory, 0, report.done, ended, *astuple(report))

    def done(self) -> int:
        return struct.unpack_from("q", self.memory, 0)[0]

    def ended(self) -> tuple[DrainReport | None, bool]:
        """The helper's report (None while its drain has not ended) and whether a signal stopped it."""
        from feedsvc.mail.queue import DrainReport

        _, ended, *numbers = self._LAYOUT.unpack_from(self.memory, 0)
        return (DrainReport(*numbers) if ended else None), ended == self._STOPPED


class _Helper:
    """The helper, as the process that forked it sees it."""

    def __init__(self, pid: int, counts: _SharedReport) -> None:
        self.pid = pid
        self.counts = counts
        self.reaped = False  # once waited for, its pid may be another process's

    def stop(self, signum: int) -> None:
        """Pass a stopping signal on, while the process is ours to signal."""
        if not self.reaped:
            os.kill(self.pid, signum)

    async def wait(
        self, report: DrainReport, stopped: bool, refresh: Callable[[], None] | None
    ) -> tuple[DrainReport, str]:
        """Wait for the helper to end, moving the progress bar meanwhile. Returns `report` (this process's; `stopped`:
        by a signal) with the helper's added, and how the helper ended when that went wrong ("" when its drain
        ended as it should: to the end, or stopped with this process)."""
        reaping = asyncio.ensure_future(asyncio.to_thread(os.waitpid, self.pid, 0))
        while not reaping.done():
            await asyncio.wait({reaping}, timeout=PROGRESS_INTERVAL)
            if refresh is not None:
                refresh()
        self.reaped = True
        return self._outcome(report, stopped, os.waitstatus_to_exitcode(reaping.result()[1]))

    def reap(self) -> None:
        """Stop the helper and wait for it, unless that was done (for a send that ended by an exception)."""
        if not self.reaped:
            self.stop(signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):  # reaped by `wait`'s thread, whose loop the exception ended
                os.waitpid(self.pid, 0)
            self.reaped = True

    def _outcome(self, report: DrainReport, stopped_too: bool, status: int) -> tuple[DrainReport, str]:
        from feedsvc.mail.queue import DrainReport

        theirs, stopped = self.counts.ended()
        if theirs is not None:
            report = DrainReport(*(ours + its for ours, its in zip(astuple(report), astuple(theirs), strict=True)))
        if status == 0 and theirs is not None and (stopped_too or not stopped):
            return report, ""
        who = f"the second sending process (pid {self.pid})"
        if status == 0:
            return report, f"{who} was stopped by a signal: the mails it gave back remain queued"
        how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"ended with status {status}"
        return report, (
            f"{who} {how} after {self.counts.done()} of its mails were recorded; those it had claimed go out with the "
            "first run after its claims expire"
        )


class _Progress:
    """The progress bar's count: this process's outcomes and the helper's."""

    def __init__(self, show: Callable[[int, int], None] | None, helper: _Helper | None, due: int) -> None:
        self.show = show
        self.helper = helper
        self.done = 0
        # What was due before the fork: this process's drain counts what is due when it begins, which leaves out
        # what the helper has claimed by then.
        self.total = due

    def on_progress(self, done: int, total: int) -> None:
        self.done, self.total = done, max(self.total, total)
        self.refresh()

    def refresh(self) -> None:
        done = self.done + (self.helper.counts.done() if self.helper is not None else 0)
        if self.show is not None:
            self.show(done, max(self.total, done))


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

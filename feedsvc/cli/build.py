"""`feedsvc build` (write the feeds once, then the outputs reacting to feeds) and `feedsvc check` (lint the posts,
write nothing)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from feedsvc.cli.common import (
    EXIT_CONFIG,
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
    from feedsvc.posts import Problem

PostsOption = Annotated[
    Path | None, typer.Option("--posts", help="Folder of posts (overrides posts.dir).", file_okay=False)
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Folder to write the feeds into (overrides feeds.output_dir).", file_okay=False),
]


@app.command("build")
def build_command(config: ConfigOption = None, posts: PostsOption = None, out: OutOption = None) -> None:
    """Write the feeds (RSS, Atom, JSON Feed) once and ping the WebSub hub for those that changed (with
    feeds.websub_hub). Exit 1 when posts had to be skipped or an output failed."""
    from feedsvc import feeds
    from feedsvc.outputs import FEEDS, Rebuild, run_outputs

    settings = _settings(config, posts, out)
    result = feeds.build(settings)
    report = result.report
    written = (*report.written, *report.removed)
    rebuild = Rebuild(settings, None, datetime.now(UTC), result.scan, written=written)
    outcome = asyncio.run(run_outputs(rebuild, FEEDS))
    shown = _shown(settings.feeds.output_dir)
    console.print(
        f"feeds in {escape(shown)}: {len(report.written)} written, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed",
        highlight=False,
        soft_wrap=True,
    )
    counts = ", ".join(f"{feed_format.label} {report.count(feed_format.file_name)}" for feed_format in feeds.FORMATS)
    console.print(f"  {counts} (site-wide + one per tag)", highlight=False)
    tagged = feeds.tag_counts(result.published)
    tags = ", ".join(f"{name} ({count})" for _, (name, count) in sorted(tagged.items()))
    console.print(f"  tags: {escape(tags) or '(none)'}", highlight=False, soft_wrap=True)
    console.print(
        f"  posts: {len(result.published)} published of {len(result.scan.posts)} read", highlight=False
    )
    for name, count in outcome.done.items():
        console.print(f"  {name}: {count}", highlight=False)
    _print_problems(result.problems, error_label="skipped")
    if report.error:
        errors.print(f"[bold red]feeds not written:[/] {escape(report.error)}", highlight=False, soft_wrap=True)
    for failure in outcome.failed:
        errors.print(
            f"[bold red]{failure.output} failed:[/] {escape(describe_failure(failure.exception))}", highlight=False
        )
    raise typer.Exit(EXIT_PROBLEMS if result.skipped or report.error or outcome.failed else EXIT_OK)


@app.command("check")
def check_command(config: ConfigOption = None, posts: PostsOption = None) -> None:
    """Check the posts without writing anything. Exit 1 when a post has an error."""
    from feedsvc.posts import Collection
    from feedsvc.posts.lint import lint

    settings = _settings(config, posts, None)
    scan = Collection(settings).scan()
    # lint() may repeat what the scan found; each problem is shown once.
    problems = list(dict.fromkeys([*scan.problems, *lint(settings, scan)]))
    _print_problems(problems, error_label="error")
    failed = sum(1 for problem in problems if problem.severity == "error")
    console.print(
        f"{len(scan.posts)} posts checked: {failed} errors, {len(problems) - failed} warnings", highlight=False
    )
    raise typer.Exit(EXIT_PROBLEMS if failed else EXIT_OK)


def _settings(config: Path | None, posts: Path | None, out: Path | None) -> Settings:
    settings = settings_or_exit(config)
    if posts is not None:
        settings.posts = settings.posts.model_copy(update={"dir": posts.resolve()})
    if out is not None:
        settings.feeds = settings.feeds.model_copy(update={"output_dir": out.resolve()})
    if not settings.posts.dir.is_dir():
        errors.print(
            f"[bold red]configuration error:[/] posts.dir: folder {escape(str(settings.posts.dir))} does not exist",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_CONFIG)
    return settings


def _print_problems(problems: list[Problem], error_label: str) -> None:
    for problem in problems:
        label = f"[red]{error_label}[/]" if problem.severity == "error" else "[yellow]warning[/]"
        console.print(f"{label} {escape(str(problem))}", highlight=False, soft_wrap=True)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)

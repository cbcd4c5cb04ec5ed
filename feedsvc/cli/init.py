"""`feedsvc init`: a new site's configuration, templates and first post."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from feedsvc.cli.common import EXIT_PROBLEMS, app, console, errors, started
from feedsvc.resources import bundled_path

INIT_TEMPLATE = Path(__file__).resolve().parent / "init_template.toml"

SAMPLE_POST = """---
title: Hello, world
date: {date}
tags: [news]
summary: The first post of this blog.
---

This is the first post. Write posts as Markdown files in this folder; `feedsvc run` publishes each one
as soon as it is saved (or at its `date`, when that lies in the future).
"""


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new site (created if missing).")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing feedsvc.toml and templates.")] = False,
    site: Annotated[
        Path | None,
        typer.Option("--from", help="A Hugo or Jekyll site folder: its posts, read as its generator publishes them."),
    ] = None,
) -> None:
    """Write a commented feedsvc.toml, the default templates to edit, and a sample post (or, with --from, the
    settings of an existing site)."""
    # Imported here, as in every command: `feedsvc --help` imports every command's module (cli/__init__.py).
    from feedsvc.config import CONFIG_FILENAME, ConfigError

    started()  # it loads no settings, which is where the other commands say so
    config_path = directory / CONFIG_FILENAME
    templates = directory / "templates"
    existing = [path for path in (config_path, templates) if path.exists()]
    if existing and not force:
        names = ", ".join(str(path) for path in existing)
        errors.print(f"[bold red]not overwriting[/] {escape(names)} (use --force to replace)", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_PROBLEMS)
    template = INIT_TEMPLATE.read_text(encoding="utf-8")
    if site is not None:
        from feedsvc.cli.init_from import config_from_site

        try:
            template, generator, notes = config_from_site(template, site.resolve(), directory.resolve())
        except ConfigError as exc:
            errors.print(f"[bold red]cannot init from {escape(str(site))}:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_PROBLEMS) from None
        console.print(f"Found a {generator} site in {escape(str(site))}: its posts are read as {generator} publishes them.")
        for note in notes:
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    directory.mkdir(parents=True, exist_ok=True)
    config_path.write_text(template, encoding="utf-8")
    shutil.copytree(bundled_path("templates"), templates, dirs_exist_ok=True)
    posts = directory / "posts"
    sample = posts / "hello-world.md"
    if site is None and not sample.exists():
        posts.mkdir(exist_ok=True)
        sample.write_text(SAMPLE_POST.format(date=datetime.now(UTC).date().isoformat()), encoding="utf-8")

    wrote = f" and {escape(str(sample))}" if site is None else ""
    console.print(f"Wrote {escape(str(config_path))}, {escape(str(templates))}/{wrote}.")
    console.print("Next steps:")
    for step in (
        f"Edit {config_path}: at least [site] title and url, and [mail] from_address.",
        f"cd {directory} && feedsvc check      # are the posts all right?",
        "feedsvc run                           # feeds, subscribe page and mail on http://127.0.0.1:8080",
        "Mail goes to the Maildir subscribers/outbox until you set [mail] smtp_url.",
    ):
        console.print(f"  • {escape(step)}", highlight=False)

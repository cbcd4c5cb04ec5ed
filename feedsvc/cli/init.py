"""`feedsvc init`: a new site's configuration, templates and first post."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from feedsvc.cli.common import EXIT_PROBLEMS, app, console, errors
from feedsvc.config import CONFIG_FILENAME
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
) -> None:
    """Write a commented feedsvc.toml, the default templates to edit, and a sample post."""
    config_path = directory / CONFIG_FILENAME
    templates = directory / "templates"
    existing = [path for path in (config_path, templates) if path.exists()]
    if existing and not force:
        names = ", ".join(str(path) for path in existing)
        errors.print(f"[bold red]not overwriting[/] {escape(names)} (use --force to replace)", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_PROBLEMS)
    directory.mkdir(parents=True, exist_ok=True)
    config_path.write_text(INIT_TEMPLATE.read_text(encoding="utf-8"), encoding="utf-8")
    shutil.copytree(bundled_path("templates"), templates, dirs_exist_ok=True)
    posts = directory / "posts"
    posts.mkdir(exist_ok=True)
    sample = posts / "hello-world.md"
    if not sample.exists():
        sample.write_text(SAMPLE_POST.format(date=datetime.now(UTC).date().isoformat()), encoding="utf-8")

    console.print(f"Wrote {escape(str(config_path))}, {escape(str(templates))}/ and {escape(str(sample))}.")
    console.print("Next steps:")
    for step in (
        f"Edit {config_path}: at least [site] title and url, and [mail] from_address.",
        f"cd {directory} && feedsvc check      # are the posts all right?",
        "feedsvc run                           # feeds, subscribe page and mail on http://127.0.0.1:8080",
        "Mail goes to the Maildir subscribers/outbox until you set [mail] smtp_url.",
    ):
        console.print(f"  • {escape(step)}", highlight=False)

"""What the whole-process commands import: each runs as a real `feedsvc` process, which then reports the modules
it loaded. Start-up is most of a `digest send` to 1,000 subscribers and a third of a small build
(benchmarks/startup.py); these keep the libraries a command has no use for from coming back into its start-up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from conftest import add_subscribers, write_post

from feedsvc.digests import run_due
from feedsvc.posts import Collection
from feedsvc.store import open_engine

# Runs the `feedsvc` command as its entry point does, then writes the top-level packages and the feedsvc modules it
# imported (argv[1]: the file; the rest: the command's arguments).
REPORTER = """
import gc, json, os, sys
from feedsvc.cli import main
os._exit = sys.exit  # a command that ends at once (build) ends here instead, so the report gets written
report, sys.argv = sys.argv[1], ["feedsvc", *sys.argv[2:]]
try:
    main()
except SystemExit as exit:
    status = exit.code
with open(report, "w") as out:
    json.dump({"status": status, "modules": sorted(sys.modules), "collector": gc.isenabled()}, out)
"""

WEB = {"starlette", "uvicorn", "jinja2", "alembic"}
MAIL_TEMPLATES = {"jinja2", "babel", "css_inline", "inscriptis", "lxml.html"}


def loaded(cwd: Path, *args: str) -> set[str]:
    """The modules `feedsvc <args>` imported, checking that it succeeded and that it turned the cyclic garbage
    collector, off while the CLI imports, back on before its work."""
    report = cwd / "modules.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDSVC_")}
    result = subprocess.run(
        [sys.executable, "-c", REPORTER, str(report), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )
    outcome = json.loads(report.read_text())
    assert outcome["status"] in (0, None), result.stdout + result.stderr
    if args != ("--help",):
        assert outcome["collector"], "the command left the garbage collector off"
    return set(outcome["modules"])


def test_help_loads_neither_the_store_nor_the_configuration_models(tmp_path: Path) -> None:
    modules = loaded(tmp_path, "--help")
    assert "feedsvc.cli.digest" in modules  # every command's module, so that the help lists them all
    assert modules.isdisjoint({"sqlalchemy", "pydantic_settings", "feedsvc.config", "feedsvc.posts", *WEB}), (
        modules & {"sqlalchemy", "pydantic_settings", "feedsvc.config", "feedsvc.posts", *WEB}
    )


def test_build_loads_no_store_and_no_web_app(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples", site)
    modules = loaded(site, "build", "--config", "feedsvc.toml")
    assert (site / "public" / "rss.xml").is_file()
    # The example's front matter is plain `key: value` lines, which are read without PyYAML.
    unwanted = {"sqlalchemy", "feedsvc.store", "feedsvc.service", "feedsvc.web", "dkim", "rich.progress", "yaml", *WEB}
    assert modules.isdisjoint(unwanted), modules & unwanted


def test_digest_send_of_a_queued_edition_loads_no_templates_web_or_migrations(make_settings, tmp_path: Path) -> None:
    settings = make_settings()
    now = datetime.now(UTC)
    engine = open_engine(settings.store.database_url)  # creates the store: the command needs no migration
    try:
        add_subscribers(engine, ["reader@example.org"], frequency="instant", confirmed_at=now - timedelta(days=2))
        write_post(settings.posts.dir, "old.md", title="Old", date=now - timedelta(days=30))
        run_due(settings, engine, Collection(settings).scan(), now - timedelta(days=1))  # the first run: the archive
        write_post(settings.posts.dir, "new.md", title="New", date=now - timedelta(hours=1))
        assert run_due(settings, engine, Collection(settings).scan(), now), "an edition is queued"
    finally:
        engine.dispose()
    modules = loaded(tmp_path, "digest", "send", "--config", str(settings.config_path))
    assert len(list((settings.store.dir / "outbox" / "new").iterdir())) == 1, "the queued mail was sent"
    # stdout is a pipe: no progress bar, so not rich's progress module either; no DKIM configured, no dkimpy; the
    # posts come from the parse cache, so no front matter reader needs PyYAML, and none is rendered (markdown-it-py
    # makes the summaries, feedsvc.posts.render the HTML).
    unwanted = {"feedsvc.feeds", "feedgen", "dkim", "rich.progress", "email_validator", "yaml", "markdown_it",
                "feedsvc.posts.render", *WEB, *MAIL_TEMPLATES}
    assert modules.isdisjoint(unwanted), modules & unwanted

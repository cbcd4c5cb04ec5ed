"""The `feedsvc` command. Each command group lives in its own module and registers itself on `app`.

Only the module of the command being run is imported: `feedsvc build` does not pay for loading the web
app, the scheduler and the store migrations (about half a second of a cold build). `--help` imports every
command's module, so each imports what its commands use inside them (the store, the configuration's models,
the service): the help costs typer and rich, not the whole program (tests/test_startup.py checks both).
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
from typing import NoReturn

from rich.markup import escape

from feedsvc.cli.common import EXIT_PROBLEMS, app, describe_failure, errors, options

# Top-level command -> the module under feedsvc.cli that defines it.
COMMAND_MODULES = {
    "admin": "admin",
    "bounces": "bounces",
    "build": "build",
    "check": "build",
    "digest": "digest",
    "deliveries": "digest",
    "run": "run",
    "worker": "run",
    "init": "init",
    "subscribers": "subscribers",
    "serve": "web",
    "db": "db",
    "backup": "backup",
    "restore": "backup",
    "config": "config",
    "fediverse": "fediverse",
}


# Commands that end holding an object or more per post: the process ends with them all at once, where freeing
# them one by one took 0.16 s of a cold build of 50,000 posts after its work was done.
_ENDS_AT_ONCE = {"build", "check"}


def _command(argv: list[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _end_at_once(code: object) -> NoReturn:
    """Exit as `sys.exit(code)` would, without the interpreter's teardown: what must reach the terminal or a log
    file is flushed first. The command has written and closed its files by then."""
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def load_commands(argv: list[str]) -> None:
    """Import the module of the command named in argv, or every module (for --help or an unknown name)."""
    command = _command(argv)
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else sorted(set(COMMAND_MODULES.values()))
    for module in modules:
        importlib.import_module(f"feedsvc.cli.{module}")


def main() -> None:
    # Off while the command's modules are imported: what an import makes lives as long as the process, so the
    # collector's passes over it find nothing to free (2 % of a `digest send`'s instructions, 1.6 % of a small
    # build's). `common.started` turns it back on once the command has imported what it uses.
    gc.disable()
    # feedsvc uses no pydantic plugin: without this, building the configuration's models reads the entry points of
    # every installed distribution to look for one. A value set in the environment is kept (empty: plugins load).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    load_commands(sys.argv[1:])
    # What the imports made lives as long as the process: kept out of the cyclic collector's passes, which
    # otherwise walk it again and again while a build makes its 10,000s of objects (about a tenth of a cold
    # build's CPU), and out of the pages a forked worker would copy when the collector touches them.
    gc.freeze()
    try:
        app()
    except SystemExit as exc:
        if _command(sys.argv[1:]) in _ENDS_AT_ONCE:
            _end_at_once(exc.code)
        raise
    except Exception as exc:  # every failure not handled by its command: one line, the traceback on --debug
        if options.debug:
            raise
        errors.print(f"[bold red]error:[/] {escape(describe_failure(exc))}", highlight=False)
        sys.exit(EXIT_PROBLEMS)

import subprocess
import sys

import typer.main

from feedsvc.cli import COMMAND_MODULES, app, load_commands


def test_every_command_is_mapped_to_the_module_that_defines_it():
    load_commands([])
    registered = set(typer.main.get_command(app).commands)
    assert registered == set(COMMAND_MODULES)


def test_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "feedsvc", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in COMMAND_MODULES:
        assert command in result.stdout


def test_a_build_does_not_load_the_service_modules():
    code = (
        "import sys; from feedsvc.cli import load_commands; load_commands(['build', '--config', 'x']);"
        "print(sorted(m for m in sys.modules if m.startswith(('feedsvc.web', 'feedsvc.scheduler', 'alembic'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

"""The W3C Feed Validation Service's own checks (its Python 3 source, the w3c/feedvalidator repository's `src/`),
run on feed files in a subprocess: it is on no package index, so a test finds it through FEEDVALIDATOR_SRC.

Each feed is checked as the online service checks it: at the URL it is published at (so its self link is
compared with that), with its media type, reporting what the service's default "AA" level shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

NOT_HERE = (
    "the W3C feed validator is not on PyPI: to run this test, check out the w3c/feedvalidator repository, "
    "`pip install html5lib` and set FEEDVALIDATOR_SRC to its src/ folder"
)

# Runs in the subprocess: argv[1] is the validator's src/ folder, stdin a JSON list of [file, url, media type].
_RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import feedvalidator
from feedvalidator import compatibility
from feedvalidator.formatter.text_plain import Formatter
from feedvalidator.logging import Error, Warning
results = []
for path, url, media_type in json.load(sys.stdin):
    with open(path, "rb") as feed:
        try:
            events = feedvalidator.validateStream(feed, firstOccurrenceOnly=1, contentType=media_type, base=url)["loggedEvents"]
        except feedvalidator.logging.ValidationFailure as failure:
            events = [failure.event]
    events = compatibility.AA(events)
    shown = lambda kind: list(Formatter([event for event in events if isinstance(event, kind)]))
    results.append({"file": path, "errors": shown(Error), "warnings": shown(Warning)})
json.dump(results, sys.stdout)
"""


@dataclass(frozen=True)
class Report:
    file: str
    errors: list[str]
    warnings: list[str]


def validator_source() -> Path:
    """The validator's src/ folder; skips the test where it is not here."""
    source = Path(os.environ.get("FEEDVALIDATOR_SRC", "/nonexistent"))
    if not (source / "feedvalidator" / "__init__.py").is_file():
        pytest.skip(NOT_HERE)
    missing = subprocess.run([sys.executable, "-c", "import html5lib"], capture_output=True, check=False)
    if missing.returncode != 0:
        pytest.skip("the W3C feed validator needs html5lib: pip install html5lib")
    return source


def validate(feeds: list[tuple[Path, str]]) -> list[Report]:
    """Each (feed file, URL it is published at) as the W3C validator reports it."""
    source = validator_source()
    media = {".xml": "application/rss+xml"}
    jobs = [
        [str(path), url, "application/atom+xml" if b"<feed" in path.read_bytes()[:500] else media[path.suffix]]
        for path, url in feeds
    ]
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(source)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return [Report(**report) for report in json.loads(result.stdout)]

"""Every feed feedsvc writes, for the bundled example and for each generator convention's differential folder,
checked by the W3C Feed Validation Service's own code: no errors. Its warnings are printed (`pytest -s`), not
failed on: most are advice ("should") on HTML in descriptions that a full-content feed carries by design."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.feed_validator import validate, validator_source
from tests.generators import feedsvc_items
from tests.support import built_example
from tests.test_generators import (
    ELEVENTY_SITE,
    HUGO_LANGUAGES_BY_FOLDER,
    HUGO_SITE,
    JEKYLL_SITE,
    PELICAN_SITE,
    write_tree,
)

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {
    "hugo": HUGO_SITE,
    "hugo-languages": HUGO_LANGUAGES_BY_FOLDER,
    "jekyll": JEKYLL_SITE,
    "pelican": PELICAN_SITE,
    "eleventy": ELEVENTY_SITE,
}


def assert_valid(home: Path) -> None:
    """Every RSS and Atom file feedsvc wrote into home/public, validated at the URL it is published at."""
    site_url = tomllib.loads((home / "feedsvc.toml").read_text(encoding="utf-8"))["site"]["url"].rstrip("/")
    public = home / "public"
    feeds = [(path, f"{site_url}/{path.relative_to(public).as_posix()}") for path in sorted(public.rglob("*.xml"))]
    assert len(feeds) >= 2  # site-wide RSS and Atom at least
    reports = validate(feeds)
    for report in reports:
        for warning in report.warnings:
            print(f"warning {Path(report.file).relative_to(public)}: {warning}")
    assert {Path(report.file).relative_to(public).as_posix(): report.errors for report in reports if report.errors} == {}


def test_the_bundled_examples_feeds_are_valid(tmp_path: Path) -> None:
    validator_source()
    assert_valid(built_example(tmp_path / "example"))


@pytest.mark.parametrize("name", FOLDERS)
def test_the_feeds_of_each_conventions_folder_are_valid(tmp_path: Path, name: str) -> None:
    validator_source()
    site = write_tree(tmp_path / "site", FOLDERS[name])
    feedsvc_items(tmp_path / "feedsvc", site)
    assert_valid(tmp_path / "feedsvc")

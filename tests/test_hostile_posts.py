"""A posts folder written by someone hostile: links out of it, bombs in the front matter and the body, thousands of
tags, dates at the ends of time. Each such file is one problem line naming it; every other post is published, by
`feedsvc build`, `feedsvc check` and `feedsvc run` (real subprocesses), in bounded time and memory."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import httpx
import pytest
from conftest import write_post
from test_service import Service, services, wait_for, write_config  # noqa: F401 - `services` is a fixture

from feedsvc.config import load_settings
from feedsvc.posts import Collection

SECRET = "signing-secret-that-must-never-be-published"
ADMIN = "admin-token-that-must-never-be-published"
GOOD_TITLE = "A good post beside the bad ones"
# One CLI run on a folder of hostile files: Python starting up is most of it. Bounds, not benchmarks.
RUN_SECONDS = 10.0
RUN_MEMORY = 1024 * 1024 * 1024  # address space a `build` or `check` may take (the bombs took gigabytes)


def yaml_alias_bomb() -> str:
    """The "billion laughs": nine levels of nine aliases each, 2 KB of YAML, 9^9 strings once expanded."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "---\n" + "\n".join(lines) + "\ntitle: *i\ntags: *i\n---\n\nBoom.\n"


def tags_post(count: int) -> str:
    tags = ", ".join(f"t{number}" for number in range(count))
    return f"---\ntitle: Many tags\ndate: 2025-01-03\ntags: [{tags}]\n---\n\nTagged.\n"


@dataclass(frozen=True)
class Hostile:
    name: str  # the file as the problem line names it, below posts/
    problem: str  # what the line says
    severity: str  # "error": the file is left out; "warning": it is published, cut down
    make: Callable[[Path], None]  # writes it, given the site folder (posts/ inside)


def _text(name: str, text: str) -> Callable[[Path], None]:
    return lambda site: (site / "posts" / name).write_text(text, encoding="utf-8")


def _link(name: str, target: str) -> Callable[[Path], None]:
    return lambda site: (site / "posts" / name).symlink_to(target)


def _outside_folder(site: Path) -> None:
    outside = site / "elsewhere"
    outside.mkdir()
    (outside / "private.md").write_text(f"---\ntitle: Private\ndate: 2025-01-01\n---\n\n{SECRET}\n")
    (site / "posts" / "linked").symlink_to(outside, target_is_directory=True)


def _hard_link(site: Path) -> None:
    os.link(site / "feedsvc.toml", site / "posts" / "hard.md")


HOSTILE = [
    Hostile(
        "config.md",
        "symlink to a place outside the posts folder",
        "error",
        _link("config.md", "../feedsvc.toml"),
    ),
    Hostile(
        "passwd.md", "symlink to a place outside the posts folder", "error", _link("passwd.md", "/etc/passwd")
    ),
    Hostile("linked", "symlink to a place outside the posts folder", "error", _outside_folder),
    Hostile("hard.md", "is feedsvc's config file", "error", _hard_link),
    Hostile(
        "bomb.md",
        "YAML front matter expands to over 10000 values",
        "error",
        _text("bomb.md", yaml_alias_bomb()),
    ),
    Hostile(
        "deep.md",
        "YAML front matter is nested over 32 levels",
        "error",
        _text("deep.md", "---\ntitle: x\nx: " + "[" * 100 + "]" * 100 + "\n---\n\nx\n"),
    ),
    Hostile(
        "deep-toml.md",
        "TOML front matter is nested over 32 levels",
        "error",
        _text("deep-toml.md", "+++\nx = " + "[" * 3000 + "]" * 3000 + "\n+++\n\nx\n"),
    ),
    Hostile(
        "wide-toml.md",
        "TOML front matter expands to over 10000 values",
        "error",
        _text("wide-toml.md", "+++\nx = [" + "1," * 20000 + "]\n+++\n\nx\n"),
    ),
    Hostile(
        "deep-json.md",
        "JSON front matter is nested over 32 levels",
        "error",
        _text("deep-json.md", '{"x": ' + "[" * 100000 + "]" * 100000 + "}\n\nx\n"),
    ),
    Hostile(
        "wide-json.md",
        "JSON front matter expands to over 10000 values",
        "error",
        _text("wide-json.md", '{"x": [' + "0," * 100000 + "0]}\n\nx\n"),
    ),
    Hostile(
        "number.md",
        "a number too long to read",
        "error",
        _text("number.md", '{"title": ' + "9" * 5000 + "}\n\nx\n"),
    ),
    Hostile(
        "quotes.md",
        "Markdown nested over 32 levels deep",
        "error",
        _text("quotes.md", "---\ntitle: Quotes\ndate: 2025-01-01\n---\n\n" + "> " * 100000 + "x\n"),
    ),
    Hostile(
        "emphasis.md",
        "too many emphasis or link markers",
        "error",
        _text("emphasis.md", "---\ntitle: Stars\ndate: 2025-01-01\n---\n\n" + "*a* " * 50000 + "\n"),
    ),
    Hostile(
        "divs.md",
        "HTML nested over 256 elements deep",
        "error",
        _text("divs.md", "---\ntitle: Divs\ndate: 2025-01-01\n---\n\n" + "<div>" * 100000 + "x\n"),
    ),
    Hostile(
        "early.md",
        "date '0001-01-01T00:00:00+23:59' is out of range",
        "error",
        _text("early.md", "---\ntitle: Early\ndate: 0001-01-01T00:00:00+23:59\n---\n\nx\n"),
    ),
    Hostile(
        "late.md",
        "date '9999-12-31T23:59:59-23:59' is out of range",
        "error",
        _text("late.md", "---\ntitle: Late\ndate: 9999-12-31T23:59:59-23:59\n---\n\nx\n"),
    ),
    Hostile(
        "tags.md",
        "1000 tags, over posts.max_tags (32): only the first 32 are used",
        "warning",
        _text("tags.md", tags_post(1000)),
    ),
    Hostile(
        "long-tag.md",
        "is over 100 characters long; dropped",
        "warning",
        _text("long-tag.md", "---\ntitle: Long tag\ndate: 2025-01-04\ntags: [" + "x" * 300 + "]\n---\n\nx\n"),
    ),
]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    write_config(tmp_path, web={"secret_key": SECRET, "admin_token": ADMIN})
    write_post(
        tmp_path / "posts", "good.md", title=GOOD_TITLE, date=datetime(2025, 1, 2, tzinfo=UTC), tags=["fine"]
    )
    return tmp_path


def limited_run(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`feedsvc` as a subprocess under an address-space limit; its result and how long it took."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (RUN_MEMORY, RUN_MEMORY))

    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDSVC_")}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "feedsvc", *args],
        cwd=cwd,
        env={**env, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_memory,
        check=False,
    )
    return result, time.monotonic() - started


def problem_lines(output: str, name: str) -> list[str]:
    return [
        line for line in output.splitlines() if f"posts/{name}:" in line or line.endswith(f"posts/{name}")
    ]


def published_files(site: Path) -> dict[str, bytes]:
    public = site / "public"
    return {str(path.relative_to(public)): path.read_bytes() for path in public.rglob("*") if path.is_file()}


@pytest.mark.parametrize("hostile", HOSTILE, ids=[case.name for case in HOSTILE])
def test_each_hostile_file_is_one_problem_line_and_the_good_post_is_published(
    site: Path, hostile: Hostile
) -> None:
    hostile.make(site)
    result, took = limited_run(site, "build")
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert result.returncode == (1 if hostile.severity == "error" else 0), output[-3000:]
    lines = problem_lines(result.stdout, hostile.name)
    label = "skipped" if hostile.severity == "error" else "warning"
    assert (
        len(lines) == 1
        and lines[0].startswith(f"{label} posts/{hostile.name}")
        and hostile.problem in lines[0]
    ), (
        lines,
        output[-3000:],
    )
    assert len(lines[0]) < 400  # a message never carries the hostile value whole
    assert took < RUN_SECONDS, f"build took {took:.1f} s"
    feeds = published_files(site)
    assert GOOD_TITLE in feeds["rss.xml"].decode()
    everything = b"".join(feeds.values())
    assert SECRET.encode() not in everything and ADMIN.encode() not in everything
    assert b"root:" not in everything  # /etc/passwd

    checked, took = limited_run(site, "check")
    assert "Traceback" not in checked.stdout + checked.stderr
    assert checked.returncode == (1 if hostile.severity == "error" else 0)
    assert len(problem_lines(checked.stdout, hostile.name)) == 1, checked.stdout[-3000:]
    assert took < RUN_SECONDS, f"check took {took:.1f} s"


def test_a_post_with_thousands_of_tags_writes_a_bounded_output(site: Path) -> None:
    (site / "posts" / "tags.md").write_text(tags_post(20000))
    result, took = limited_run(site, "build")
    assert result.returncode == 0, result.stdout + result.stderr
    feeds = published_files(site)
    # The site feed and the good post's tag, then the first 32 tags of the other: three files each.
    assert len(feeds) == 3 * (1 + 1 + 32)
    assert sum(len(data) for data in feeds.values()) < 200_000
    assert took < RUN_SECONDS


def test_a_tag_feed_does_not_grow_with_the_other_tags_of_its_posts(make_settings) -> None:
    from feedsvc import feeds

    settings = make_settings()
    posts = settings.posts.dir
    write_post(posts, "few.md", title="Few", date=datetime(2025, 1, 1, tzinfo=UTC), tags=["shared", "other"])
    feeds.build(settings)
    few = (settings.feeds.output_dir / "tags" / "shared" / "rss.xml").read_bytes()
    write_post(
        posts,
        "few.md",
        title="Few",
        date=datetime(2025, 1, 1, tzinfo=UTC),
        tags=["shared", *[f"o{n}" for n in range(30)]],
    )
    feeds.build(settings)
    many = (settings.feeds.output_dir / "tags" / "shared" / "rss.xml").read_bytes()
    assert few == many
    entry = feedparser.parse(many).entries[0]
    assert [tag.term for tag in entry.tags] == ["shared"]
    # The site-wide feed still lists every tag of the post.
    site_entry = feedparser.parse((settings.feeds.output_dir / "rss.xml").read_bytes()).entries[0]
    assert len(site_entry.tags) == 31


def test_all_hostile_files_at_once_leave_the_good_post_published(site: Path) -> None:
    for hostile in HOSTILE:
        hostile.make(site)
    result, took = limited_run(site, "build")
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1
    for hostile in HOSTILE:
        assert len(problem_lines(result.stdout, hostile.name)) == 1, hostile.name
    assert "posts: 3 published of 3 read" in result.stdout  # good.md, tags.md and long-tag.md
    assert took < RUN_SECONDS


# --- confinement: what the walk and the watcher's scan may read ----------------------------------------------


def scan_titles_and_problems(
    collection: Collection, changed: list[Path] | None = None
) -> tuple[list[str], list[str]]:
    scan = collection.scan(changed)
    return sorted(post.title for post in scan.posts), [str(problem) for problem in scan.problems]


def test_a_file_reported_by_the_watcher_through_a_linked_folder_is_not_read(site: Path) -> None:
    outside = site / "elsewhere"
    outside.mkdir()
    (site / "posts" / "linked").symlink_to(outside, target_is_directory=True)
    collection = Collection(load_settings(site / "feedsvc.toml"))
    titles, problems = scan_titles_and_problems(collection)
    assert titles == [GOOD_TITLE]
    assert problems == ["posts/linked: symlink to a place outside the posts folder (posts.dir); not read"]

    # A file appears behind the link; the watcher reports it by its path inside the posts folder.
    (outside / "private.md").write_text(f"---\ntitle: Private\n---\n\n{SECRET}\n")
    titles, problems = scan_titles_and_problems(collection, [site / "posts" / "linked" / "private.md"])
    assert titles == [GOOD_TITLE]
    assert problems == ["posts/linked: symlink to a place outside the posts folder (posts.dir); not read"]


def test_a_post_replaced_by_a_link_out_is_dropped_on_the_watchers_scan(site: Path) -> None:
    collection = Collection(load_settings(site / "feedsvc.toml"))
    assert scan_titles_and_problems(collection)[0] == [GOOD_TITLE]
    good = site / "posts" / "good.md"
    good.unlink()
    good.symlink_to(site / "feedsvc.toml")
    titles, problems = scan_titles_and_problems(collection, [good])
    assert titles == []
    assert problems == ["posts/good.md: symlink to a place outside the posts folder (posts.dir); not read"]


def test_links_inside_the_posts_folder_are_still_read(site: Path) -> None:
    (site / "posts" / "drafts").mkdir()
    write_post(site / "posts" / "drafts", "real.md", title="Real", date=datetime(2025, 1, 5, tzinfo=UTC))
    (site / "posts" / "alias").symlink_to("drafts", target_is_directory=True)
    (site / "posts" / "also.md").symlink_to("drafts/real.md")
    collection = Collection(load_settings(site / "feedsvc.toml"))
    titles, problems = scan_titles_and_problems(collection)
    # Read through the file link, none refused (the folder link leads to a folder walked already).
    assert titles == [GOOD_TITLE, "Real", "Real"]
    assert problems == []


def test_feedsvcs_own_folders_and_config_inside_the_posts_folder_are_never_read(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        posts={"dir": ".", "extensions": [".md", ".toml"]},
        store={"dir": "data"},
        feeds={"output_dir": "public"},
        web={"secret_key": SECRET},
    )
    write_post(tmp_path, "good.md", title=GOOD_TITLE, date=datetime(2025, 1, 2, tzinfo=UTC))
    for folder in ("data", "public"):
        (tmp_path / folder).mkdir()
        write_post(
            tmp_path / folder,
            "planted.md",
            title=f"Planted in {folder}",
            date=datetime(2025, 1, 3, tzinfo=UTC),
        )
    (tmp_path / "to-data.md").symlink_to("data/planted.md")
    collection = Collection(load_settings(config))
    titles, problems = scan_titles_and_problems(collection)
    assert titles == [GOOD_TITLE]
    # Problems name files below the folder holding the posts folder, here the parent of tmp_path.
    assert [problem.removeprefix(f"{tmp_path.name}/") for problem in problems] == [
        "data: is the store folder (store.dir) or inside it; never read as posts",
        "feedsvc.toml: is feedsvc's config file; never read as a post",
        "public: is the feeds output folder (feeds.output_dir) or inside it; never read as posts",
        "to-data.md: is the store folder (store.dir) or inside it; never read as posts",
    ]


# --- one file that breaks the renderer ------------------------------------------------------------------------


def test_a_post_that_cannot_be_rendered_is_left_out_and_the_others_published(make_settings) -> None:
    from feedsvc import feeds

    settings = make_settings()
    posts = settings.posts.dir
    write_post(posts, "good.md", title=GOOD_TITLE, date=datetime(2025, 1, 2, tzinfo=UTC))
    bad = write_post(
        posts,
        "bad.md",
        title="Changed under us",
        date=datetime(2025, 1, 3, tzinfo=UTC),
        tags=["t"],
        body="x" * 200,
    )
    collection = Collection(settings)
    collection.scan()
    # The file becomes a bomb between the scan and the rendering, keeping its size and time (the scan's cache
    # still takes it for the post it read).
    info = bad.stat()
    text = bad.read_text()
    header, _, body = text.partition("\n---\n")
    bad.write_text(header + "\n---\n" + ("> " * len(body))[: len(body)])
    os.utime(bad, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert bad.stat().st_size == info.st_size

    result = feeds.build(settings, collection)
    assert [str(problem) for problem in result.skipped] == [
        (
            "posts/bad.md: cannot be rendered: UnsafeMarkdown: Markdown nested over 32 levels deep on one line "
            "(line 1 of the text); not published"
        )
    ]
    assert [post.title for post in result.published] == [GOOD_TITLE]
    assert [post.title for post in result.scan.posts] == [GOOD_TITLE]
    titles = [
        entry.title
        for entry in feedparser.parse((settings.feeds.output_dir / "rss.xml").read_bytes()).entries
    ]
    assert titles == [GOOD_TITLE]
    assert not (settings.feeds.output_dir / "tags" / "t").exists()


# --- the service ----------------------------------------------------------------------------------------------


def test_run_serves_the_good_posts_of_a_hostile_folder(
    tmp_path: Path,
    services: Callable[..., Service],  # noqa: F811 - the fixture imported above
) -> None:
    config = write_config(tmp_path, web={"secret_key": SECRET, "admin_token": ADMIN})
    for hostile in HOSTILE:
        hostile.make(tmp_path)
    write_post(tmp_path / "posts", "good.md", title=GOOD_TITLE, date=datetime.now(UTC) - timedelta(minutes=5))
    service = services(config)
    service.wait_healthy(timeout=60)
    feed = wait_for(
        lambda: (
            (response := httpx.get(service.url("/rss.xml"), timeout=5)).status_code == 200
            and GOOD_TITLE in response.text
            and response
        ),
        30,
        "the good post in /rss.xml",
    )
    for path in ("/rss.xml", "/feed.json", "/atom.xml"):
        body = httpx.get(service.url(path), timeout=5).text
        assert SECRET not in body and ADMIN not in body and "root:" not in body
    assert "Many tags" in feed.text

    # A later bad file does not stop a later good one.
    (tmp_path / "posts" / "later-bomb.md").write_text(yaml_alias_bomb())
    write_post(
        tmp_path / "posts",
        "later.md",
        title="Written after the bombs",
        date=datetime.now(UTC) - timedelta(minutes=1),
    )
    wait_for(
        lambda: "Written after the bombs" in httpx.get(service.url("/rss.xml"), timeout=5).text,
        30,
        "the later post",
    )
    items = json.loads(httpx.get(service.url("/feed.json"), timeout=5).text)["items"]
    assert {item["title"] for item in items} >= {GOOD_TITLE, "Written after the bombs", "Many tags"}
    log = service.output()
    assert SECRET not in log and ADMIN not in log
    assert service.stop() == 0

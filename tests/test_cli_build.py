"""`feedsvc build` and `feedsvc check` as real subprocesses on temporary folders."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest
import tomli_w

BROKEN_YAML = "---\ntitle: Fine\ndate: 2025-01-02\ntags: [unclosed\n---\n\nBody.\n"


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDSVC_")}
    env["COLUMNS"] = "80"  # long lines must still come out whole
    return subprocess.run(
        [sys.executable, "-m", "feedsvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    config = {
        "site": {"title": "CLI Blog", "url": "https://cli.example.org", "timezone": "Asia/Jakarta"},
        "posts": {"dir": "posts"},
        "feeds": {"output_dir": "public"},
        "store": {"dir": "data"},
    }
    (tmp_path / "feedsvc.toml").write_text(tomli_w.dumps(config))
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "hello.md").write_text("---\ntitle: Hello\ndate: 2025-01-01\ntags: [Go, Web]\n---\n\nHi *there*.\n")
    (posts / "second.md").write_text("---\ntitle: Second\ndate: 2025-01-05\ntags: [Go]\n---\n\nMore.\n")
    return tmp_path


def feed_titles(path: Path) -> list[str]:
    return [entry.title for entry in feedparser.parse(path.read_bytes()).entries]


def test_build_writes_every_feed_and_exits_0(site: Path) -> None:
    result = run(site, "build")
    assert result.returncode == 0, result.stderr
    assert "feeds in public: 9 written, 0 unchanged, 0 removed" in result.stdout
    assert "RSS 3, Atom 3, JSON Feed 3" in result.stdout
    assert "tags: Go (2), Web (1)" in result.stdout
    assert "posts: 2 published of 2 read" in result.stdout
    assert feed_titles(site / "public" / "rss.xml") == ["Second", "Hello"]
    assert feed_titles(site / "public" / "tags" / "web" / "atom.xml") == ["Hello"]
    assert [item["title"] for item in json.loads((site / "public" / "tags" / "go" / "feed.json").read_text())["items"]] == [
        "Second",
        "Hello",
    ]

    again = run(site, "build")
    assert again.returncode == 0
    assert "0 written, 9 unchanged, 0 removed" in again.stdout


def test_build_skips_broken_posts_names_them_and_exits_1(site: Path) -> None:
    long_name = "a-post-whose-file-name-is-long-enough-to-wrap-a-narrow-terminal-line-" * 2 + ".md"
    (site / "posts" / long_name).write_text(BROKEN_YAML)
    (site / "posts" / "latin1.md").write_bytes("---\ntitle: Caf\xe9\n---\n\nx\n".encode("latin-1"))
    result = run(site, "build")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    broken = [line for line in lines if long_name in line]
    # YAML reports the unclosed list where it notices it: on its line or the closing fence.
    assert len(broken) == 1 and re.match(rf"skipped posts/{re.escape(long_name)}:[45]: invalid YAML", broken[0])
    latin1 = [line for line in lines if "latin1.md" in line]
    assert len(latin1) == 1 and latin1[0].startswith("skipped posts/latin1.md:2: ") and "UTF-8" in latin1[0]
    # The good posts are published all the same.
    assert feed_titles(site / "public" / "rss.xml") == ["Second", "Hello"]


def test_configuration_errors_exit_2_and_name_the_key(site: Path) -> None:
    config = site / "feedsvc.toml"
    config.write_text(config.read_text() + '\n[mail]\nfrom_address = "a@b.c"\nbogus = 1\n')
    result = run(site, "build")
    assert result.returncode == 2
    assert "mail.bogus" in result.stderr and "not a known setting" in result.stderr
    assert not (site / "public").exists()

    config.write_text(config.read_text().replace("bogus = 1\n", "").replace('"public"', '"public"\nitems = "many"'))
    result = run(site, "check")
    assert result.returncode == 2 and "feeds.items" in result.stderr

    result = run(site, "build", "--config", str(site / "missing.toml"))
    assert result.returncode == 2 and "missing.toml" in result.stderr


def test_a_missing_posts_folder_is_a_configuration_error(site: Path) -> None:
    result = run(site, "build", "--posts", "nowhere")
    assert result.returncode == 2
    assert "posts.dir" in result.stderr and "nowhere" in result.stderr


def test_posts_and_out_options_override_the_config(site: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other")
    (other / "only.md").write_text("---\ntitle: Only one\ndate: 2024-05-05\n---\n\nText.\n")
    out = tmp_path_factory.mktemp("out") / "feeds"
    result = run(site, "build", "--posts", str(other), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert feed_titles(out / "rss.xml") == ["Only one"]
    assert not (site / "public").exists()


def test_without_a_config_the_example_site_builds_in_the_current_folder(tmp_path: Path) -> None:
    result = run(tmp_path, "build")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bundled example site" in result.stderr
    titles = feed_titles(tmp_path / "public" / "rss.xml")
    assert "Antrian Pesan Pertamaku: Cerita, Salah Langkah dan Pelajaran" in titles
    assert "Catatan Kecil tentang Indeks Database" in titles
    assert "Ideas for later" not in titles
    assert (tmp_path / "public" / "tags" / "journey" / "feed.json").is_file()


def test_check_reports_problems_writes_no_feeds_and_exits_1(site: Path) -> None:
    clean = run(site, "check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 posts checked: 0 errors, 0 warnings" in clean.stdout

    (site / "posts" / "broken.md").write_text(BROKEN_YAML)
    (site / "posts" / "picture.md").write_text("---\ntitle: Pic\ndate: 2025-02-01\n---\n\n![x](missing/pic.png)\n")
    result = run(site, "check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert sum(bool(re.match(r"error posts/broken\.md:[45]: invalid YAML", line)) for line in lines) == 1, lines
    assert any(line.startswith("warning posts/picture.md:6: image 'missing/pic.png' not found") for line in lines)
    assert "3 posts checked: 1 errors" in result.stdout
    assert not (site / "public").exists()


def feeds_of(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def cold_build(site: Path) -> dict[str, bytes]:
    """The feeds a build with no caches at all writes, in a folder of their own."""
    config = site / "cold.toml"
    text = (site / "feedsvc.toml").read_text()
    config.write_text(text.replace('"data"', '"data-cold"').replace('"public"', '"public-cold"'))
    result = run(site, "build", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    return feeds_of(site / "public-cold")


def test_a_new_build_process_renders_again_only_the_posts_that_changed(site: Path) -> None:
    assert run(site, "build").returncode == 0
    store = site / "data" / "rendered-posts.jsonl"
    # What the store holds is what the next process shows for a post whose file did not change (a stand-in
    # text in place of the kept HTML shows which posts were rendered again).
    store.write_text(store.read_text().replace("<p>More.</p>", "<p>Kept.</p>").replace("there", "thereabouts"))
    hello = site / "posts" / "hello.md"
    hello.write_text(hello.read_text().replace("Hi *there*.", "Hi *everyone*."))
    assert run(site, "build").returncode == 0
    rss = (site / "public" / "rss.xml").read_text()
    assert "&lt;p&gt;Kept.&lt;/p&gt;" in rss and "More." not in rss
    assert "everyone" in rss and "thereabouts" not in rss
    # Once its file changes, a post is rendered from it again: the feeds are those of a build from nothing.
    second = site / "posts" / "second.md"
    second.write_text(second.read_text())
    os.utime(second, ns=(second.stat().st_atime_ns, second.stat().st_mtime_ns + 1_000_000))
    assert run(site, "build").returncode == 0
    assert feeds_of(site / "public") == cold_build(site)


@pytest.mark.parametrize(
    "damage",
    ["garbage", "cut short", "other header", "wrong types", "deep nesting", "not UTF-8", "empty"],
)
def test_a_damaged_rendered_posts_store_is_ignored_and_written_again(site: Path, damage: str) -> None:
    assert run(site, "build").returncode == 0
    store = site / "data" / "rendered-posts.jsonl"
    good = store.read_bytes()
    header, first, *_ = good.split(b"\n")
    store.write_bytes(
        {
            "garbage": b"\x80\x03 not a store at all",
            "cut short": good[: len(header) + 1 + len(first) // 2],
            "other header": b'["feedsvc rendered posts", 0]\n' + good.split(b"\n", 1)[1],
            "wrong types": header + b'\n["digest", 1, {"a": 2}]\n',
            "deep nesting": header + b"\n" + b"[" * 200_000 + b"]" * 200_000 + b"\n",
            "not UTF-8": header + b"\n" + first.replace(b"Hi", b"\xff\xfe") + b"\n",
            "empty": b"",
        }[damage]
    )
    shutil.rmtree(site / "public")
    result = run(site, "build")
    assert result.returncode == 0, result.stdout + result.stderr
    assert feeds_of(site / "public") == cold_build(site)
    assert store.read_bytes() == good

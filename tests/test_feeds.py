"""Feeds written from posts and read back: feedparser for RSS/Atom, json for JSON Feed, plus the rules a real
validator applies (date formats, required elements, absolute URLs), checked on the XML itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from xml.etree import ElementTree

import feedparser
import lxml.html
import pytest

from feedsvc.feeds import (
    ATOM_FILE,
    FEED_FILES,
    JSON_FILE,
    RSS_FILE,
    FeedWriter,
    build,
    replace_files,
    tag_counts,
    tag_groups,
)
from feedsvc.posts import Collection, Post, tag_slug
from tests.conftest import EXAMPLE_POSTS

SITE = "https://blog.example.org"
WIB = timezone(timedelta(hours=7))
ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
DC = "{http://purl.org/dc/elements/1.1/}"
RFC822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} [+-]\d{4}$"
)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
ABSOLUTE = re.compile(r"^https?://[^/\s]+")


def make_post(number: int = 1, **fields: object) -> Post:
    values: dict[str, object] = {
        "id": f"post-{number}",
        "slug": f"post-{number}",
        "title": f"Post {number}",
        "date": datetime(2025, 1, 1, 9, 0, tzinfo=WIB) + timedelta(days=number),
        "updated": None,
        "url": f"{SITE}/post-{number}/",
        "tags": (),
        "summary_html": f"<p>Summary {number}</p>",
        "author": "Test Author",
        "image": None,
        "draft": False,
        "source": Path(f"posts/post-{number}.md"),
        "content_html": f'<p>Body {number} with <a href="{SITE}/other/">a link</a></p>',
    }
    values.update(fields)
    return Post(**values)  # type: ignore[arg-type]


def newest_first(*posts: Post) -> list[Post]:
    return sorted(posts, key=lambda post: post.date, reverse=True)


def parsed(path: Path) -> feedparser.FeedParserDict:
    feed = feedparser.parse(path.read_bytes(), sanitize_html=False, resolve_relative_uris=False)
    assert not feed.bozo, f"{path}: {feed.get('bozo_exception')}"
    return feed


def as_utc(moment: datetime) -> tuple[int, ...]:
    return tuple(moment.astimezone(UTC).timetuple())[:6]


# --- validator rules, checked on the documents themselves ----------------------------------------------------


def assert_absolute_html(fragment: str) -> None:
    if not fragment.strip():
        return
    for element in lxml.html.fragment_fromstring(fragment, create_parent="div").iter():
        for attribute in ("href", "src"):
            value = element.get(attribute)
            if value is not None:
                assert ABSOLUTE.match(value), f"relative {attribute}={value!r} in content"


def check_rss(path: Path) -> ElementTree.Element:
    root = ElementTree.fromstring(path.read_bytes())
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    for required in ("title", "link", "description"):
        assert (channel.findtext(required) or "").strip(), f"channel <{required}> missing"
    assert ABSOLUTE.match(channel.findtext("link"))
    self_links = [link for link in channel.findall(f"{ATOM}link") if link.get("rel") == "self"]
    assert len(self_links) == 1 and ABSOLUTE.match(self_links[0].get("href"))
    for date in [channel.findtext("lastBuildDate"), *(item.findtext("pubDate") for item in channel.iter("item"))]:
        assert date and RFC822.match(date), f"not an RFC 822 date: {date!r}"
    for item in channel.iter("item"):
        assert (item.findtext("title") or "").strip()
        assert ABSOLUTE.match(item.findtext("link"))
        guid = item.find("guid")
        assert guid is not None and guid.text and guid.get("isPermaLink") == "false"
        assert_absolute_html(item.findtext("description") or "")
        assert_absolute_html(item.findtext(f"{CONTENT}encoded") or "")
    for link in channel.iter(f"{ATOM}link"):
        assert ABSOLUTE.match(link.get("href"))
    return channel


def check_atom(path: Path) -> ElementTree.Element:
    feed = ElementTree.fromstring(path.read_bytes())
    assert feed.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated"):
        assert (feed.findtext(f"{ATOM}{required}") or "").strip(), f"feed <{required}> missing"
    entries = feed.findall(f"{ATOM}entry")
    # Atom needs an author on the feed or on every entry.
    assert feed.find(f"{ATOM}author/{ATOM}name") is not None or all(
        entry.find(f"{ATOM}author/{ATOM}name") is not None for entry in entries
    )
    dates = [feed.findtext(f"{ATOM}updated")]
    for entry in entries:
        for required in ("id", "title", "updated"):
            assert (entry.findtext(f"{ATOM}{required}") or "").strip(), f"entry <{required}> missing"
        assert re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", entry.findtext(f"{ATOM}id")), "Atom id must be an IRI"
        dates += [entry.findtext(f"{ATOM}updated"), entry.findtext(f"{ATOM}published")]
        assert entry.find(f"{ATOM}content").get("type") == "html"
        assert_absolute_html(entry.findtext(f"{ATOM}content") or "")
        assert_absolute_html(entry.findtext(f"{ATOM}summary") or "")
    for date in dates:
        assert date and RFC3339.match(date), f"not an RFC 3339 date: {date!r}"
    for link in feed.iter(f"{ATOM}link"):
        assert ABSOLUTE.match(link.get("href"))
    assert [link.get("rel") for link in feed.findall(f"{ATOM}link")].count("self") == 1
    return feed


def check_json(path: Path) -> dict:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["title"].strip()
    assert ABSOLUTE.match(document["home_page_url"]) and ABSOLUTE.match(document["feed_url"])
    assert isinstance(document["items"], list)
    for item in document["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert item["title"].strip() and item["content_html"]
        assert ABSOLUTE.match(item["url"])
        if "image" in item:
            assert ABSOLUTE.match(item["image"])
        for key in ("date_published", "date_modified"):
            if key in item:
                assert RFC3339.match(item[key]), f"not an RFC 3339 date: {item[key]!r}"
        assert_absolute_html(item["content_html"])
    return document


def check_all(folder: Path) -> tuple[ElementTree.Element, ElementTree.Element, dict]:
    return check_rss(folder / RSS_FILE), check_atom(folder / ATOM_FILE), check_json(folder / JSON_FILE)


# --- every field ---------------------------------------------------------------------------------------------


def test_every_field_reads_back_in_all_three_formats(make_settings) -> None:
    settings = make_settings(site={"description": "Notes"})
    first = make_post(
        1,
        title="Halo & <dunia>",
        tags=("Belajar Go", "Meta"),
        updated=datetime(2025, 3, 1, 12, 30, tzinfo=WIB),
        image=f"{SITE}/assets/cover.png",
        summary_html="<p>Ringkasan <em>singkat</em> 😅</p>",
        content_html=f'<p>Isi lengkap <img src="{SITE}/assets/chat.png" alt="Chat"> ❤️</p>',
    )
    second = make_post(2, author="Guest Writer", tags=("Meta",))
    posts = newest_first(first, second)
    FeedWriter(settings).write(posts)
    out = settings.feeds.output_dir
    check_all(out)

    for filename in (RSS_FILE, ATOM_FILE):
        feed = parsed(out / filename)
        assert feed.feed.title == "Test Blog"
        assert feed.feed.link == f"{SITE}/"
        assert feed.feed.language == "en"
        assert feed.feed.get("subtitle") == "Notes"
        assert as_utc(datetime(*feed.feed.updated_parsed[:6], tzinfo=UTC)) == as_utc(first.updated)
        # Hand-set ids that are not URIs get a urn: prefix (Atom ids must be IRIs), the same in every format.
        assert [entry.id for entry in feed.entries] == ["urn:feedsvc:post-2", "urn:feedsvc:post-1"]
        entry = feed.entries[1]
        assert entry.title == "Halo & <dunia>"
        assert entry.link == first.url
        assert entry.author == "Test Author"
        assert feed.entries[0].author == "Guest Writer"
        assert [tag.term for tag in entry.tags] == ["Belajar Go", "Meta"]
        assert entry.summary == first.summary_html
        assert entry.content[0].value == first.content_html
        assert as_utc(datetime(*entry.published_parsed[:6], tzinfo=UTC)) == as_utc(first.date)
        if filename == ATOM_FILE:
            assert as_utc(datetime(*entry.updated_parsed[:6], tzinfo=UTC)) == as_utc(first.updated)
            assert entry.content[0].type == "text/html"

    rss = ElementTree.fromstring((out / RSS_FILE).read_bytes()).find("channel")
    assert rss.findtext("lastBuildDate") == "Sat, 01 Mar 2025 12:30:00 +0700"
    assert rss.find("item").findtext(f"{DC}creator") == "Guest Writer"

    document = json.loads((out / JSON_FILE).read_text(encoding="utf-8"))
    assert document["feed_url"] == f"{SITE}/feed.json"
    assert document["language"] == "en" and document["description"] == "Notes"
    assert document["authors"] == [{"name": "Test Author"}]
    assert "hubs" not in document
    item = document["items"][1]
    assert item == {
        "id": "urn:feedsvc:post-1",
        "url": first.url,
        "title": "Halo & <dunia>",
        "content_html": first.content_html,
        "summary": "Ringkasan singkat 😅",
        "image": first.image,
        "date_published": "2025-01-02T09:00:00+07:00",
        "date_modified": "2025-03-01T12:30:00+07:00",
        "authors": [{"name": "Test Author"}],
        "tags": ["Belajar Go", "Meta"],
    }
    assert "date_modified" not in document["items"][0] and "image" not in document["items"][0]


def test_self_and_alternate_links_point_at_the_published_files(make_settings) -> None:
    settings = make_settings()
    FeedWriter(settings).write([make_post(1, tags=("Belajar Go",))])
    out = settings.feeds.output_dir
    for folder, prefix in ((out, SITE), (out / "tags" / "belajar-go", f"{SITE}/tags/belajar-go")):
        rss, atom, document = check_all(folder)
        assert [link.get("href") for link in rss.findall(f"{ATOM}link") if link.get("rel") == "self"] == [
            f"{prefix}/rss.xml"
        ]
        links = {link.get("rel"): link.get("href") for link in atom.findall(f"{ATOM}link")}
        assert links == {"self": f"{prefix}/atom.xml", "alternate": f"{SITE}/"}
        assert atom.findtext(f"{ATOM}id") == f"{prefix}/atom.xml"
        assert document["feed_url"] == f"{prefix}/feed.json"


# --- the seeds: Indonesian, emoji, a relative image, a file without front matter --------------------------------


@pytest.fixture
def seeded(make_settings, tmp_path, seeds):
    posts = tmp_path / "posts"
    posts.mkdir()
    for seed in sorted(seeds.glob("*.txt")):
        shutil.copy(seed, posts / seed.name)
    return make_settings(posts={"asset_urls": {"../../assets/": f"{SITE}/assets/"}})


def test_seed_text_and_emoji_survive_byte_exact(seeded) -> None:
    result = build(seeded, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert not result.skipped
    out = seeded.feeds.output_dir
    check_all(out)
    phrases = ["Terima kasih banget buat Kang A", "lebay 😅", "Love you all! ❤️", "“orang belakang layar”",
               "Perusahaan dari berbagai sektor—baik startup"]
    for filename in FEED_FILES:
        data = (out / filename).read_bytes()
        for phrase in phrases:
            assert phrase.encode() in data, f"{phrase!r} not byte-exact in {filename}"
        assert b"../../assets" not in data
    # The relative image of the first seed, made absolute, in each format's full content.
    image = f'src="{SITE}/assets/blogs/chat.png"'
    contents = [
        *(entry.content[0].value for entry in parsed(out / RSS_FILE).entries),
        *(entry.content[0].value for entry in parsed(out / ATOM_FILE).entries),
        *(item["content_html"] for item in json.loads((out / JSON_FILE).read_text(encoding="utf-8"))["items"]),
    ]
    assert sum(image in content for content in contents) == 3
    titles = {entry.title for entry in parsed(out / ATOM_FILE).entries}
    assert titles == {
        "Setahun jadi Backend Developer: Cerita, Pelajaran dan Lainnya",
        "Jalan Pintas Jadi Backend Developer Tanpa Background IT",
    }


def test_example_site_feeds_are_valid_and_skip_drafts_and_future_posts(make_settings, tmp_path) -> None:
    shutil.copytree(EXAMPLE_POSTS, tmp_path / "posts", dirs_exist_ok=True)
    settings = make_settings(posts={"asset_urls": {"../../assets/": f"{SITE}/assets/"}})
    build(settings, now=datetime(2026, 1, 1, tzinfo=UTC))
    out = settings.feeds.output_dir
    titles = [entry.title for entry in parsed(out / RSS_FILE).entries]
    assert "Ideas for later" not in titles and "A post scheduled for the future" not in titles
    assert "Front matter in TOML" in titles
    for folder in [out, *(out / "tags").iterdir()]:
        check_all(folder)
        assert parsed(folder / ATOM_FILE).entries, f"{folder} is empty"


# --- publication: drafts, future posts, stable ids -------------------------------------------------------------


def write_post(folder: Path, name: str, front: str, body: str = "Body text.") -> Path:
    path = folder / name
    path.write_text(f"---\n{front}\n---\n\n{body}\n", encoding="utf-8")
    return path


def guids(path: Path) -> list[str]:
    return [entry.id for entry in parsed(path).entries]


def test_future_post_appears_once_its_time_passes(make_settings, tmp_path) -> None:
    settings = make_settings()
    posts = tmp_path / "posts"
    write_post(posts, "now.md", 'title: "Now"\ndate: 2025-01-01T08:00:00+00:00\ntags: [Go]')
    write_post(posts, "later.md", 'title: "Later"\ndate: 2025-02-01T08:00:00+00:00\ntags: [Rust]')
    write_post(posts, "draft.md", 'title: "Draft"\ndate: 2025-01-01T08:00:00+00:00\ndraft: true\ntags: [Go]')
    collection, writer = Collection(settings), FeedWriter(settings)
    out = settings.feeds.output_dir

    result = build(settings, collection, writer, now=datetime(2025, 1, 15, tzinfo=UTC))
    assert [post.title for post in result.published] == ["Now"]
    assert [entry.title for entry in parsed(out / RSS_FILE).entries] == ["Now"]
    assert not (out / "tags" / "rust").exists()
    assert result.scan.next_publication(datetime(2025, 1, 15, tzinfo=UTC)) == datetime(2025, 2, 1, 8, tzinfo=UTC)

    # Nothing changed on disk: the same writer still notices the post that became due, and its new tag.
    build(settings, collection, writer, now=datetime(2025, 2, 1, 8, 0, 1, tzinfo=UTC))
    assert [entry.title for entry in parsed(out / RSS_FILE).entries] == ["Later", "Now"]
    assert [entry.title for entry in parsed(out / "tags" / "rust" / RSS_FILE).entries] == ["Later"]
    for feed in (out / RSS_FILE, out / "tags" / "go" / ATOM_FILE):
        assert "Draft" not in [entry.title for entry in parsed(feed).entries]


def test_ids_stay_stable_across_title_body_and_file_name_edits(make_settings, tmp_path) -> None:
    settings = make_settings()
    posts = tmp_path / "posts"
    now = datetime(2030, 1, 1, tzinfo=UTC)
    path = write_post(posts, "first.md", 'title: "First"\ndate: 2025-01-01\nslug: kept-slug')
    collection, writer = Collection(settings), FeedWriter(settings)
    build(settings, collection, writer, now=now)
    out = settings.feeds.output_dir
    original = {name: guids(out / name) for name in (RSS_FILE, ATOM_FILE)}
    original_json = [item["id"] for item in json.loads((out / JSON_FILE).read_text())["items"]]
    assert len(original[RSS_FILE]) == 1

    path.write_text('---\ntitle: "First, retitled"\ndate: 2025-01-01\nslug: kept-slug\n---\n\nNew body.\n')
    build(settings, collection, writer, now=now)
    assert parsed(out / RSS_FILE).entries[0].title == "First, retitled"
    path.rename(posts / "2025-01-01-renamed.md")
    result = build(settings, collection, writer, now=now)
    assert [post.title for post in result.published] == ["First, retitled"]
    assert {name: guids(out / name) for name in (RSS_FILE, ATOM_FILE)} == original
    assert [item["id"] for item in json.loads((out / JSON_FILE).read_text())["items"]] == original_json


# --- writing: unchanged input, atomic replacement, per-tag feeds ----------------------------------------------


def snapshot(out: Path) -> dict[Path, tuple[int, int]]:
    return {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in sorted(out.rglob("*")) if path.is_file()}


def test_unchanged_input_rewrites_nothing(make_settings) -> None:
    settings = make_settings()
    posts = newest_first(*(make_post(n, tags=("Go", "Web") if n % 2 else ("Go",)) for n in range(1, 6)))
    report = FeedWriter(settings).write(posts)
    out = settings.feeds.output_dir
    assert len(report.written) == 9 and not report.unchanged
    before = snapshot(out)

    # A new writer (a new process) and the same one both leave identical bytes alone.
    for writer in (FeedWriter(settings), FeedWriter(settings)):
        again = writer.write(posts)
        assert not again.written and not again.removed
        assert sorted(again.unchanged) == sorted(before)
        again = writer.write(posts, tags=set())
        assert not again.written
    assert snapshot(out) == before


def test_a_changed_feed_is_replaced_atomically(make_settings) -> None:
    settings = make_settings()
    writer = FeedWriter(settings)
    writer.write([make_post(1)])
    target = settings.feeds.output_dir / RSS_FILE
    with target.open("rb") as reader_before:
        old_bytes = target.read_bytes()
        old_inode = target.stat().st_ino
        report = writer.write(newest_first(make_post(1), make_post(2)))
        assert target in report.written
        # A reader that opened the old file keeps reading the complete old version.
        assert reader_before.read() == old_bytes
    assert target.stat().st_ino != old_inode
    assert [entry.title for entry in parsed(target).entries] == ["Post 2", "Post 1"]
    assert not [path for path in target.parent.iterdir() if path.name.endswith(".tmp")]
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)


def test_a_failed_write_keeps_the_old_files_and_leaves_no_temp_file(tmp_path, monkeypatch) -> None:
    targets = [tmp_path / name for name in ("rss.xml", "atom.xml", "feed.json")]
    for target in targets:
        target.write_bytes(b"old")

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    replaced, error = replace_files([(target, b"new") for target in targets])
    assert replaced == [] and isinstance(error, OSError) and error.errno == 28
    assert [target.read_bytes() for target in targets] == [b"old"] * 3
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(target.name for target in targets)


def test_files_after_a_failed_rename_are_not_replaced(tmp_path) -> None:
    first, second, third, fourth = (tmp_path / name for name in ("a.xml", "b.xml", "c.xml", "d.xml"))
    for path in (first, second, fourth):
        path.write_bytes(b"old")
    third.mkdir()  # a folder where a feed file should be: the rename over it fails
    replaced, error = replace_files([(first, b"new"), (second, b"old"), (third, b"new"), (fourth, b"new")])
    assert replaced == [True, False] and isinstance(error, IsADirectoryError)
    assert [first.read_bytes(), second.read_bytes(), fourth.read_bytes()] == [b"new", b"old", b"old"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.xml", "b.xml", "c.xml", "d.xml"]


def test_a_write_stopped_by_a_failing_file_reports_it_and_the_next_write_completes_it(make_settings) -> None:
    settings = make_settings()
    out = settings.feeds.output_dir
    posts = newest_first(*(make_post(n, tags=("Go",) if n % 2 else ("Web",)) for n in range(1, 5)))
    blocked = out / "tags" / "go" / ATOM_FILE
    blocked.mkdir(parents=True)  # a folder where the feed file goes: replacing it fails
    writer = FeedWriter(settings)
    report = writer.write(posts)
    assert report.error is not None and "Is a directory" in report.error
    # The files before the failing one are in place; none after it is written.
    assert report.written == [out / RSS_FILE, out / ATOM_FILE, out / JSON_FILE, out / "tags" / "go" / RSS_FILE]
    assert not (out / "tags" / "go" / JSON_FILE).exists() and not list((out / "tags").rglob("web/*"))
    blocked.rmdir()
    again = writer.write(posts, tags=set())  # the next write is complete, whatever the caller names
    assert not again.error
    assert again.unchanged == report.written
    assert {path.relative_to(out).as_posix() for path in again.written} == {
        "tags/go/atom.xml", "tags/go/feed.json", "tags/web/rss.xml", "tags/web/atom.xml", "tags/web/feed.json"
    }


def test_a_file_where_a_tag_folder_goes_stops_the_write_after_the_feeds_before_it(make_settings) -> None:
    settings = make_settings()
    out = settings.feeds.output_dir
    posts = newest_first(*(make_post(n, tags=("Go",) if n % 2 else ("Web",)) for n in range(1, 5)))
    (out / "tags").mkdir(parents=True)
    (out / "tags" / "web").write_text("not a folder")
    report = FeedWriter(settings).write(posts)
    assert report.error is not None and "File exists" in report.error
    assert report.written == [
        out / RSS_FILE, out / ATOM_FILE, out / JSON_FILE, *(out / "tags" / "go" / name for name in FEED_FILES)
    ]


def test_tag_feeds_hold_their_newest_posts_and_stale_tags_go(make_settings) -> None:
    settings = make_settings(feeds={"items": 3})
    posts = newest_first(
        *(make_post(n, tags=("Belajar Go",) if n <= 5 else ("Web", "belajar go")) for n in range(1, 9))
    )
    writer = FeedWriter(settings)
    writer.write(posts)
    out = settings.feeds.output_dir
    assert sorted(path.name for path in (out / "tags").iterdir()) == ["belajar-go", "web"]
    # Tags spelled differently share one slug; the feed takes the newest post's spelling.
    go = parsed(out / "tags" / "belajar-go" / ATOM_FILE)
    assert go.feed.title == "Test Blog: belajar go"
    assert [entry.title for entry in go.entries] == ["Post 8", "Post 7", "Post 6"]
    assert [entry.title for entry in parsed(out / RSS_FILE).entries] == ["Post 8", "Post 7", "Post 6"]
    web = json.loads((out / "tags" / "web" / JSON_FILE).read_text())
    assert web["title"] == "Test Blog: Web" and [item["title"] for item in web["items"]] == ["Post 8", "Post 7", "Post 6"]

    # "Web" leaves its posts: an incremental write names the tag, the writer removes its folder.
    retagged = [make_post(n, tags=("Belajar Go",)) for n in range(1, 9)]
    report = writer.write(newest_first(*retagged), tags={"web", "belajar-go"})
    assert not (out / "tags" / "web").exists()
    assert sorted(path.name for path in report.removed) == sorted(FEED_FILES)
    assert [entry.title for entry in parsed(out / "tags" / "belajar-go" / RSS_FILE).entries] == [
        "Post 8", "Post 7", "Post 6"
    ]
    assert [entry.tags[0].term for entry in parsed(out / "tags" / "belajar-go" / RSS_FILE).entries] == [
        "Belajar Go"
    ] * 3


def test_full_write_removes_tag_folders_no_post_uses(make_settings) -> None:
    settings = make_settings()
    out = settings.feeds.output_dir
    FeedWriter(settings).write([make_post(1, tags=("Old",))])
    (out / "tags" / "mine").mkdir()
    (out / "tags" / "mine" / "notes.txt").write_text("not a feed")
    report = FeedWriter(settings).write([make_post(1, tags=("New",))])
    assert not (out / "tags" / "old").exists()
    assert (out / "tags" / "new" / RSS_FILE).is_file()
    assert (out / "tags" / "mine" / "notes.txt").is_file(), "files feedsvc did not write are kept"
    assert sorted(report.removed) == sorted(out / "tags" / "old" / name for name in FEED_FILES)


def test_incremental_write_touches_only_the_named_tags(make_settings) -> None:
    settings = make_settings()
    writer = FeedWriter(settings)
    first = make_post(1, tags=("Go",))
    second = make_post(2, tags=("Web",))
    writer.write(newest_first(first, second))
    out = settings.feeds.output_dir
    edited = make_post(2, tags=("Web",), title="Edited")
    report = writer.write(newest_first(first, edited), tags={"web"})
    assert {path.parent.name for path in report.written} == {"public", "web"}
    assert {path.parent.name for path in report.unchanged} == set()
    assert parsed(out / "tags" / "web" / RSS_FILE).entries[0].title == "Edited"

    # A new version of a post with other tags, in the same place: both tags' feeds follow without being named.
    retagged = make_post(2, tags=("Rust",), title="Edited")
    report = writer.write(newest_first(first, retagged), tags=set())
    assert not (out / "tags" / "web").exists()
    assert parsed(out / "tags" / "rust" / RSS_FILE).entries[0].title == "Edited"
    assert {path.parent.name for path in report.written} == {"public", "rust"}

    # A post leaving the published set (deleted, or turned into a draft) updates its tag without being named.
    writer.write(newest_first(first, edited), tags={"web", "rust"})
    report = writer.write([first], tags=set())
    assert not (out / "tags" / "web").exists()
    assert (out / "tags" / "go" / RSS_FILE).is_file()


@pytest.mark.parametrize("rewrites", [False, True])
def test_rewrites_reusing_prepared_entries_give_the_bytes_of_a_fresh_writer(make_settings, tmp_path, rewrites) -> None:
    # A writer keeps each item's feedgen entry and JSON item between writes (`rewrites`: and each entry's XML):
    # what it writes after edits must be exactly what a writer starting afresh writes for the same posts.
    settings = make_settings()
    writer = FeedWriter(settings, rewrites=rewrites)
    posts = [make_post(n, tags=("Go", "Web") if n % 2 else ("Go",)) for n in range(1, 8)]
    writer.write(newest_first(*posts))
    posts[3] = make_post(4, tags=("Web", "Rust"), title="Retitled", summary_html="<p>New summary</p>")
    posts[5] = make_post(6, tags=("Go",), content_html="<p>New body</p>", author="Someone Else")
    writer.write(newest_first(*posts), tags={"go", "web", "rust"})
    out = settings.feeds.output_dir
    kept = {path.relative_to(out): path.read_bytes() for path in out.rglob("*") if path.is_file()}

    fresh = settings.model_copy(
        update={"feeds": settings.feeds.model_copy(update={"output_dir": tmp_path / "fresh"})}
    )
    FeedWriter(fresh).write(newest_first(*posts))
    assert {path.relative_to(tmp_path / "fresh"): path.read_bytes() for path in (tmp_path / "fresh").rglob("*")
            if path.is_file()} == kept
    rust = parsed(out / "tags" / "rust" / ATOM_FILE).entries
    assert [(entry.title, [tag.term for tag in entry.tags]) for entry in rust] == [("Retitled", ["Rust"])]
    site = {entry.title: entry for entry in parsed(out / RSS_FILE).entries}
    assert site["Post 6"].author == "Someone Else" and "New body" in site["Post 6"].content[0].value


# --- hub, empty feeds, hostile text ----------------------------------------------------------------------------


def test_websub_hub_is_announced_in_every_format(make_settings) -> None:
    hub = "https://hub.example.net/"
    settings = make_settings(feeds={"websub_hub": hub})
    FeedWriter(settings).write([make_post(1, tags=("Go",))])
    for folder in (settings.feeds.output_dir, settings.feeds.output_dir / "tags" / "go"):
        rss, atom, document = check_all(folder)
        assert [link.get("href") for link in rss.findall(f"{ATOM}link") if link.get("rel") == "hub"] == [hub]
        assert [link.get("href") for link in atom.findall(f"{ATOM}link") if link.get("rel") == "hub"] == [hub]
        assert document["hubs"] == [{"type": "WebSub", "url": hub}]
        assert any(link.get("rel") == "hub" and link.href == hub for link in parsed(folder / RSS_FILE).feed.links)


def test_an_empty_collection_yields_valid_empty_feeds(make_settings) -> None:
    settings = make_settings(site={"description": ""})
    FeedWriter(settings).write([])
    out = settings.feeds.output_dir
    rss, atom, document = check_all(out)
    assert rss.findall("item") == [] and atom.findall(f"{ATOM}entry") == [] and document["items"] == []
    assert rss.findtext("description") == "Test Blog"
    assert not (out / "tags").exists()


def test_xml_illegal_control_characters_are_stripped(make_settings) -> None:
    settings = make_settings()
    post = make_post(
        1,
        title="Bad\x00 \x08title\x1f",
        tags=("Ta\x0bg",),
        summary_html="<p>sum\x0cmary</p>",
        content_html="<p>con\x01tent\ufffe</p>",
    )
    FeedWriter(settings).write([post])
    out = settings.feeds.output_dir
    for filename in (RSS_FILE, ATOM_FILE):
        entry = parsed(out / filename).entries[0]
        assert entry.title == "Bad title"
        assert entry.content[0].value == "<p>content</p>"
        assert entry.summary == "<p>summary</p>"
        assert entry.tags[0].term == "Tag"
    item = json.loads((out / JSON_FILE).read_text())["items"][0]
    assert (item["title"], item["content_html"], item["tags"]) == ("Bad title", "<p>content</p>", ["Tag"])
    assert (out / "tags" / tag_slug("Ta\x0bg") / ATOM_FILE).is_file()


def test_tag_counts_tell_what_unlimited_tag_groups_tell() -> None:
    tag_sets = [("Go", "Web"), ("go",), ("Web", "C#"), ("GO", "web", "Go"), (), ("C#",), ("Go", "Web")]
    posts = newest_first(*(make_post(n, tags=tag_sets[n % len(tag_sets)]) for n in range(1, 40)))
    groups = tag_groups(posts, limit=len(posts))
    # The name is the newest post's spelling ("GO" or "go", whichever is newer), as in the tag's feed title.
    assert tag_counts(posts) == {slug: (group.name, len(group.posts)) for slug, group in groups.items()}
    assert tag_counts([]) == {}


def test_items_rendered_in_forked_processes_give_the_same_bytes(make_settings, monkeypatch) -> None:
    settings = make_settings()
    posts = newest_first(*(make_post(n, tags=("Go", "Web") if n % 2 else ("Go",)) for n in range(1, 30)))
    FeedWriter(settings).write(posts)
    out = settings.feeds.output_dir
    serial = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}

    monkeypatch.setattr("feedsvc.feeds.render._PARALLEL_RENDER_MIN", 2)
    assert threading.active_count() == 1 and (os.cpu_count() or 1) > 1  # else the items would not be forked
    for path in serial:
        path.unlink()
    FeedWriter(settings).write(posts)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == serial


def test_feeds_written_by_forked_processes_give_the_same_bytes_and_report(make_settings, monkeypatch) -> None:
    settings = make_settings()
    posts = newest_first(*(make_post(n, tags=(f"Tag {n % 5}", "Go")) for n in range(1, 30)))
    serial_report = FeedWriter(settings).write(posts)
    out = settings.feeds.output_dir
    serial = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}

    monkeypatch.setattr("feedsvc.feeds.writer._PARALLEL_WRITE_MIN", 2)
    assert threading.active_count() == 1 and (os.cpu_count() or 1) > 1  # else the feeds would not be forked
    for path in serial:
        path.unlink()
    report = FeedWriter(settings).write(posts)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == serial
    assert report.written == serial_report.written and not report.error
    assert FeedWriter(settings).write(posts).unchanged == serial_report.written

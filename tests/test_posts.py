"""feedsvc.posts: real post files in tmp_path, scanned, rescanned and linted."""

from __future__ import annotations

import collections
import gc
import html
import os
import pickle
import random
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from conftest import EXAMPLE_POSTS

from feedsvc.config import ConfigError, Settings
from feedsvc.parallel import collector_paused, fork_chunks, fork_map
from feedsvc.posts import Collection, Post, Problem, Scan, is_published, tag_slug
from feedsvc.posts.lint import lint
from feedsvc.posts.readers.yaml_front_matter import simple_yaml
from feedsvc.posts.render import SourceChanged, rendered

SITE = "https://blog.example.org"
WIB = ZoneInfo("Asia/Jakarta")
SEED_000 = "000_b3e5bbad28a0e5a3.txt"
SEED_003 = "003_446c679b87150767.txt"
EXAMPLE_WITH_IMAGE = "2025-03-17-antrian-pesan-pertamaku.txt"
URL_ATTRIBUTE = re.compile(r'\b(?:href|src)="([^"]*)"')

MakeSettings = Callable[..., Settings]


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings(
        site={"timezone": "Asia/Jakarta"},
        posts={
            "asset_urls": {
                "../../assets/": f"{SITE}/assets/",
                "../../assets/big/": "https://cdn.example.net/",
            }
        },
    )


def write(settings: Settings, name: str, text: str | bytes) -> Path:
    path = settings.posts.dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def post(title: str = "A post", date: str = "2025-04-08", body: str = "Hello.", **fields: str) -> str:
    extra = "".join(f"{key}: {value}\n" for key, value in fields.items())
    return f"---\ntitle: {title!r}\ndate: {date}\n{extra}---\n\n{body}\n"


def scan(settings: Settings) -> Scan:
    return Collection(settings).scan()


def only(found: Scan) -> Post:
    assert len(found.posts) == 1, (found.posts, [str(problem) for problem in found.problems])
    return found.posts[0]


def errors(found: Scan | list[Problem]) -> list[Problem]:
    problems = found.problems if isinstance(found, Scan) else found
    return [problem for problem in problems if problem.severity == "error"]


def assert_absolute(fragment: str) -> None:
    for url in URL_ATTRIBUTE.findall(fragment):
        assert url.startswith(("https://", "http://", "mailto:")), f"relative URL {url!r} in {fragment!r}"


# --- the two real seeds -------------------------------------------------------------------------------------


def test_seed_000_markdown_in_a_txt_file_keeps_its_text_and_maps_its_image(settings: Settings, seeds: Path) -> None:
    shutil.copy(seeds / SEED_000, settings.posts.dir / SEED_000)
    found = scan(settings)
    seed = only(found)
    source = (seeds / SEED_000).read_text(encoding="utf-8")

    assert found.problems == []
    assert seed.title == "Setahun jadi Backend Developer: Cerita, Pelajaran dan Lainnya"
    assert seed.slug == "setahun-jadi-backend-developer"
    assert seed.date == datetime(2025, 4, 8, tzinfo=WIB)
    assert seed.tags == ("Random", "Journey")
    assert seed.url == f"{SITE}/setahun-jadi-backend-developer/"
    assert seed.author == "Test Author"
    content = rendered(seed).content_html
    assert "<h2>Pembuka</h2>" in content  # Markdown, although the file is .txt
    for text in ("agak lebay 😅", "lewat LinkedIn—dan ketemu satu", "Love you all! ❤️"):
        assert text in source and text in content
    assert f'<img src="{SITE}/assets/blogs/chat.png" alt="Chat">' in content
    assert_absolute(content)
    assert_absolute(rendered(seed).summary_html)
    assert rendered(seed).summary_html.startswith("<p>Halo semuanya, ini postingan pertamaku di Artikel.")


def test_seed_003_without_front_matter_is_readable_plain_text(settings: Settings, seeds: Path) -> None:
    path = settings.posts.dir / SEED_003
    shutil.copy(seeds / SEED_003, path)
    modified = datetime(2025, 7, 20, 14, 30, tzinfo=UTC)
    os.utime(path, (modified.timestamp(), modified.timestamp()))
    found = scan(settings)
    seed = only(found)

    assert seed.title == "Jalan Pintas Jadi Backend Developer Tanpa Background IT"
    assert seed.date == modified and seed.date.tzinfo == WIB
    assert [(problem.severity, problem.path) for problem in found.problems] == [("warning", path)]
    assert "modification time" in str(found.problems[0])
    assert str(found.problems[0]).startswith(f"posts/{SEED_003}: ")

    content = rendered(seed).content_html
    assert not content.startswith("<p>Jalan Pintas")  # the title line is not repeated in the body
    assert "“orang belakang layar”" in content
    lines = {segment.strip() for segment in re.split(r"<br>|</?p>", content)}
    source_lines = [line.strip() for line in (seeds / SEED_003).read_text(encoding="utf-8").splitlines()]
    listed = [line for line in source_lines if line.startswith("•") or re.match(r"\d+\. ", line)]
    assert len(listed) >= 15
    for line in listed:
        assert html.escape(line, quote=False) in lines, f"{line!r} is not on a line of its own"
    assert rendered(seed).summary_html.startswith("<p>Siapa bilang jadi backend developer")


# --- front matter -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '---\ntitle: "Hello"\ndate: 2025-05-02T09:30:00+07:00\ntags: [A, B]\n---\nBody *here*.\n',
        '+++\ntitle = "Hello"\ndate = 2025-05-02T09:30:00+07:00\ntags = ["A", "B"]\n+++\nBody *here*.\n',
        (
            '{\n  "title": "Hello",\n  "date": "2025-05-02T09:30:00+07:00",\n  "tags": ["A", "B"]\n}\n'
            "Body *here*.\n"
        ),
    ],
    ids=["yaml", "toml", "json"],
)
def test_front_matter_formats(settings: Settings, text: str) -> None:
    write(settings, "hello.md", text)
    found = scan(settings)
    hello = only(found)
    assert found.problems == []
    assert (hello.title, hello.date, hello.tags) == (
        "Hello",
        datetime(2025, 5, 2, 9, 30, tzinfo=WIB),
        ("A", "B"),
    )
    assert rendered(hello).content_html == "<p>Body <em>here</em>.</p>\n"


def test_bom_and_crlf(settings: Settings) -> None:
    write(
        settings,
        "windows.md",
        "\ufeff---\r\ntitle: Windows\r\ndate: 2025-01-02\r\n---\r\n\r\nLine one\r\n\r\nLine two\r\n".encode(),
    )
    found = scan(settings)
    windows = only(found)
    assert found.problems == []
    assert windows.title == "Windows"
    assert rendered(windows).content_html == "<p>Line one</p>\n<p>Line two</p>\n"


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2025-04-08", datetime(2025, 4, 8, tzinfo=WIB)),
        ("2025-04-08 10:15:00", datetime(2025, 4, 8, 10, 15, tzinfo=WIB)),
        ("2025-04-08T10:15:00+02:00", datetime(2025, 4, 8, 10, 15, tzinfo=timezone(timedelta(hours=2)))),
        ("'2025-04-08T10:15:00Z'", datetime(2025, 4, 8, 10, 15, tzinfo=UTC)),
        (
            "'Tue, 08 Apr 2025 10:15:00 +0200'",
            datetime(2025, 4, 8, 10, 15, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("'2025-04-08T10:15'", datetime(2025, 4, 8, 10, 15, tzinfo=WIB)),
    ],
    ids=["date-only", "naive", "aware", "iso-string-z", "rfc822", "naive-string"],
)
def test_dates(settings: Settings, written: str, expected: datetime) -> None:
    write(settings, "dated.md", post(date=written, updated="2025-05-01"))
    dated = only(scan(settings))
    assert dated.date == expected
    assert dated.date.utcoffset() == expected.utcoffset()  # an aware date keeps its own offset
    assert dated.updated == datetime(2025, 5, 1, tzinfo=WIB)


def test_slug_from_the_file_name_and_url_pattern(make_settings: MakeSettings) -> None:
    settings = make_settings(posts={"url_pattern": "{site_url}/{year}/{month}/{day}/{slug}.html"})
    write(settings, "2025-04-08-Hello World!.md", post(date="2025-04-08T23:30:00-02:00"))
    write(settings, "deep/er/Café Crème.markdown", post(date="2025-01-01"))
    write(settings, "named.md", post(slug="'Given Slug'"))
    slugs = {found.slug: found for found in scan(settings).posts}
    assert set(slugs) == {"hello-world", "cafe-creme", "given-slug"}
    # Year/month/day in the site's time zone (UTC here), not in the offset the date was written with.
    assert slugs["hello-world"].url == f"{SITE}/2025/04/09/hello-world.html"
    assert slugs["cafe-creme"].source == settings.posts.dir / "deep/er/Café Crème.markdown"


def test_id_is_stable_across_title_body_and_file_name_edits(settings: Settings) -> None:
    first = write(settings, "first-name.md", post(title="Old title", body="Old body", slug="kept"))
    collection = Collection(settings)
    before = only(collection.scan())
    assert before.id == "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{SITE}/kept"))
    first.unlink()
    write(settings, "renamed.md", post(title="New title", body="New body", slug="kept"))
    after = only(collection.scan())
    assert (after.title, after.id) == ("New title", before.id)
    write(settings, "explicit.md", post(slug="other", id="tag:blog.example.org,2025:1"))
    assert {found.id for found in collection.scan().posts} == {before.id, "tag:blog.example.org,2025:1"}


def test_drafts_future_posts_and_next_publication(settings: Settings) -> None:
    write(settings, "old.md", post(title="Old", date="2025-01-01T08:00:00+07:00"))
    write(settings, "draft.md", post(title="Draft", date="2025-01-02", draft="true"))
    write(settings, "soon.md", post(title="Soon", date="2025-03-01T08:00:00+07:00"))
    write(settings, "later.md", post(title="Later", date="2025-06-01T08:00:00+07:00"))
    write(settings, "future-draft.md", post(title="Future draft", date="2025-02-01", draft="true"))
    found = scan(settings)
    assert [item.title for item in found.posts] == ["Later", "Soon", "Future draft", "Draft", "Old"]

    january = datetime(2025, 1, 15, tzinfo=WIB)
    assert [item.title for item in found.published(january)] == ["Old"]
    assert found.next_publication(january) == datetime(2025, 3, 1, 8, tzinfo=WIB)
    april = datetime(2025, 4, 1, tzinfo=WIB)
    assert [item.title for item in found.published(april)] == ["Soon", "Old"]
    assert found.next_publication(april) == datetime(2025, 6, 1, 8, tzinfo=WIB)
    assert found.next_publication(datetime(2026, 1, 1, tzinfo=WIB)) is None
    assert not is_published(found.posts[2], datetime(2030, 1, 1, tzinfo=WIB))  # a draft, whatever the date


def _answers_as_every_post_says(found: Scan, now: datetime) -> None:
    """`found` answers as the same posts do when every one of them is looked at (`held` not known)."""
    every = Scan(list(found.posts), [], set(), set())
    assert found.published(now) == every.published(now)
    assert found.next_publication(now) == every.next_publication(now)


def test_published_posts_follow_edits_in_place_as_a_look_at_every_post_does(settings: Settings) -> None:
    """`published` and `next_publication` skip the posts they need not look at (see `Scan.held`): after edits in
    place that turn posts into drafts and back, move their dates or keep them, they answer as a look at every post
    does, and the posts stay in the order of a new collection's scan."""
    rng = random.Random(7)
    days = [datetime(2025, 1, 1, 8, tzinfo=WIB) + timedelta(days=rng.randint(0, 40)) for _ in range(60)]
    paths = []
    for number, day in enumerate(days):  # many share a date: the order among them is by slug
        draft = str(rng.random() < 0.2).lower()
        paths.append(write(settings, f"p{number:02d}.md", post(title=f"P{number}", date=day.isoformat(), draft=draft)))
    collection = Collection(settings)
    found = collection.scan()
    moments = [datetime(2024, 12, 1, tzinfo=WIB), *days[::7], datetime(2026, 1, 1, tzinfo=WIB)]
    for round_number in range(25):
        edited = rng.sample(paths, rng.randint(1, 3))
        for path in edited:
            number = int(path.stem[1:])
            if rng.random() < 0.3:
                days[number] += timedelta(days=rng.choice([-3, 0, 5]))
            draft = str(rng.random() < 0.25).lower()
            path.write_text(post(title=f"P{number} r{round_number}", date=days[number].isoformat(), draft=draft))
        found = collection.scan(set(edited))
        assert found.held is not None
        assert found.posts == Collection(settings).scan().posts
        for now in moments:
            _answers_as_every_post_says(found, now)


def test_published_posts_with_expiry_dates_as_a_look_at_every_post_does() -> None:
    rng = random.Random(11)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    posts = []
    for number in range(80):
        day = start + timedelta(days=rng.randint(0, 30))
        expires = day + timedelta(days=rng.randint(1, 20)) if rng.random() < 0.3 else None
        fields = {"id": f"p{number}", "slug": f"p{number:02d}", "title": f"P{number}", "url": f"{SITE}/p{number}/"}
        posts.append(
            Post(
                **fields, date=day, updated=None, tags=(), author="A", image=None, draft=rng.random() < 0.15,
                source=Path(f"p{number}.md"), expires=expires,
            )
        )
    posts.sort(key=lambda item: (item.date.timestamp(), item.slug), reverse=True)
    held = [place for place, item in enumerate(posts) if item.draft or item.expires is not None]
    found = Scan(posts, [], set(), set(), held)
    for offset in range(-2, 55):
        _answers_as_every_post_says(found, start + timedelta(days=offset, hours=rng.choice([0, 12])))


def test_summaries(settings: Settings) -> None:
    write(
        settings,
        "given.md",
        post(title="Given", summary="'See [the other](../other/) **now**'", body="Body."),
    )
    write(settings, "more.md", post(title="More", body="Teaser [link](#part).\n\n<!--more-->\n\nThe rest."))
    write(
        settings,
        "first.md",
        post(
            title="First",
            body="# Heading\n\n![only an image](pic.png)\n\nThe *first* paragraph.\n\nSecond one.",
        ),
    )
    write(
        settings,
        "code.md",
        post(title="Code", body="    an indented code block\n\n    more code\n\nProse *after* it."),
    )
    summaries = {found.title: rendered(found).summary_html for found in scan(settings).posts}
    assert summaries["Given"] == f'<p>See <a href="{SITE}/other/">the other</a> <strong>now</strong></p>\n'
    assert summaries["More"] == f'<p>Teaser <a href="{SITE}/more/#part">link</a>.</p>\n'
    assert summaries["First"] == "<p>The <em>first</em> paragraph.</p>\n"
    assert summaries["Code"] == "<p>Prose <em>after</em> it.</p>\n"


def test_markup_choice_and_override(settings: Settings) -> None:
    write(
        settings,
        "md-as-text.md",
        post(
            title="Text",
            markup="text",
            body="*not emphasis*\nsecond line <b>x</b>\nsee https://example.org/a.",
        ),
    )
    write(settings, "txt-as-markdown.txt", post(title="Markdown", body="*emphasis*"))
    write(settings, "plain.md", "# Plain heading\n\nSome *markdown* body.\n")
    html_of = {found.title: rendered(found).content_html for found in scan(settings).posts}
    assert html_of["Text"] == (
        "<p>*not emphasis*<br>\nsecond line &lt;b&gt;x&lt;/b&gt;<br>\n"
        'see <a href="https://example.org/a">https://example.org/a</a>.</p>'
    )
    assert html_of["Markdown"] == "<p><em>emphasis</em></p>\n"
    assert html_of["Plain heading"] == "<p>Some <em>markdown</em> body.</p>\n"


def test_links_become_absolute_and_unsafe_ones_go(settings: Settings) -> None:
    body = (
        "[rel](../other/) [anchor](#part) [mail](mailto:me@example.org) [abs](https://x.example/y) "
        "[js](javascript:alert(1)) ![a](../../assets/a.png) ![b](../../assets/big/b.png)\n\n"
        '<a href="JavaScript:alert(2)" onclick="x()">raw</a> <img src="pic.png" onerror="x()">'
        "<script>alert(3)</script>\n\n"
        "| a | b |\n|---|---|\n| 1 | ~~2~~ |\n"
    )
    write(settings, "links.md", post(title="Links", body=body, image="../../assets/cover.png"))
    links = only(scan(settings))
    content = rendered(links).content_html
    assert URL_ATTRIBUTE.findall(content) == [
        f"{SITE}/other/",
        f"{SITE}/links/#part",
        "mailto:me@example.org",
        "https://x.example/y",
        f"{SITE}/assets/a.png",
        "https://cdn.example.net/b.png",  # the longest matching prefix wins
        f"{SITE}/links/pic.png",
    ]
    # markdown-it leaves a javascript: link as literal text; raw HTML loses the link, handlers and scripts.
    assert "[js](javascript:alert(1))" in content
    assert "alert(2)" not in content and "alert(3)" not in content and "<script" not in content
    assert "onclick" not in content and "onerror" not in content
    assert "<table>" in content and "<s>2</s>" in content
    assert links.image == f"{SITE}/assets/cover.png"


def test_tags_and_categories(settings: Settings) -> None:
    write(settings, "tagged.md", post(tags="'Go, Python, go'", categories="[Belajar Go!, python, Café]"))
    assert only(scan(settings)).tags == ("Go", "Python", "Belajar Go!", "Café")


@pytest.mark.parametrize(
    ("tag", "slug"),
    [
        ("Random", "random"),
        ("Belajar Go!", "belajar-go"),
        ("Café Crème", "cafe-creme"),
        ("Straße", "strasse"),
        ("日本語", "日本語"),
        ("C++", "c-plus-plus"),  # C, C# and C++ are three tags: three feeds
        ("C#", "c-sharp"),
        ("C", "c"),
    ],
)
def test_tag_slug(tag: str, slug: str) -> None:
    assert tag_slug(tag) == slug


def test_tag_slug_is_never_empty() -> None:
    assert tag_slug("!!!") and tag_slug("!!!") == tag_slug("!!!") != tag_slug("???")


def test_a_post_built_by_hand_keeps_its_html() -> None:
    built = Post(
        id="1",
        slug="s",
        title="T",
        date=datetime(2025, 1, 1, tzinfo=WIB),
        updated=None,
        url=f"{SITE}/s/",
        tags=(),
        summary_html="<p>S</p>",
        author="A",
        image=None,
        draft=False,
        source=Path("s.md"),
        content_html="<p>C</p>",
    )
    assert (rendered(built).summary_html, rendered(built).content_html) == ("<p>S</p>", "<p>C</p>")


# --- bad input ----------------------------------------------------------------------------------------------


def _malformed(settings: Settings) -> dict[str, str]:
    """Write one broken file per kind; returns {file name: words its one error must contain}."""
    posts = settings.posts.dir
    expected = {
        "yaml.md": ("---\ntitle: [unclosed\ndate: 2025-01-01\n---\nx\n", "invalid YAML"),
        "toml.md": ('+++\ntitle = "x"\ndate = = 2025\n+++\nx\n', "invalid TOML"),
        "json.md": ('{\n  "title": "x",\n  "date": 2025-01-01\n}\nx\n', "invalid JSON"),
        "unclosed.md": ("---\ntitle: x\n\nNo closing fence.\n", "never closed"),
        "bad-date.md": (post(date="yesterday"), "invalid date 'yesterday'"),
        "date-list.md": (post(date="[1, 2]"), "invalid date list"),
        "bad-updated.md": (post(updated="soon"), "invalid updated 'soon'"),
        "latin1.md": ("---\ntitle: Caf\xe9\n---\nx\n".encode("latin-1"), "not valid UTF-8"),
        "empty.md": (b"", "empty file"),
        "blank.txt": (b" \n\r\n\t\n", "empty file"),
        "list-front-matter.md": ("---\n- a\n- b\n---\nx\n", "not a mapping"),
        "scalar-front-matter.md": ("---\njust text\n---\nx\n", "not a mapping"),
        "title-list.md": ("---\ntitle: [a, b]\ndate: 2025-01-01\n---\nx\n", "title must be text"),
        "binary.md": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "NUL byte"),
        "nul.md": (post().encode() + b"\x00tail", "NUL byte"),
        "tags-mapping.md": (post(tags="{a: 1}"), "tags must be"),
        "draft-maybe.md": (post(draft="maybe"), "draft must be true or false"),
        "markup.md": (post(markup="rst"), "unknown markup"),
        "slug-symbols.md": (post(slug="'!!!'"), "no letters or digits"),
        "z-duplicate-slug.md": (post(slug="good-one"), "duplicate slug 'good-one': posts/good-one.md"),
        "z-duplicate-id.md": (
            post(id="'the-id'", slug="another"),
            "duplicate id 'the-id': posts/good-two.md",
        ),
        "huge.md": (b"", "file is 20971520 bytes, over posts.max_file_bytes"),
    }
    for name, (content, _) in expected.items():
        write(settings, name, content)
    # 20 MB, sparse: reporting it must not need reading it.
    with (posts / "huge.md").open("r+b") as huge:
        huge.truncate(20 * 1024 * 1024)
    (posts / "loop.md").symlink_to("loop.md")
    (posts / "dangling.md").symlink_to("missing-target.md")
    (posts / "folder.md").mkdir()
    os.mkfifo(posts / "fifo.md")
    messages = {name: words for name, (_, words) in expected.items()}
    messages |= {
        "loop.md": "symlink loop",
        "dangling.md": "dangling symlink",
        "folder.md": "is a folder",
        "fifo.md": "not a regular file",
    }
    if os.geteuid() != 0:  # root reads anything
        write(settings, "locked.md", post()).chmod(0)
        messages["locked.md"] = "permission denied"
    return messages


def test_malformed_corpus_gives_one_error_per_file_and_loses_no_good_post(settings: Settings) -> None:
    write(settings, "good-one.md", post(title="Good one"))
    write(settings, "good-two.md", post(title="Good two", id="the-id"))
    write(settings, "good-three.txt", "Good three\n\nPlain text.\n")
    expected = _malformed(settings)
    assert len(expected) >= 20
    found = scan(settings)

    assert sorted(item.title for item in found.published(datetime(2030, 1, 1, tzinfo=WIB))) == [
        "Good one",
        "Good three",
        "Good two",
    ]
    by_file: dict[str, list[Problem]] = {}
    for problem in errors(found):
        by_file.setdefault(problem.path.name, []).append(problem)
    assert set(by_file) == set(expected)
    for name, words in expected.items():
        [problem] = by_file[name]
        assert str(problem).startswith(f"posts/{name}"), str(problem)
        assert words in problem.message, str(problem)
    warnings = {problem.path.name for problem in found.problems if problem.severity == "warning"}
    assert warnings == {"good-three.txt"}  # its date comes from the file


def test_a_file_no_scan_could_read_is_tried_again_by_scans_of_other_files(settings: Settings, monkeypatch) -> None:
    good = write(settings, "good.md", post(title="Good"))
    write(settings, "flaky.md", post(title="Flaky"))
    failures = iter([True, True])  # its first two reads fail, as on a disk giving I/O errors
    real_parse = Collection._parse

    def parse(self: Collection, path: Path, info: os.stat_result, problems: list[Problem]):
        if path.name == "flaky.md" and next(failures, False):
            problems.append(self.site.problem(path, None, "cannot read the file: input/output error"))
            return None
        return real_parse(self, path, info, problems)

    monkeypatch.setattr(Collection, "_parse", parse)
    collection = Collection(settings)
    assert [problem.path.name for problem in errors(collection.scan())] == ["flaky.md"]
    good.write_text(post(title="Good, edited"), encoding="utf-8")
    found = collection.scan({good})  # flaky.md, not named, is read again (and fails again)
    assert [problem.path.name for problem in errors(found)] == ["flaky.md"]
    good.write_text(post(title="Good, edited again"), encoding="utf-8")
    found = collection.scan({good})
    assert not errors(found)
    assert sorted(item.title for item in found.posts) == ["Flaky", "Good, edited again"]


def test_problems_name_the_line(settings: Settings) -> None:
    write(settings, "when.md", "---\ntitle: x\n\ndate: yesterday\n---\nx\n")
    write(settings, "yaml.md", "---\ntitle: x\ntags: [a\ndate: 2025-01-01\n---\nx\n")
    write(settings, "toml.md", '+++\ntitle = "x"\n\nbad line\n+++\nx\n')
    write(settings, "json.md", '{\n  "title": "x",\n  "date": oops\n}\nx\n')
    shown = sorted(str(problem).split(" ")[0] for problem in errors(scan(settings)))
    assert shown == ["posts/json.md:3:", "posts/toml.md:4:", "posts/when.md:4:", "posts/yaml.md:4:"]


def test_hidden_and_editor_files_are_ignored(settings: Settings) -> None:
    write(settings, "real.md", post())
    for name in (
        ".hidden.md",
        ".#real.md",
        "real.md~",
        ".real.md.swp",
        "4913",
        "real.md.tmp",
        "#real.md#",
        ".git/config.md",
        "notes.rst",
    ):
        write(settings, name, "---\n: broken [\n")
    found = scan(settings)
    assert [item.source.name for item in found.posts] == ["real.md"]
    assert found.problems == []


# --- incremental scans and the cache ------------------------------------------------------------------------


def test_incremental_scan_parses_only_what_changed(settings: Settings) -> None:
    for number in range(5):
        write(
            settings,
            f"post-{number}.md",
            post(title=f"Post {number}", slug=f"p{number}", tags=f"[T{number}]"),
        )
    collection = Collection(settings)
    first = collection.scan()
    assert collection.parses == 5
    assert first.changed_ids == {item.id for item in first.posts}
    assert first.changed_tags == {f"t{number}" for number in range(5)}

    unchanged = collection.scan()
    assert (collection.parses, unchanged.changed_ids, unchanged.changed_tags) == (5, set(), set())

    edited = write(
        settings, "post-2.md", post(title="Post 2, edited", slug="p2", tags="[New tag]", body="Longer body.")
    )
    second = collection.scan()
    assert collection.parses == 6
    ids = {item.slug: item.id for item in second.posts}
    assert second.changed_ids == {ids["p2"]}
    assert second.changed_tags == {"t2", "new-tag"}
    assert edited in {item.source for item in second.posts}

    (settings.posts.dir / "post-4.md").unlink()
    write(settings, "post-9.md", post(title="Post 9", slug="p9"))
    third = collection.scan()
    assert collection.parses == 7
    assert third.changed_ids == {ids["p4"], {item.slug: item.id for item in third.posts}["p9"]}
    assert third.changed_tags == {"t4"}
    assert len(third.posts) == 5


def test_scan_of_reported_paths_only(settings: Settings) -> None:
    a = write(settings, "a.md", post(title="A", slug="a"))
    write(settings, "b.md", post(title="B", slug="b"))
    collection = Collection(settings)
    collection.scan()
    a.write_text(post(title="A2", slug="a", body="changed"))
    c = write(settings, "c.md", post(title="C", slug="c"))
    found = collection.scan([a])  # c.md was not reported: not looked at yet
    assert sorted(item.title for item in found.posts) == ["A2", "B"]
    assert collection.parses == 3
    (settings.posts.dir / "b.md").unlink()
    found = collection.scan([c, settings.posts.dir / "b.md"])
    assert sorted(item.title for item in found.posts) == ["A2", "C"]
    (settings.posts.dir / "sub").mkdir()
    write(settings, "sub/d.md", post(title="D", slug="d"))
    assert "D" in {item.title for item in collection.scan([settings.posts.dir / "sub"]).posts}


def test_cache_survives_a_restart(settings: Settings) -> None:
    for number in range(4):
        write(settings, f"post-{number}.md", post(title=f"Post {number}", slug=f"p{number}"))
    first = Collection(settings)
    before = first.scan()
    write(settings, "post-1.md", post(title="Post 1 edited", slug="p1"))
    first.scan()  # appended to the cache as a change
    assert (settings.store.dir / "posts-cache.pickle").is_file()

    restarted = Collection(settings)
    after = restarted.scan()
    assert restarted.parses == 0
    assert after.changed_ids == {item.id for item in before.posts}  # the first scan of a process: everything
    assert {item.title for item in after.posts} == {"Post 0", "Post 1 edited", "Post 2", "Post 3"}
    assert rendered(after.posts[0]).content_html == "<p>Hello.</p>\n"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_damaged_cache_is_rebuilt(settings: Settings, damage: str) -> None:
    for number in range(3):
        write(settings, f"post-{number}.md", post(title=f"Post {number}", slug=f"p{number}"))
    Collection(settings).scan()
    cache = settings.store.dir / "posts-cache.pickle"
    data = cache.read_bytes()
    cache.write_bytes(
        {"garbage": b"not a pickle at all", "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    collection = Collection(settings)
    found = collection.scan()
    assert collection.parses == 3 and len(found.posts) == 3 and found.problems == []
    restarted = Collection(settings)
    restarted.scan()
    assert restarted.parses == 0  # rewritten whole


def test_a_delta_cut_short_by_a_crash_costs_only_its_files(settings: Settings) -> None:
    for number in range(4):
        write(settings, f"post-{number}.md", post(title=f"Post {number}", slug=f"p{number}"))
    collection = Collection(settings)
    collection.scan()
    write(settings, "post-2.md", post(title="Post 2 edited", slug="p2"))
    collection.scan()  # appends one delta
    cache = settings.store.dir / "posts-cache.pickle"
    cache.write_bytes(cache.read_bytes()[:-5])
    restarted = Collection(settings)
    assert {item.title for item in restarted.scan().posts} == {"Post 0", "Post 1", "Post 2 edited", "Post 3"}
    assert restarted.parses == 1
    again = Collection(settings)
    again.scan()
    assert again.parses == 0  # the broken tail was replaced by a whole snapshot


def test_an_unwritable_cache_is_a_warning(settings: Settings, tmp_path: Path) -> None:
    write(settings, "a.md", post(slug="a"))
    (tmp_path / "not-a-folder").write_text("")
    found = Collection(settings, tmp_path / "not-a-folder" / "cache.pickle").scan()
    assert len(found.posts) == 1
    [problem] = found.problems
    assert problem.severity == "warning" and "cannot write the posts cache" in problem.message


@pytest.mark.parametrize(
    "change",
    [
        {"site": {"url": "https://new.example.org"}},
        {"posts": {"url_pattern": "{site_url}/p/{slug}/"}},
        {"posts": {"asset_urls": {"../": "https://cdn.example.net/"}}},
        {"site": {"timezone": "Asia/Jakarta"}},
        {"posts": {"max_file_bytes": 20}},
    ],
    ids=["site-url", "url-pattern", "asset-urls", "timezone", "max-file-bytes"],
)
def test_changed_settings_invalidate_the_cache(
    make_settings: MakeSettings, change: dict[str, dict[str, object]]
) -> None:
    settings = make_settings()
    write(settings, "a.md", post(slug="a", date="2025-01-01T12:00:00"))
    before = only(Collection(settings).scan())
    collection = Collection(make_settings(**change))
    found = collection.scan()
    assert collection.parses == 1
    assert found.posts != [before] or found.problems


# --- lint ---------------------------------------------------------------------------------------------------


def test_lint(make_settings: MakeSettings, tmp_path: Path) -> None:
    settings = make_settings(
        posts={"asset_urls": {"../../assets/": f"{SITE}/assets/"}, "asset_dirs": {"../../assets/": "assets"}}
    )
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "there.png").write_bytes(b"png")
    write(settings, "pics/beside.png", b"png")
    write(
        settings,
        "pics/fine.md",
        post(slug="fine", body="![x](../../assets/there.png) ![y](beside.png) [z](../other/)"),
    )
    write(
        settings,
        "broken.md",
        post(slug="broken", body="Text\n\n![gone](../../assets/gone.png)\n\n![far](../../../up.png)\n"),
    )
    write(settings, "untitled.md", "---\ndate: 2025-01-01\nimage: missing-cover.jpg\n---\nNo title here.\n")
    write(settings, "zz-dup.md", post(slug="fine"))
    found = scan(settings)
    problems = [str(problem) for problem in lint(settings, found)]
    assert problems == [
        "posts/broken.md:9: image '../../assets/gone.png' not found: no file assets/gone.png",
        (
            "posts/broken.md:11: image '../../../up.png' cannot be resolved to a URL of the site "
            f"(it climbs above {SITE}/): map its prefix in posts.asset_urls"
        ),
        "posts/untitled.md:2: no title in the front matter: using 'untitled' from the file name",
        "posts/untitled.md:3: image 'missing-cover.jpg' not found: no file posts/missing-cover.jpg",
        "posts/zz-dup.md: duplicate slug 'fine': posts/pics/fine.md already uses it; skipped",
    ]


def test_lint_of_a_relative_image_without_asset_urls(make_settings: MakeSettings) -> None:
    settings = make_settings()
    shutil.copy(EXAMPLE_POSTS / EXAMPLE_WITH_IMAGE, settings.posts.dir / EXAMPLE_WITH_IMAGE)
    [problem] = lint(settings, scan(settings))
    assert (
        problem.severity == "warning"
        and "'../../assets/blogs/chat.png' cannot be resolved" in problem.message
    )


def test_dates_of_date_objects_only(settings: Settings) -> None:
    # TOML local dates and YAML dates are date objects: midnight in the site's zone.
    write(settings, "toml-date.md", '+++\ntitle = "T"\ndate = 2025-02-03\n+++\nx\n')
    assert only(scan(settings)).date == datetime.combine(date(2025, 2, 3), datetime.min.time(), WIB)


@pytest.mark.parametrize("pattern", ["{site_url}/{slg}/", "{site_url}/{slug", "{site_url}/posts/"])
def test_a_bad_url_pattern_is_a_configuration_error(make_settings: MakeSettings, pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"posts\.url_pattern"):
        make_settings(posts={"url_pattern": pattern})


def test_the_quick_yaml_reader_agrees_with_pyyaml() -> None:
    # Front matter the quick path accepts must read exactly as PyYAML's base loader reads it; anything it
    # is unsure of goes to PyYAML. Random values built from YAML's special characters probe the boundary.
    rng = random.Random(20250408)
    alphabet = [*"ab :,-[]{}#'\"\\?!&*|>%@`\t~x1\n", ": ", ", ", " #", "''", "a b"]
    accepted = 0
    for number in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        raw = f"key: {value}\nother: [{value}]\n" if number % 2 else f"key: {value}\n"
        quick = simple_yaml(raw)
        if quick is None:
            continue
        accepted += 1
        try:
            expected = yaml.load(raw, Loader=yaml.CBaseLoader)
        except yaml.YAMLError:
            expected = "an error"
        assert quick == expected, raw
    assert accepted > 1000


def test_a_large_cold_parse_shared_out_over_processes_gives_the_same_scan(settings, monkeypatch):
    for n in range(40):
        write(settings, f"post-{n:02}.md", post(title=f"Post {n}", date=f"2025-03-{n % 28 + 1:02}", tags="[a, b]"))
    write(settings, "broken.md", "---\ntitle: [unclosed\n---\nx\n")
    write(settings, "nameless.md", "---\ndate: 2025-01-01\n---\nBody.\n")
    serial = Collection(settings, cache_path=settings.store.dir / "serial.pickle").scan()

    monkeypatch.setattr("feedsvc.posts.collection._PARALLEL_PARSE_MIN", 4)
    assert threading.active_count() == 1 and (os.cpu_count() or 1) > 1  # else the parse would not fork
    forked = Collection(settings, cache_path=settings.store.dir / "forked.pickle")
    parallel = forked.scan()
    assert forked.parses == 42
    assert [(p.id, p.title, p.date, p.tags, p.url) for p in parallel.posts] == [
        (p.id, p.title, p.date, p.tags, p.url) for p in serial.posts
    ]
    assert [str(problem) for problem in parallel.problems] == [str(problem) for problem in serial.problems]
    assert rendered(parallel.posts[0]).content_html == rendered(serial.posts[0]).content_html
    # The entries the children parsed were cached like any others: a new process re-parses nothing.
    again = Collection(settings, cache_path=settings.store.dir / "forked.pickle")
    again.scan()
    assert again.parses == 0
    # A change appended to that cache is read back on top of it.
    edited = write(settings, "post-07.md", post(title="Post 7, retitled", date="2025-03-08", tags="[a, b]"))
    again.scan([edited])
    third = Collection(settings, cache_path=settings.store.dir / "forked.pickle")
    assert "Post 7, retitled" in [p.title for p in third.scan().posts] and third.parses == 0


def test_a_post_comes_back_from_a_pickle_equal_with_its_source_a_path(settings):
    write(settings, "pickled.md", post(title="Pickled", date="2025-03-01", tags="[a]"))
    (original,) = scan(settings).posts
    pickled = pickle.dumps(original, pickle.HIGHEST_PROTOCOL)
    assert b"PosixPath" not in pickled  # the path goes as its text, half the cost to take back in
    copy = pickle.loads(pickled)
    assert copy == original and isinstance(copy.source, Path) and copy.source == original.source
    assert [getattr(copy, name) for name in original.__slots__] == [getattr(original, name) for name in original.__slots__]


def test_shared_work_gives_every_item_to_one_share_and_this_process_its_smaller_own_share():
    assert threading.active_count() == 1 and (os.cpu_count() or 1) > 1  # else nothing would be forked
    items = list(range(1000))
    shares = fork_chunks(lambda share: (os.getpid(), share), items, min_items=10, own_share=0.8)
    assert sorted(item for _, share in shares for item in share) == items
    assert shares[0][0] == os.getpid() and all(pid != os.getpid() for pid, _ in shares[1:])
    assert len(shares[0][1]) < min(len(share) for _, share in shares[1:])
    # fork_map with uneven shares gives each result back at its item's place, this process's share the largest.
    mapped = fork_map(lambda item: (item * 2, os.getpid()), items, min_items=10, own_share=1.25)
    assert [doubled for doubled, _ in mapped] == [item * 2 for item in items]
    counts = collections.Counter(pid for _, pid in mapped)
    assert len(counts) > 1 and counts.most_common(1)[0][0] == os.getpid()
    # An even split (the default) keeps share k of n as items k, k + n, k + 2n...
    even = fork_chunks(lambda share: share, items, min_items=10)
    assert even == [items[start :: len(even)] for start in range(len(even))]


def test_the_collector_is_off_while_shares_are_worked_on_and_what_is_kept_is_frozen_before_it_is_back_on():
    assert gc.isenabled()
    assert set(fork_chunks(lambda share: gc.isenabled(), list(range(100)), min_items=10)) == {False}
    assert gc.isenabled()
    frozen = gc.get_freeze_count()  # what an earlier large parse in this process froze
    with pytest.raises(ValueError), collector_paused(keep=True):
        raise ValueError("a failed parse keeps nothing")
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    with collector_paused(keep=True):
        kept = [[index] for index in range(1000)]
    assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(kept)


def test_shared_work_in_pieces_gives_each_share_piece_by_piece_and_a_later_pieces_failure():
    assert threading.active_count() == 1 and (os.cpu_count() or 1) > 1  # else nothing would be forked
    items = list(range(1001))
    parent = os.getpid()
    results = fork_chunks(lambda piece: (os.getpid(), piece), items, min_items=10, pieces=4)
    workers = len(results) // 4
    assert len(results) == workers * 4 and workers > 1
    for share in range(workers):
        pids = {pid for pid, _ in results[share * 4 : share * 4 + 4]}
        assert (pids == {parent}) == (share == 0) and len(pids) == 1
        # The pieces of a share, in order, are that share: items k, k + n, k + 2n...
        assert [item for _, piece in results[share * 4 : share * 4 + 4] for item in piece] == items[share::workers]

    def fails_late_in_a_child(piece: list[int]) -> int:
        if os.getpid() != parent and piece[0] > 700:  # its last piece
            raise ValueError(f"cannot take {piece[0]}")
        return len(piece)

    with pytest.raises(ValueError, match="cannot take"):
        fork_chunks(fails_late_in_a_child, items, min_items=10, pieces=4)
    # Fewer items than pieces: the last pieces are empty, none is lost.
    few = fork_chunks(lambda piece: piece, list(range(3)), min_items=2, pieces=4)
    assert sorted(item for piece in few for item in piece) == [0, 1, 2]


def test_an_edit_keeping_slug_and_id_updates_the_scan_as_a_full_rescan_would(settings):
    for n in range(12):
        write(settings, f"post-{n:02}.md", post(title=f"Post {n}", date=f"2025-03-{n + 1:02}", tags="[a]"))
    write(settings, "undated.md", "---\ntitle: Undated\n---\nBody.\n")  # a warning that must survive edits
    write(settings, "copy.md", post(title="Copy", slug="post-03"))  # a duplicate slug, skipped
    collection = Collection(settings)
    collection.scan()

    def same_as_cold(scan: Scan) -> None:
        cold = Collection(settings, cache_path=settings.store.dir / f"cold-{uuid.uuid4().hex}.pickle").scan()
        assert [(p.id, p.title, p.date, p.tags) for p in scan.posts] == [(p.id, p.title, p.date, p.tags) for p in cold.posts]
        assert sorted(map(str, scan.problems)) == sorted(map(str, cold.problems))

    edited = write(settings, "post-05.md", post(title="Post 5, retitled", date="2025-03-06", tags="[a, b]"))
    scan = collection.scan([edited])
    same_as_cold(scan)
    assert scan.changed_tags == {"a", "b"} and len(scan.changed_ids) == 1

    # A new date moves the post to its new place in the order.
    moved = write(settings, "post-01.md", post(title="Post 1", date="2025-04-30", tags="[a]"))
    scan = collection.scan([moved])
    same_as_cold(scan)
    assert [p.title for p in scan.posts][:2] == ["Undated", "Post 1"]  # Undated: dated by its mtime, now

    # A warning of the edited file itself comes and goes with its text.
    undated = write(settings, "undated.md", "---\ntitle: Undated, now dated\ndate: 2025-01-01\n---\nBody.\n")
    scan = collection.scan([undated])
    same_as_cold(scan)
    assert not [problem for problem in scan.problems if problem.path == undated]


# --- bounds on untrusted front matter, bodies and tags -------------------------------------------------------


def test_yaml_aliases_within_the_bound_are_read_and_a_recursive_one_is_refused(settings: Settings) -> None:
    write(
        settings,
        "aliases.md",
        "---\ntitle: &name Shared\nsummary: *name\nlist: &l [a, b]\nother: *l\n---\n\nx\n",
    )
    assert only(scan(settings)).summary == "Shared"
    write(settings, "aliases.md", "---\ntitle: Loop\nloop: &loop [*loop]\n---\n\nx\n")
    assert [str(problem) for problem in scan(settings).problems] == [
        "posts/aliases.md:1: YAML front matter refers to itself (a recursive alias); not read"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "---\ntitle: x\n" + "x: [" + "a, " * 20_000 + "a]\nk:\n  - b\n---\n\nx\n",
            "YAML front matter expands to over 10000",
        ),
        (
            "+++\n" + "a = 1\n" * 60_000 + "+++\n\nx\n",
            "TOML front matter is 360000 characters long, over the 262144",
        ),
        (
            '{"title": "x", "deep": ' + "{" + '"a": {' * 40 + "}" * 41 + "}\n\nx\n",
            "JSON front matter is nested over 32",
        ),
    ],
    ids=["yaml-wide", "toml-long", "json-deep"],
)
def test_front_matter_past_a_bound_is_refused_in_milliseconds(
    settings: Settings, text: str, message: str
) -> None:
    write(settings, "big.md", text)
    started = datetime.now(UTC)
    problems = [str(problem) for problem in scan(settings).problems]
    assert len(problems) == 1 and message in problems[0], problems
    assert datetime.now(UTC) - started < timedelta(seconds=2)  # ~0.1 s on the shared 2-core machine under load


def test_markdown_a_little_nested_is_rendered(settings: Settings) -> None:
    nested = "> " * 10 + "- item\n\n" + "<div>" * 100 + "x" + "</div>" * 100 + "\n"
    write(settings, "nested.md", post(body=nested))
    assert "<blockquote>" in rendered(only(scan(settings))).content_html


def test_tags_past_max_tags_are_cut_with_a_warning(make_settings: MakeSettings) -> None:
    settings = make_settings(posts={"max_tags": 3})
    write(settings, "tags.md", post(tags="[a, b, c, d, e]"))
    found = scan(settings)
    assert only(found).tags == ("a", "b", "c")
    assert [str(problem) for problem in found.problems] == [
        "posts/tags.md:4: 5 tags, over posts.max_tags (3): only the first 3 are used"
    ]
    assert lint(settings, found) == found.problems  # `feedsvc check` shows it


@pytest.mark.parametrize("written", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59", "0001-01-01"])
def test_dates_at_the_ends_of_time_are_one_problem(settings: Settings, written: str) -> None:
    write(settings, "edge.md", post(date=written))
    write(settings, "fine.md", post(title="Fine"))
    found = scan(settings)
    assert [post.title for post in found.posts] == ["Fine"]
    assert [str(problem) for problem in found.problems] == [
        f"posts/edge.md:3: date {written!r} is out of range (years 1 to 9999 in every time zone)"
    ]


def test_a_post_renders_the_file_it_was_read_from_never_a_newer_one(settings: Settings) -> None:
    path = write(settings, "edited.md", post(title="First", body="First *body*."))
    first = only(scan(settings))
    assert rendered(first).content_html == "<p>First <em>body</em>.</p>\n"
    path.write_text(post(title="Second", body="Second body, longer than the first."), encoding="utf-8")
    os.utime(path, ns=(first.version[1] + 10**9, first.version[1] + 10**9))
    stale = Post(**{**{name: getattr(first, name) for name in first.__dataclass_fields__}, "url": f"{SITE}/moved/"})
    with pytest.raises(SourceChanged, match="changed since it was read"):
        rendered(stale)  # the old post's title with the new file's body would be a post that never existed
    second = only(scan(settings))
    assert (second.title, rendered(second).content_html) == ("Second", "<p>Second body, longer than the first.</p>\n")

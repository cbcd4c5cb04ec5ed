"""Property tests (Hypothesis) for the parsers that take outside input: signed link tokens, addresses, form and
query bodies, HTTP dates, and the front matter and dates of posts. Each holds for every input Hypothesis finds:
the parser answers or refuses with its own error, never anything else, and what it accepts is well formed."""

from __future__ import annotations

import email.utils
import string
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from feedsvc.config import Settings
from feedsvc.posts.fields import Site, parse_date
from feedsvc.posts.markup import render_summary, sanitize
from feedsvc.posts.parse import read_post
from feedsvc.posts.readers import Convention, convention_for
from feedsvc.subscriptions import InvalidInput, normalise_address
from feedsvc.tokens import InvalidToken, Link, Purpose, Tokens
from feedsvc.web.api import ListQuery, SubscriberPath
from feedsvc.web.feed_server import _http_date
from feedsvc.web.forms import BadInput, parse_json_object, parse_urlencoded, validated

TOKENS = Tokens("property-secret", confirm_max_age=3600)
ids = st.integers(min_value=1, max_value=2**63 - 1)
link_keys = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=43)
purposes = st.sampled_from(list(Purpose))


# --- tokens ----------------------------------------------------------------------------------------------------


@given(purposes, ids, link_keys)
def test_a_token_reads_back_as_made(purpose, subscriber_id, key):
    link = TOKENS.read(purpose, TOKENS.make(purpose, subscriber_id, key))
    assert (link.subscriber_id, link.key) == (subscriber_id, key)


@given(purposes, ids, link_keys, st.text(min_size=1, max_size=8))
@example(Purpose.CONFIRM, 1, "k", "=")
@example(Purpose.CONFIRM, 1, "k", "\u200b")
@example(Purpose.CONFIRM, 1, "k", "\udcff")
def test_nothing_appended_to_a_token_passes(purpose, subscriber_id, key, tail):
    token = TOKENS.make(purpose, subscriber_id, key)
    with pytest.raises(InvalidToken):
        TOKENS.read(purpose, token + tail)


@given(purposes, ids, link_keys, st.data())
def test_every_changed_character_is_refused(purpose, subscriber_id, key, data):
    token = TOKENS.make(purpose, subscriber_id, key)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters().filter(lambda char: char != token[position]))
    with pytest.raises(InvalidToken):
        TOKENS.read(purpose, token[:position] + replacement + token[position + 1:])


@given(purposes, st.text(max_size=300))
def test_any_text_is_a_link_or_refused(purpose, text):
    try:
        link = TOKENS.read(purpose, text)
    except InvalidToken:
        return
    assert isinstance(link, Link)


# --- addresses -------------------------------------------------------------------------------------------------


@given(st.one_of(st.emails(), st.text(max_size=300), st.from_regex(r"[a-zA-Z0-9.+_-]{1,80}@[a-z0-9.-]{1,200}")))
@example("a" * 65 + "@example.org")
@example("ann@example.org\r\nBcc: x@example.org")
def test_an_address_is_normalised_within_rfc_5321_or_refused(raw):
    try:
        address = normalise_address(raw)
    except InvalidInput as exc:
        assert exc.field == "email"
        return
    local, _, domain = address.email.rpartition("@")
    assert address.email.isascii() and address.email.isprintable()
    assert len(address.email) <= 254 and 1 <= len(local) <= 64 and "." in domain
    assert address.key == address.email.lower()
    assert normalise_address(address.email) == address  # normalising twice changes nothing


# --- form, query and JSON bodies -------------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_any_bytes_are_text_pairs_or_refused(data):
    try:
        pairs = parse_urlencoded(data, "body")
    except BadInput:
        return
    for name, value in pairs:
        name.encode("utf-8")
        value.encode("utf-8")  # no lone surrogates, no undecoded bytes


text_without_surrogates = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@given(st.lists(st.tuples(text_without_surrogates, text_without_surrogates), max_size=20))
def test_urlencoded_text_round_trips(pairs):
    assert parse_urlencoded(urlencode(pairs).encode(), "body") == pairs


@given(st.binary(max_size=300))
def test_any_bytes_are_a_json_object_or_refused(data):
    try:
        fields = parse_json_object(data)
    except BadInput:
        return
    assert isinstance(fields, dict)


@given(st.text(max_size=25))
@example("²")
@example("①")
@example("٣")
@example(str(2**63))
def test_ids_and_offsets_are_ascii_digits_within_bounds(text):
    for model, name, low, high in ((SubscriberPath, "id", 1, 2**63 - 1), (ListQuery, "offset", 0, 2**63 - 1)):
        try:
            value = getattr(validated(model, {name: text}), name)
        except BadInput as exc:
            assert exc.field == name
            assert not (text.isascii() and text.isdigit() and low <= int(text) <= high)
            continue
        assert text.isascii() and text.isdigit() and value == int(text) and low <= value <= high


# --- HTTP dates ------------------------------------------------------------------------------------------------


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1)))
def test_an_http_date_reads_back(moment):
    stamp = moment.replace(tzinfo=UTC, microsecond=0).timestamp()
    assert _http_date(email.utils.formatdate(stamp, usegmt=True).encode()) == stamp


@given(st.binary(max_size=80))
def test_any_header_value_is_a_date_or_ignored(value):
    assert _http_date(value) is None or isinstance(_http_date(value), float)


# --- front matter and dates of posts ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Convention:
    """The reader of a plain feedsvc posts folder (the convention the parser reads a file with)."""
    root = tmp_path_factory.mktemp("site")
    (root / "posts").mkdir()
    settings = Settings.model_validate({"site": {"url": "https://blog.example.org"}, "posts": {"dir": str(root / "posts")}})
    return convention_for(Site.from_settings(settings))


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | st.dates() | st.datetimes(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
front_matter_keys = st.sampled_from(["title", "date", "updated", "tags", "slug", "draft", "summary", "author", "lang", "x"])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(front_matter_keys, yaml_values, max_size=6), st.text(max_size=200))
def test_any_front_matter_gives_a_post_or_problems(site, meta, body):
    data = ("---\n" + yaml.safe_dump(meta, allow_unicode=True) + "---\n" + body).encode("utf-8", "surrogatepass")
    post, problems = read_post(Path(site.site.posts_dir / "p.md"), data, 0, site)
    assert post is not None or any(problem.severity == "error" for problem in problems)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.binary(max_size=400))
def test_any_file_gives_a_post_or_problems(site, data):
    post, problems = read_post(Path(site.site.posts_dir / "p.md"), data, 0, site)
    assert post is not None or problems


@given(st.one_of(st.text(max_size=60), st.dates(), st.datetimes(), st.integers(), st.none()))
@example("Mon, 32 Dec 2026 00:00:00 +0000")
@example("2026-13-01")
def test_any_date_value_is_a_datetime_or_none(value):
    parsed = parse_date(value)
    assert parsed is None or isinstance(parsed, datetime)


# --- the summary of a Markdown body ----------------------------------------------------------------------------

_MARKDOWN_BLOCKS = st.sampled_from(
    [
        "# Judul 🎉", "Setext\n===", "![only an image](pic.png)", "`only code`", "    indented code",
        "```\nfenced\n```", "- item\n- *another*", "1. first", "> quoted *text*", "<div>raw html</div>",
        "a | b\n--|--\n1 | 2", "---", "[ref]: https://example.org/ref 'Title'", "",
        "Saya *suka* kopi ☕ and [a link][ref].", "Plain words\ncontinued on a lazy line.",
        "![img](x.png) with text after", "**strong** and ~~gone~~ and <b>inline</b>", "Text with `code` in it.",
        "  Indented two spaces, still prose.", "[undefined][nowhere] reference", "Line with trailing  \nbreak",
        "\\* escaped marker", "<!-- a comment -->", "Ünïcödé paragraph: ñ ß 漢字",
    ]
)


def _reference_summary(body: str) -> str:
    """The rule on markdown-it-py's token stream (the reference implementation markdown-it-pyrs ports): the first
    top-level paragraph whose inline tokens hold text, rendered with the whole document's references."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    tokens = parser.parse(body)
    for index, token in enumerate(tokens):
        if token.type == "paragraph_open" and token.level == 0:
            children = tokens[index + 1].children or []
            if any(child.type == "text" and child.content.strip() for child in children):
                return "<p>" + parser.renderer.render(children, parser.options, {}) + "</p>\n"
    return ""


@given(st.lists(_MARKDOWN_BLOCKS, max_size=8), st.sampled_from(["\n\n", "\n", "\r\n\r\n", "\n\n\n"]))
@settings(max_examples=400, deadline=None)
def test_a_markdown_summary_is_the_first_paragraph_with_text_as_the_reference_parser_finds_it(blocks, joint):
    body = joint.join(blocks)
    assert render_summary("markdown", "", body, "https://example.org/", ()) == sanitize(
        _reference_summary(body), "https://example.org/", ()
    )

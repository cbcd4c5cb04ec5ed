"""Rendering: digests and confirmation mails parsed back with the `email` package and an HTML parser."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser

import dkim
import pytest
from conftest import EXAMPLE_POSTS
from dkim.dknewkey import ExtractRSADnsPublicKey, GenRSAKeys
from mail_samples import PREFERENCES, RICH_BODY, SITE, UNSUBSCRIBE, make_post, personalised

from feedsvc.mail.message import AddressError, message_id_for
from feedsvc.mail.render import MailTemplateError, confirmation_message, render_edition
from feedsvc.posts import Collection
from feedsvc.posts.model import Post

TITLE = "Belajar Rust 🦀: kenapa borrow checker itu teman, bukan musuh ✨"


def parse(message: bytes) -> EmailMessage:
    return email.message_from_bytes(message, policy=email.policy.default)  # type: ignore[return-value]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.stylesheets = 0
        self.styled = 0

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        self.urls += [value or "" for name, value in attrs if name in ("href", "src")]
        if tag == "img":
            self.images.append(values)
        if tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets += 1
        if "style" in values:
            self.styled += 1


def links_of(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def test_one_post_mail_headers_round_trip(make_settings):
    settings = make_settings(site={"language": "id"}, mail={"from_name": "Catatan ✍️", "reply_to": "budi@example.org"})
    post = make_post(1, title=TITLE, image="/img/cover.png")
    now = datetime(2026, 3, 1, 10, tzinfo=UTC)
    edition = render_edition(settings, [post], "instant", now, now)
    raw = personalised(settings, edition)
    message = parse(raw)

    assert message["Subject"] == TITLE
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n")[0]  # RFC 2047 on the wire, not raw UTF-8
    assert raw.isascii()
    assert message["From"].addresses[0].display_name == "Catatan ✍️"
    assert message["From"].addresses[0].addr_spec == "news@blog.example.org"
    assert message["To"].addresses[0].display_name == "Siti Nurhaliza"
    assert message["To"].addresses[0].addr_spec == "siti@example.com"
    assert message["Reply-To"] == "budi@example.org"
    assert message["Message-ID"] == message_id_for(settings, "d:1")
    assert message["Date"].datetime.tzinfo is not None
    assert message["MIME-Version"] == "1.0"
    assert message["List-Id"].endswith("<blog.example.org.feedsvc>")
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>, <mailto:news@blog.example.org?subject=unsubscribe>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))  # quoted-printable keeps lines short

    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert TITLE in text and TITLE in html
    assert f"Berhenti berlangganan: {UNSUBSCRIBE}\n" in text.replace("\r\n", "\n")  # spaces kept around values
    assert f"Atur preferensi: {PREFERENCES}\n" in text.replace("\r\n", "\n")
    assert f'href="{UNSUBSCRIBE.replace("&", "&amp;")}"' in html and PREFERENCES in html
    assert "Berhenti berlangganan" in html and "Baca di situs" in text  # the whole post, as in the HTML
    assert "1 Maret 2026" in text  # Babel, Indonesian
    assert "__FEEDSVC" not in html + text


def test_html_is_inlined_absolute_and_dark_mode_ready(make_settings):
    settings = make_settings()
    post = make_post(1, image="cover.png")
    edition = render_edition(settings, [post], "instant", post.date, post.date)
    html = parse(personalised(settings, edition)).get_body(("html",)).get_content()
    links = links_of(html)

    relative = [url for url in links.urls if not re.match(r"^(https?:|mailto:)", url)]
    assert relative == []
    assert f"{SITE}/post-1/cover.png" in links.urls and f"{SITE}/tags/rust/" in links.urls
    assert links.images and all(image.get("alt") is not None for image in links.images)
    assert any(image.get("alt") == "Image for “Post number 1”" for image in links.images)
    assert links.stylesheets == 0 and links.styled > 10
    assert 'name="color-scheme" content="light dark"' in html
    assert "prefers-color-scheme: dark" in html  # kept in <style> for clients that read it
    assert 'width="600"' in html
    # "View in browser" of a one-post mail is the post itself; the preheader is its summary.
    assert f'<a href="{SITE}/post-1/"' in html and "View in browser" in html
    assert re.search(r'class="preheader"[^>]*>Ringkasan tulisan 1 &amp; lanjutan', html)


def test_long_digest_stays_under_gmail_clipping_with_summaries(make_settings):
    settings = make_settings()
    posts = [make_post(i, paragraphs=40) for i in range(40)]
    start, end = datetime(2026, 2, 23, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    edition = render_edition(settings, posts, "weekly", start, end)
    html = parse(personalised(settings, edition)).get_body(("html",)).get_content()

    assert len(edition.html.encode()) <= settings.digest.html_budget_bytes
    assert len(html.encode()) < 102 * 1024
    assert edition.subject == "Test Blog — weekly digest, Mar 2, 2026"
    assert all(post.title in html and post.url in html for post in posts)
    assert "Paragraf 39 dari tulisan 0" in html  # the first post still in full
    assert "Paragraf 0 dari tulisan 39" not in html and "Ringkasan tulisan 39" in html  # the last one shortened
    assert re.search(r"\b\d+ posts were shortened", html)
    assert "February 23, 2026 – March 2, 2026" in edition.text
    text = parse(personalised(settings, edition)).get_body(("plain",)).get_content()
    assert re.search(r"Read more → \[(\d+)\]", text)
    assert "https://blog.example.org/post-39/" in text


def test_a_short_digest_keeps_every_post_in_full(make_settings):
    settings = make_settings(site={"language": "id-ID"})
    posts = [make_post(i) for i in range(3)]
    edition = render_edition(settings, posts, "daily", posts[-1].date, posts[0].date)
    assert edition.subject == "Test Blog — ringkasan harian, 1 Mar 2026"
    assert "Ringkasan harian dari Test Blog" in edition.html
    assert all(f"Paragraf 2 dari tulisan {i}" in edition.html for i in range(3))
    assert "dipersingkat" not in edition.html
    assert f'href="{SITE}/"' in edition.html  # "view in browser" of a digest is the site


def test_names_and_addresses_cannot_inject_headers(make_settings):
    settings = make_settings()
    edition = render_edition(settings, [make_post(1)], "instant", datetime.now(UTC), datetime.now(UTC))
    raw = personalised(settings, edition, to_name="Eve\r\nBcc: victim@example.com\r\n\r\nforged")
    message = parse(raw)
    assert message["Bcc"] is None
    assert message["To"].addresses[0].addr_spec == "siti@example.com"
    assert "Bcc: victim@example.com" in message["To"].addresses[0].display_name
    with pytest.raises(AddressError, match="not a usable"):
        personalised(settings, edition, to_email="a@example.com\r\nBcc: b@example.com")
    with pytest.raises(AddressError):
        personalised(settings, edition, to_email="not an address")


def test_confirmation_mail(make_settings):
    settings = make_settings(site={"language": "id", "title": "Catatan Backend"})
    url = "https://blog.example.org/confirm/tok.en-_?a=1&b=2"
    item = confirmation_message(settings, to_email="Budi@Example.com", to_name="Budi", confirm_url=url)
    assert (item.sender, item.recipient) == ("news@blog.example.org", "Budi@Example.com")
    message = parse(item.message)
    assert message["Subject"] == "Konfirmasi langganan Anda di Catatan Backend"
    assert message["To"].addresses[0].display_name == "Budi"
    assert message["List-Unsubscribe"] is None  # not on a list yet
    assert message["Message-ID"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Halo Budi," in text and url in text
    assert f'href="{url.replace("&", "&amp;")}"' in html and "Konfirmasi langganan" in html

    english = confirmation_message(make_settings(site={"language": "en"}), to_email="a@b.org", to_name="", confirm_url=url)
    assert parse(english.message)["Subject"] == "Confirm your subscription to Test Blog"
    assert "Hi," in parse(english.message).get_body(("plain",)).get_content()


def test_user_templates_override_the_bundled_ones(make_settings, tmp_path):
    folder = tmp_path / "my-templates" / "mail"
    folder.mkdir(parents=True)
    (folder / "confirm.txt.j2").write_text("Custom words for {{ site.title }}: {{ confirm_url }}\n", encoding="utf-8")
    settings = make_settings(mail={"templates_dir": "my-templates"})
    item = confirmation_message(settings, to_email="a@b.org", to_name="", confirm_url="https://x.org/c/1")
    message = parse(item.message)
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")  # CRLF on the wire
    assert text == "Custom words for Test Blog: https://x.org/c/1\n"
    assert "Confirm subscription" in message.get_body(("html",)).get_content()  # the bundled HTML still used


def test_dkim_signature_verifies(make_settings, tmp_path):
    # dkimpy's own key tools (they run openssl): a fresh key and the TXT record a DNS zone would publish.
    GenRSAKeys(str(tmp_path / "dkim.pem"), verbose=False)
    ExtractRSADnsPublicKey(str(tmp_path / "dkim.pem"), str(tmp_path / "dkim.dns"), verbose=False)
    record = (tmp_path / "dkim.dns").read_bytes()
    settings = make_settings(
        mail={"dkim_selector": "mail", "dkim_domain": "blog.example.org", "dkim_key_file": "dkim.pem"}
    )
    edition = render_edition(settings, [make_post(1, title=TITLE)], "instant", datetime.now(UTC), datetime.now(UTC))
    raw = personalised(settings, edition)
    assert raw.startswith(b"DKIM-Signature:")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == b"mail._domainkey.blog.example.org." else b""

    assert dkim.verify(raw, dnsfunc=dns)
    tampered = raw.replace(b"siti@example.com", b"mallory@example.com")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_the_example_site_posts_render_as_a_clean_digest(make_settings, tmp_path):
    # The bundled example posts, written like the seeds: Indonesian text, emoji, a relative image link,
    # a .txt without front matter. Read by the real post collection.
    shutil.copytree(EXAMPLE_POSTS, tmp_path / "posts", dirs_exist_ok=True)
    settings = make_settings(
        site={"language": "id", "timezone": "Asia/Jakarta"},
        posts={"asset_urls": {"../../assets/": "https://blog.example.org/assets/"}},
    )
    now = datetime(2030, 1, 1, tzinfo=UTC)
    posts = Collection(settings, cache_path=tmp_path / "cache.pickle").scan().published(now)
    assert len(posts) >= 3
    edition = render_edition(settings, posts, "weekly", now - timedelta(days=7), now)
    message = parse(personalised(settings, edition))
    html = message.get_body(("html",)).get_content()
    links = links_of(html)
    # Absolute, or an anchor of the list of contents in the mail itself.
    assert [url for url in links.urls if not re.match(r"^(https?:|mailto:|#post-\d+$)", url)] == []
    assert "https://blog.example.org/assets/blogs/chat.png" in links.urls
    assert all(image.get("alt") is not None for image in links.images)
    assert len(html.encode()) < 102 * 1024
    assert all(post.title in html for post in posts)
    assert "Ringkasan mingguan" in message.get_body(("plain",)).get_content()


def test_a_broken_user_template_is_named_in_the_error(make_settings, tmp_path):
    folder = tmp_path / "my-templates" / "mail"
    folder.mkdir(parents=True)
    settings = make_settings(mail={"templates_dir": "my-templates"})
    (folder / "confirm.txt.j2").write_text("Hi {{ name }\n", encoding="utf-8")
    with pytest.raises(MailTemplateError, match=r"mail template .*confirm\.txt\.j2 line 1: unexpected '}'"):
        confirmation_message(settings, to_email="a@b.org", to_name="", confirm_url="https://x.org/c/1")
    (folder / "confirm.txt.j2").write_text("Hi {{ nickname }}\n", encoding="utf-8")
    with pytest.raises(MailTemplateError, match=r"mail/confirm\.txt\.j2: 'nickname' is undefined"):
        confirmation_message(settings, to_email="a@b.org", to_name="", confirm_url="https://x.org/c/1")


# --- long digests: contents, styles, the size budget ------------------------------------------------------------

class _Elements(HTMLParser):
    """Each start tag with its attributes, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def elements(html: str, tag: str, **attributes: str) -> list[dict[str, str]]:
    parser = _Elements()
    parser.feed(html)
    return [attrs for name, attrs in parser.tags if name == tag and all(attrs.get(k) == v for k, v in attributes.items())]


def style_of(attrs: dict[str, str], name: str) -> str:
    found = re.search(rf"(?:^|;)\s*{name}\s*:\s*([^;]+)", attrs.get("style", ""))
    return found.group(1).strip() if found else ""


def test_three_posts_or_more_get_a_list_of_contents_that_links_to_each_title(make_settings):
    settings = make_settings()
    posts = [make_post(i) for i in range(3)]
    html = render_edition(settings, posts, "daily", posts[-1].date, posts[0].date).html
    toc = re.search(r'<div class="toc".*?</div>', html, re.DOTALL)
    assert toc and "In this mail" in toc.group()
    anchors = re.findall(r'href="#(post-\d+)"[^>]*>([^<]+)<', toc.group())
    assert [title for _, title in anchors] == [post.title for post in posts]
    ids = [attrs["id"] for attrs in elements(html, "h2") if "post-title" in attrs.get("class", "")]
    assert ids == [anchor for anchor, _ in anchors]
    two = render_edition(settings, posts[:2], "daily", posts[1].date, posts[0].date).html
    assert 'class="toc"' not in two and 'href="#post-' not in two


def test_post_titles_and_the_posts_own_headings_tables_code_quotes_and_images_are_styled_apart(make_settings):
    settings = make_settings()
    posts = [make_post(0, body=RICH_BODY), make_post(1)]
    html = render_edition(settings, posts, "instant", posts[1].date, posts[0].date).html
    title = next(attrs for attrs in elements(html, "h2") if "post-title" in attrs.get("class", ""))
    own_h2 = next(attrs for attrs in elements(html, "h2") if "post-title" not in attrs.get("class", ""))
    own_h3 = elements(html, "h3")[0]
    sizes = [int(style_of(attrs, "font-size").removesuffix("px")) for attrs in (title, own_h2, own_h3)]
    assert sizes[0] > sizes[1] > sizes[2] >= 16  # a post's own h2 is no post title
    assert "monospace" in style_of(elements(html, "code")[0], "font-family")
    assert style_of(elements(html, "pre")[0], "background-color")
    assert "solid" in style_of(elements(html, "th")[0], "border") and style_of(elements(html, "td")[0], "padding")
    assert "solid" in style_of(elements(html, "blockquote")[0], "border-left")
    widths = {attrs["alt"]: attrs for attrs in elements(html, "img")}
    assert widths["A chart"]["width"] == "544" and "height" not in widths["A chart"]  # no wider than the column
    assert widths["Icon"]["width"] == "32"
    assert all(attrs.get("width") for attrs in elements(html, "img"))


def _sized_post(index: int, kilobytes: int) -> Post:
    paragraph = "<p>" + f"Paragraf tulisan {index}: " + "kata " * 190 + "</p>\n"  # about 1 KB
    return make_post(index, body=paragraph * kilobytes)


def test_the_budget_shortens_the_largest_post_first_and_keeps_the_order(make_settings):
    posts = [_sized_post(0, 23), _sized_post(1, 23), _sized_post(2, 23), _sized_post(3, 6)]
    start, end = posts[-1].date, posts[0].date
    whole = render_edition(make_settings(digest={"html_budget_bytes": 10**7}), posts, "daily", start, end)
    # Everything is 2 KB over: cutting the small last post would do, but it is one of the large ones that goes.
    settings = make_settings(digest={"html_budget_bytes": len(whole.html.encode()) - 2000})
    edition = render_edition(settings, posts, "daily", start, end)
    html = edition.html
    assert len(html.encode()) <= settings.digest.html_budget_bytes
    paragraphs = [html.count(f"Paragraf tulisan {i}:") for i in range(4)]
    assert paragraphs[0] == 23 and paragraphs[1] == 23 and paragraphs[3] == 6  # whole
    assert 1 <= paragraphs[2] < 23  # the later of the equal large ones: its leading paragraphs kept
    positions = [html.index(f'href="{post.url}"') for post in posts]
    assert positions == sorted(positions)
    assert "1 post was shortened to keep this mail small" in html
    assert "1 post was shortened" in edition.text


def test_a_single_long_post_shortened_keeps_its_paragraphs_and_a_singular_note(make_settings):
    post = _sized_post(0, 60)
    for language, note in (("en", "1 post was shortened"), ("id", "1 tulisan dipersingkat")):
        settings = make_settings(site={"language": language}, digest={"html_budget_bytes": 30_000})
        edition = render_edition(settings, [post], "instant", post.date, post.date)
        assert len(edition.html.encode()) <= 30_000
        kept = edition.html.count("Paragraf tulisan 0:")
        assert 10 < kept < 60  # as many whole paragraphs as fit, each its own <p>
        assert len(re.findall(r"<p\b[^>]*>Paragraf tulisan 0:", edition.html)) == kept
        assert note in edition.html and note in edition.text
        assert "posts were" not in edition.html


def test_notes_about_shortened_posts_agree_with_their_number(make_settings):
    posts = [_sized_post(i, 10) for i in range(4)]
    for language, expected in (("en", "3 posts were shortened"), ("id", "3 tulisan dipersingkat")):
        settings = make_settings(site={"language": language}, digest={"html_budget_bytes": 20_000})
        edition = render_edition(settings, posts, "weekly", posts[-1].date, posts[0].date)
        assert expected in edition.html, re.findall(r"\d+ (?:posts?|tulisan) [a-z ]+", edition.html)


def test_digest_subjects_say_the_cadence_and_the_date_in_the_sites_language(make_settings):
    posts = [make_post(1), make_post(2)]
    # 08:00 in Jakarta on Tuesday 24 November is still the 23rd in UTC.
    end = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    settings = make_settings(site={"language": "id", "title": "Catatan Backend", "timezone": "Asia/Jakarta"})
    weekly = render_edition(settings, posts, "weekly", end - timedelta(days=7), end)
    assert weekly.subject == "Catatan Backend — ringkasan mingguan, 24 Nov 2026"
    assert render_edition(settings, posts, "daily", end - timedelta(days=1), end).subject == (
        "Catatan Backend — ringkasan harian, 24 Nov 2026"
    )
    english = make_settings(site={"language": "en", "title": "Backend Notes", "timezone": "Asia/Jakarta"})
    assert render_edition(english, posts, "daily", end, end).subject == "Backend Notes — daily digest, Nov 24, 2026"
    assert render_edition(english, posts, "instant", end, end).subject == "Backend Notes: 2 new posts"
    assert render_edition(english, posts[:1], "instant", end, end).subject == posts[0].title


def test_the_text_part_carries_the_whole_post_with_its_links_code_and_tables(make_settings):
    settings = make_settings()
    posts = [make_post(0, body=RICH_BODY), make_post(1)]
    edition = render_edition(settings, posts, "daily", posts[1].date, posts[0].date)
    text = parse(personalised(settings, edition)).get_body(("plain",)).get_content().replace("\r\n", "\n")

    assert "SELECT id\n  FROM posts\n WHERE slug = 'x';" in text  # code line for line, indentation kept
    assert re.search(r"Index +Rows\nbtree +1200", text)  # the table laid out
    assert "Measure first." in text and "Own heading" in text and "Smaller heading" in text
    number = re.search(r"the SQL docs \[(\d+)\]", text).group(1)  # links as numbered references
    assert f"\n[{number}] https://docs.example.org/sql\n" in text
    assert re.search(r"Paragraf 2 dari tulisan 1: .* tautan relatif \[\d+\]", text)  # the second post, whole
    assert "View in browser: https://blog.example.org/\n" in text
    assert f"Manage preferences: {PREFERENCES}\n" in text and f"Unsubscribe: {UNSUBSCRIBE}\n" in text
    assert "<" not in text.replace("<https", "")  # no markup left


def test_the_preheader_is_hidden_without_a_colour_and_dark_mode_keeps_the_buttons_colours(make_settings):
    settings = make_settings()
    post = make_post(1)
    html = render_edition(settings, [post], "instant", post.date, post.date).html
    preheader = elements(html, "div", **{"class": "preheader"})[0]
    assert style_of(preheader, "display") == "none"
    assert not style_of(preheader, "color") and not style_of(preheader, "opacity")
    confirm = parse(
        confirmation_message(settings, to_email="a@b.org", to_name="", confirm_url="https://x.org/c/1").message
    ).get_body(("html",)).get_content()
    dark = confirm[confirm.index("prefers-color-scheme: dark") :]
    dark = dark[: dark.index("@media only screen")]
    # The generic dark link colour comes before the button's own rule, which is more specific: it wins.
    assert re.search(r"\ba\.button\s*\{[^}]*color:\s*#ffffff !important", dark)
    assert dark.index("a { color") < dark.index("a.button")

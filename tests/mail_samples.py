"""Posts and complete mails as a subscriber gets them, shared by the rendering, spam and browser tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from feedsvc.config import Settings
from feedsvc.mail.message import message_id_for, personalise
from feedsvc.mail.render import confirmation_message, render_edition
from feedsvc.posts.model import Post

SITE = "https://blog.example.org"
UNSUBSCRIBE = f"{SITE}:8080/unsubscribe/eyJhbGciOi.abc-_DEF?x=1&y=2"
PREFERENCES = f"{SITE}:8080/preferences/eyJhbGciOi.xyz"
# A confirmation link as the web app makes it: one long unbroken token.
CONFIRM_URL = f"{SITE}:8080/confirm/eyJlbWFpbCI6ImJ1ZGlAZXhhbXBsZS5jb20iLCJ0YWdzIjpbXX0.Z3YxOWtwbGFzZGZrbGFzZGZrbGFzZGY"

RICH_BODY = (
    "<p>Intro with <a href=\"https://docs.example.org/sql\">the SQL docs</a>.</p>\n"
    "<h2>Own heading</h2>\n<h3>Smaller heading</h3>\n"
    "<pre><code>SELECT id\n  FROM posts\n WHERE slug = 'x';\n</code></pre>\n"
    "<table><thead><tr><th>Index</th><th>Rows</th></tr></thead>"
    "<tbody><tr><td>btree</td><td>1200</td></tr></tbody></table>\n"
    "<blockquote><p>Measure first.</p></blockquote>\n"
    '<p><img src="/img/wide.png" alt="A chart" width="1600" height="900"> <img src="/img/icon.png" alt="Icon" width="32"></p>\n'
)

# What stretches a narrow screen: a table of seven long columns, a long code line, a long unbroken URL.
WIDE_BODY = (
    "<table><thead><tr>" + "".join(f"<th>Column {n}</th>" for n in range(7)) + "</tr></thead><tbody><tr>"
    + "".join(f"<td>value_{n}_long_identifier</td>" for n in range(7)) + "</tr></tbody></table>\n"
    + "<pre><code>" + "SELECT " + ", ".join(f"column_{n}" for n in range(30)) + " FROM t;\n</code></pre>\n"
    + "<p>https://example.org/" + "segment" * 25 + "</p>\n"
)


def make_post(
    index: int, *, title: str | None = None, paragraphs: int = 3, image: str | None = None, body: str | None = None
) -> Post:
    slug = f"post-{index}"
    body = body if body is not None else "".join(
        f"<p>Paragraf {n} dari tulisan {index}: kalimat yang cukup panjang untuk mengisi ruang, dengan "
        f'<a href="/tags/rust/">tautan relatif</a> dan <img src="../img/{n}.png"> gambar.</p>'
        for n in range(paragraphs)
    )
    return Post(
        id=f"id-{index}",
        slug=slug,
        title=title or f"Post number {index}",
        date=datetime(2026, 3, 1, 9, 30, tzinfo=UTC) - timedelta(hours=index),
        updated=None,
        url=f"{SITE}/{slug}/",
        tags=("Rust", "Belajar"),
        summary_html=f'<p>Ringkasan tulisan {index} &amp; <a href="more/">lanjutan</a>.</p>',
        author="Budi",
        image=image,
        draft=False,
        source=Path(f"{slug}.md"),
        content_html=body,
    )


def personalised(settings, edition, *, to_email="siti@example.com", to_name="Siti Nurhaliza", key="d:1") -> bytes:
    return personalise(
        settings,
        subject=edition.subject,
        html=edition.html,
        text=edition.text,
        to_email=to_email,
        to_name=to_name,
        unsubscribe_url=UNSUBSCRIBE,
        preferences_url=PREFERENCES,
        message_id=message_id_for(settings, key),
    )


def sample_mails(settings: Settings) -> dict[str, bytes]:
    """A confirmation mail, a one-post instant mail and a 12-post daily digest (every fourth post with headings,
    code, a table, a quote and images, one too wide for a phone), each complete as sent."""
    confirm = confirmation_message(settings, to_email="budi@example.com", to_name="Budi", confirm_url=CONFIRM_URL)
    one = [make_post(1, body=RICH_BODY)]
    twelve = [make_post(i, body=RICH_BODY if i % 4 == 0 else WIDE_BODY if i == 2 else None) for i in range(12)]
    day = datetime(2026, 3, 2, 8, tzinfo=UTC)
    return {
        "confirm": confirm.message,
        "one-post": personalised(settings, render_edition(settings, one, "instant", day, day)),
        "twelve-posts": personalised(settings, render_edition(settings, twelve, "daily", day - timedelta(days=1), day)),
    }

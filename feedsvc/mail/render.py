"""Rendering mails from the Jinja2 templates: digests (rendered once per edition) and confirmation mails.

Templates come from `templating.environment` (the user's `mail.templates_dir` first, then the bundled
`templates/`). The words are the catalogs' "mail" strings in the site's language (`i18n`), dates are
formatted by Babel for that locale, and CSS is inlined with css-inline (the @media rules for dark mode and
small screens stay in the <style> block, where clients that understand them look). A digest's posts are
rendered once as an HTML fragment (`mail/digest_posts.html.j2`), put into the HTML mail and converted by
inscriptis into its plain-text part, so both parts carry the same content.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin

import css_inline
import lxml.html
from babel import Locale
from babel.dates import format_date
from inscriptis import Inscriptis
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from inscriptis.model.html_element import HtmlElement
from inscriptis.model.tag import CustomHtmlTagHandlerMapping
from jinja2 import TemplateError
from markupsafe import Markup

from feedsvc.cadences import CADENCES
from feedsvc.config import Settings
from feedsvc.i18n import date_locale, translator
from feedsvc.mail.dkim import DkimSigner
from feedsvc.mail.message import (
    PREFERENCES_URL,
    UNSUBSCRIBE_URL,
    MessageSkeleton,
    edition_skeleton,
    mail_address,
    message_id_for,
    single_line,
)
from feedsvc.mail.transport import Outgoing
from feedsvc.posts.render import rendered
from feedsvc.templating import environment, template_context

if TYPE_CHECKING:
    from feedsvc.posts.model import Post

# How much of a post a digest shows: all of it, its leading blocks, its summary, or only its title and link.
PostMode = Literal["full", "excerpt", "summary", "link"]
# A post's mode and, for an excerpt, how many of its top-level blocks (paragraphs, lists, tables…) it keeps.
PostPlan = tuple[PostMode, int]
FULL: PostPlan = ("full", 0)
SUMMARY: PostPlan = ("summary", 0)
LINK: PostPlan = ("link", 0)
# A digest's inlined HTML and the template context it was rendered with.
Rendered = tuple[str, dict[str, Any]]
# The width of the digest's content column in pixels (600 less the cell's padding): images are never wider.
IMAGE_WIDTH = 544

_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
_URL_ATTRIBUTE = re.compile(r'\b(href|src)="([^"]*)"')
_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt=)", re.IGNORECASE)
_IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
_TABLE = re.compile(r"<table\b(?![^>]*\btabindex=)", re.IGNORECASE)
_WIDTH = re.compile(r'\swidth="([^"]*)"', re.IGNORECASE)
_HEIGHT = re.compile(r'\sheight="[^"]*"', re.IGNORECASE)
_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class RenderedEdition:
    """A digest rendered once; `html` and `text` hold placeholders that `personalise` fills per subscriber."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class PostView:
    """What the digest templates see of a post."""

    title: str
    url: str
    anchor: str  # the id of its title in the mail, for the list of contents
    date_text: str
    author: str
    tags: tuple[str, ...]
    image: str | None
    summary_html: str
    summary_text: str  # for digest.txt.j2 templates copied from earlier versions
    content_html: str
    mode: PostMode


class MailTemplateError(Exception):
    """A mail template (usually a user's override) cannot be loaded or rendered; the message says where."""


def _context(settings: Settings, context: dict[str, object]) -> dict[str, object]:
    return {**template_context(settings, "mail"), "postal_address": settings.mail.postal_address, **context}


def _render_pair(settings: Settings, template: str, **context: object) -> tuple[str, str]:
    """The (inlined HTML, text) of the template pair `mail/{template}.html.j2` + `mail/{template}.txt.j2`."""
    context = _context(settings, context)
    html_part = _INLINER.inline(_render(settings, f"mail/{template}.html.j2", context))
    return html_part, _render(settings, f"mail/{template}.txt.j2", context)


def _render(settings: Settings, name: str, context: dict[str, object]) -> str:
    try:
        template = environment(settings).get_template(name)
        return template.render(context)
    except TemplateError as exc:
        where = getattr(exc, "filename", None) or name
        lineno = getattr(exc, "lineno", None)  # set on syntax errors only
        line = f" line {lineno}" if lineno else ""
        raise MailTemplateError(f"mail template {where}{line}: {exc.message or exc}") from exc


# inscriptis lays text out the way a browser's default style sheet would; the inline elements below take
# their parent's white-space (its default profile resets it), so code inside <pre> keeps its lines.
_TEXT_CSS = {
    **CSS_PROFILES["strict"],
    **{
        tag: HtmlElement(whitespace=None)  # None: the parent's
        for tag in ("a", "b", "code", "em", "i", "kbd", "mark", "s", "samp", "small", "span", "strong", "sub", "sup")
    },
}


def html_to_text(fragment: str, *, footnotes: bool = True) -> str:
    """The plain text of an HTML fragment, by inscriptis: paragraphs, lists and tables laid out, code kept line
    for line, images as their alt text. With `footnotes`, each link's text is followed by a number and the
    numbered URLs are listed at the end (a link to an anchor in the same mail, or one showing its own URL,
    gets none)."""
    if not fragment.strip():
        return ""
    tree = lxml.html.fragment_fromstring(fragment, create_parent="div")
    for link in tree.iter("a"):
        href = link.get("href", "")
        if not footnotes or href.startswith("#") or link.text_content().strip() == href:
            link.attrib.pop("href", None)
    urls: list[str] = []
    open_links: list[str] = []

    def link_start(state: Any, attributes: dict[str, str]) -> None:
        open_links.append(attributes.get("href", ""))

    def link_end(state: Any) -> None:
        href = open_links.pop()
        if href:
            if href not in urls:
                urls.append(href)
            state.tags[-1].write(f" [{urls.index(href) + 1}]")

    config = ParserConfig(
        css=_TEXT_CSS,
        display_images=True,
        custom_html_tag_handler_mapping=CustomHtmlTagHandlerMapping({"a": link_start}, {"a": link_end}),
    )
    text = "\n".join(line.rstrip() for line in Inscriptis(tree, config).get_text().splitlines())
    text = _BLANK_RUNS.sub("\n\n", text).strip("\n")
    notes = "\n".join(f"[{number}] {url}" for number, url in enumerate(urls, 1))
    return f"{text}\n\n{notes}" if notes else text


def _one_line(fragment: str) -> str:
    return " ".join(html_to_text(fragment, footnotes=False).split())


def _mail_fragment(fragment: str, base_url: str) -> str:
    """A post's HTML made ready for a mail: every href/src absolute against the post's URL; every image with an
    alt attribute and a width no wider than the column (Outlook sizes images by the attribute alone and ignores
    max-width); every table reachable by keyboard, as a wide one scrolls sideways on a small screen."""
    absolute = _URL_ATTRIBUTE.sub(
        lambda m: f'{m.group(1)}="{html.escape(urljoin(base_url, html.unescape(m.group(2))))}"', fragment
    )
    return focusable_tables(_IMG.sub(_mail_image, _IMG_WITHOUT_ALT.sub('<img alt=""', absolute)))


def focusable_tables(fragment: str) -> str:
    """Every table reachable by keyboard: a wide one scrolls sideways on a small screen (in mails and pages)."""
    return _TABLE.sub('<table tabindex="0"', fragment)


def _mail_image(match: re.Match[str]) -> str:
    tag = match.group()
    width = _WIDTH.search(tag)
    if width and width.group(1).isdigit() and int(width.group(1)) <= IMAGE_WIDTH:
        return tag
    # No width (most often a photo or a screenshot wider than the column), or a wider one: the column's, and
    # the height follows it (height: auto in the style sheet).
    tag = _HEIGHT.sub("", _WIDTH.sub("", tag))
    return f'<img width="{IMAGE_WIDTH}"{tag[4:]}'


@lru_cache(maxsize=32)  # the posts of the edition being fitted
def _blocks(fragment: str) -> tuple[str, ...]:
    """The top-level elements of an HTML fragment (paragraphs, lists, tables, …), each as HTML."""
    return tuple(
        part if isinstance(part, str) else lxml.html.tostring(part, encoding="unicode")
        for part in lxml.html.fragments_fromstring(fragment)
    )


def _post_view(settings: Settings, post: Post, plan: PostPlan, locale: Locale, anchor: str) -> PostView:
    mode, blocks = plan
    html = rendered(post)
    whole = _mail_fragment(html.content_html, post.url) if mode in ("full", "excerpt") else ""
    content_html = "".join(_blocks(whole)[:blocks]) if mode == "excerpt" else whole
    return PostView(
        title=post.title,
        url=post.url,
        anchor=anchor,
        date_text=format_date(post.date.astimezone(settings.site.tz), format="long", locale=locale),
        author=post.author,
        tags=tuple(post.tags),
        image=urljoin(post.url, post.image) if post.image else None,
        summary_html=_mail_fragment(html.summary_html, post.url),
        summary_text=html_to_text(html.summary_html, footnotes=False),
        content_html=content_html,
        mode=mode,
    )


def posts_html(settings: Settings, posts: Sequence[Post]) -> Markup:
    """The posts in full, as a digest shows them (`mail/digest_posts.html.j2`): an edition's web copy."""
    locale = date_locale(settings.site.language)
    views = [_post_view(settings, post, FULL, locale, f"post-{index + 1}") for index, post in enumerate(posts)]
    return Markup(_render(settings, "mail/digest_posts.html.j2", _context(settings, {"posts": views, "shortened": 0})))


def _period_text(settings: Settings, start: datetime, end: datetime, locale: Locale, translate) -> str:
    tz = settings.site.tz
    first = format_date(start.astimezone(tz), format="long", locale=locale)
    last = format_date(end.astimezone(tz), format="long", locale=locale)
    return first if first == last else translate("period", start=first, end=last)


def edition_subject(settings: Settings, posts: Sequence[Post], frequency: str, period_end: datetime) -> str:
    """A daily or weekly digest says which it is and its date ("Catatan Backend — ringkasan mingguan,
    24 Nov 2026"); an instant mail of one post is that post's title."""
    translate = translator(settings.site.language, "mail")
    site = settings.site.title
    cadence = CADENCES[frequency]
    if cadence.periodic:
        day = format_date(period_end.astimezone(settings.site.tz), format="medium", locale=date_locale(settings.site.language))
        return translate("subject_digest", site=site, cadence=translate(cadence.subject_key), date=day)
    return posts[0].title if len(posts) == 1 else translate("subject_many", site=site, count=len(posts))


def render_edition(
    settings: Settings,
    posts: Sequence[Post],
    frequency: str,
    period_start: datetime,
    period_end: datetime,
    browser_url: str | None = None,
) -> RenderedEdition:
    """Render a digest of `posts` once, in their order, fitting the HTML into `digest.html_budget_bytes`.

    `browser_url`: the edition's web copy ("view in browser"); without one (no web archive, or a preview),
    a one-post mail links its post and a digest the site's front page.

    Every post is shown in full while the final inlined HTML fits the budget; past it, the largest posts are
    shortened first (see `_fit`). The plain-text part is the same posts' HTML converted to text.
    """
    if not posts:
        raise ValueError("an edition needs at least one post")
    translate = translator(settings.site.language, "mail")
    locale = date_locale(settings.site.language)
    site = settings.site.title
    subject = edition_subject(settings, posts, frequency, period_end)
    cadence = CADENCES[frequency]
    heading = translate(cadence.heading_key, site=site)
    period = _period_text(settings, period_start, period_end, locale, translate) if cadence.periodic else ""
    # The edition's web copy when the archive serves one; else one post's own page, or the site's front page.
    browser_url = browser_url or (posts[0].url if len(posts) == 1 else f"{settings.site.url}/")
    preheader = _one_line(rendered(posts[0]).summary_html)[:150] if len(posts) == 1 else " · ".join(p.title for p in posts)[:150]
    views: dict[tuple[int, PostPlan], PostView] = {}

    def view(index: int, plan: PostPlan) -> PostView:
        if (index, plan) not in views:
            views[index, plan] = _post_view(settings, posts[index], plan, locale, f"post-{index + 1}")
        return views[index, plan]

    def render(plans: Sequence[PostPlan]) -> tuple[str, dict[str, Any]]:
        """The inlined HTML of the mail with these plans, and the context it was rendered with."""
        post_views = [view(i, plan) for i, plan in enumerate(plans)]
        shortened = sum(plan[0] != "full" for plan in plans)
        posts_html = Markup(
            _render(settings, "mail/digest_posts.html.j2", _context(settings, {"posts": post_views, "shortened": shortened}))
        )
        context = _context(
            settings,
            {
                "subject": subject,
                "heading": heading,
                "period": period,
                "preheader": preheader,
                "browser_url": browser_url,
                "posts": post_views,
                "posts_html": posts_html,
                "shortened": shortened,
                "frequency": frequency,
                "unsubscribe_url": UNSUBSCRIBE_URL,
                "preferences_url": PREFERENCES_URL,
            },
        )
        return _INLINER.inline(_render(settings, "mail/digest.html.j2", context)), context

    full_sizes = [len(rendered(post).content_html) for post in posts]
    summary_sizes = [len(rendered(post).summary_html) for post in posts]
    block_counts = [len(_blocks(rendered(post).content_html)) for post in posts]
    html_part, context = _fit(render, full_sizes, summary_sizes, block_counts, settings.digest.html_budget_bytes)
    # The text part only for the chosen render: converting to text is the slow half.
    text_part = _render(settings, "mail/digest.txt.j2", {**context, "posts_text": html_to_text(context["posts_html"])})
    return RenderedEdition(subject=subject, html=html_part, text=text_part)


def _fit(
    render: Callable[[Sequence[PostPlan]], Rendered],
    full_sizes: Sequence[int],
    summary_sizes: Sequence[int],
    block_counts: Sequence[int],
    budget: int,
) -> Rendered:
    """The render whose HTML fits `budget` with the most posts whole, in their order.

    The largest posts are shortened to their summaries first (which keeps the most posts whole; among equal
    sizes the later post first); when one post alone is shortened, it keeps as many of its leading paragraphs,
    lists and tables as fit. If summaries are still too long, the largest summaries become titles only.
    """
    count = len(full_sizes)

    def attempt(plans: Sequence[PostPlan]) -> Rendered | None:
        result = render(plans)
        return result if len(result[0].encode("utf-8")) <= budget else None

    everything = attempt([FULL] * count)
    if everything:
        return everything
    for richer, poorer, sizes in ((FULL, SUMMARY, full_sizes), (SUMMARY, LINK, summary_sizes)):
        largest_first = sorted(range(count), key=lambda i: (-sizes[i], -i))
        # Binary search for the fewest posts to shorten (shortening one more never makes the mail larger).
        low, high, best, fewest = 1, count, None, 0
        while low <= high:
            middle = (low + high) // 2
            if result := attempt(_shortened(richer, poorer, largest_first[:middle], count)):
                best, fewest, high = result, middle, middle - 1
            else:
                low = middle + 1
        if best is None:
            continue
        if richer == FULL and fewest == 1:
            plans = _shortened(richer, poorer, largest_first[:1], count)
            best = _longest_excerpt(attempt, plans, largest_first[0], block_counts[largest_first[0]]) or best
        return best
    # Even titles alone are over budget: send them anyway; the site has every post.
    return render([LINK] * count)


def _shortened(richer: PostPlan, poorer: PostPlan, indexes: Sequence[int], count: int) -> list[PostPlan]:
    plans = [richer] * count
    for index in indexes:
        plans[index] = poorer
    return plans


def _longest_excerpt(attempt, plans: list[PostPlan], index: int, blocks: int) -> Rendered | None:
    """The render with post `index` cut to the most leading blocks that fit (None if not even one does)."""
    low, high, best = 1, blocks - 1, None
    while low <= high:
        middle = (low + high) // 2
        plans[index] = ("excerpt", middle)
        if result := attempt(plans):
            best, low = result, middle + 1
        else:
            high = middle - 1
    return best


def edition_test_copy(settings: Settings, *, subject: str, html: str, text: str, to_email: str) -> Outgoing:
    """An edition as its subscribers get it (the same prepared message), to one address to look at: the subject
    marked as a test, the unsubscribe and preferences links going to the site, since it is sent to no
    subscriber, and no Feedback-ID, so that mailbox providers count it with no edition."""
    translate = translator(settings.site.language, "mail")
    skeleton = edition_skeleton(settings, translate("subject_test_copy", subject=subject), html, text)
    site = f"{settings.web.base_url}/"
    message = skeleton.build(
        to_email=to_email, to_name="", unsubscribe_url=site, preferences_url=site,
        message_id=message_id_for(settings, f"test-{secrets.token_hex(16)}"),
    )
    return Outgoing(sender=skeleton.envelope_sender, recipient=mail_address(to_email), message=message)


def confirmation_message(settings: Settings, *, to_email: str, to_name: str, confirm_url: str) -> Outgoing:
    """The double opt-in mail asking `to_email` to confirm their subscription at `confirm_url`."""
    translate = translator(settings.site.language, "mail")
    subject = translate("subject_confirm", site=settings.site.title)
    html_part, text_part = _render_pair(settings, "confirm", subject=subject, name=single_line(to_name), confirm_url=confirm_url)
    skeleton = MessageSkeleton(
        settings,
        subject=subject,
        html_body=html_part,
        text_body=text_part,
        is_list_mail=False,
        dkim_signer=DkimSigner.from_settings(settings),
    )
    message = skeleton.build(
        to_email=to_email,
        to_name=to_name,
        message_id=message_id_for(settings, secrets.token_hex(16)),
    )
    return Outgoing(sender=skeleton.envelope_sender, recipient=mail_address(to_email), message=message)


def welcome_message(
    settings: Settings, *, to_email: str, to_name: str, unsubscribe_url: str, preferences_url: str, message_id: str
) -> Outgoing:
    """The mail welcoming a subscriber once they confirmed (`mail.welcome`); a list mail, with its unsubscribe."""
    translate = translator(settings.site.language, "mail")
    subject = translate("subject_welcome", site=settings.site.title)
    html_part, text_part = _render_pair(
        settings, "welcome", subject=subject, name=single_line(to_name),
        unsubscribe_url=UNSUBSCRIBE_URL, preferences_url=PREFERENCES_URL,
    )
    skeleton = MessageSkeleton(
        settings, subject=subject, html_body=html_part, text_body=text_part, dkim_signer=DkimSigner.from_settings(settings)
    )
    message = skeleton.build(
        to_email=to_email, to_name=to_name, unsubscribe_url=unsubscribe_url, preferences_url=preferences_url,
        message_id=message_id,
    )
    return Outgoing(sender=skeleton.envelope_sender, recipient=mail_address(to_email), message=message)

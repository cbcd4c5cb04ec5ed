"""Rendering mails from the Jinja2 templates: digests (rendered once per edition) and confirmation mails.

Templates are looked up in the user's `mail.templates_dir` first, then in the bundled `templates/`, so a
user overrides one file by copying it. The words come from `strings.py` in the site's language, dates are
formatted by Babel for that locale, and CSS is inlined with css-inline (the @media rules for dark mode and
small screens stay in the <style> block, where clients that understand them look).
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urljoin

import css_inline
import nh3
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateError

from feedsvc.config import Settings
from feedsvc.mail.dkim import DkimSigner
from feedsvc.mail.message import (
    PREFERENCES_URL,
    UNSUBSCRIBE_URL,
    MessageSkeleton,
    mail_address,
    message_id_for,
    single_line,
)
from feedsvc.mail.strings import language_of, translator
from feedsvc.mail.transport import Outgoing
from feedsvc.resources import bundled_path

if TYPE_CHECKING:
    from feedsvc.posts.model import Post

# How much of a post a digest shows: all of it, its summary, or only its title and link.
PostMode = Literal["full", "summary", "link"]

_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
_URL_ATTRIBUTE = re.compile(r'\b(href|src)="([^"]*)"')
_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt=)", re.IGNORECASE)


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
    date_text: str
    author: str
    tags: tuple[str, ...]
    image: str | None
    summary_html: str
    summary_text: str
    content_html: str
    mode: PostMode


@lru_cache(maxsize=8)
def _environment(user_dir: Path | None) -> Environment:
    loaders = [FileSystemLoader(user_dir)] if user_dir else []
    loaders.append(FileSystemLoader(bundled_path("templates")))
    return Environment(
        loader=ChoiceLoader(loaders),
        autoescape=lambda name: name is not None and ".html" in name,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def environment(settings: Settings) -> Environment:
    return _environment(settings.mail.templates_dir)


def _babel_locale(site_language: str) -> Locale:
    try:
        return Locale.parse(site_language.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(language_of(site_language))


class MailTemplateError(Exception):
    """A mail template (usually a user's override) cannot be loaded or rendered; the message says where."""


def _render_pair(settings: Settings, template: str, **context: object) -> tuple[str, str]:
    """The (inlined HTML, text) of the template pair `mail/{template}.html.j2` + `mail/{template}.txt.j2`."""
    language = language_of(settings.site.language)
    context = {"site": settings.site, "lang": language, "_": translator(language),
               "postal_address": settings.mail.postal_address, **context}
    html_part = _INLINER.inline(_render(settings, f"mail/{template}.html.j2", context))
    return html_part, _render(settings, f"mail/{template}.txt.j2", context)


def _render(settings: Settings, name: str, context: dict[str, object]) -> str:
    try:
        template = environment(settings).get_template(name)
        return template.render(context)
    except TemplateError as exc:
        where = getattr(exc, "filename", None) or name
        line = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        raise MailTemplateError(f"mail template {where}{line}: {exc.message or exc}") from exc


def html_to_text(fragment: str) -> str:
    """Readable plain text of an HTML fragment (tags dropped, entities decoded, blank runs collapsed)."""
    spaced = re.sub(r"(?i)<br\s*/?>", "\n", re.sub(r"(?i)</(p|div|li|h[1-6]|blockquote|pre)>", "\n\n", fragment))
    text = html.unescape(nh3.clean(spaced, tags=set()))
    return re.sub(r"\n[ \t]*\n\s*", "\n\n", re.sub(r"[ \t]+", " ", text)).strip()


def _absolute_fragment(fragment: str, base_url: str) -> str:
    """Every href/src made absolute against the post's URL, and every image given an alt attribute."""
    absolute = _URL_ATTRIBUTE.sub(
        lambda m: f'{m.group(1)}="{html.escape(urljoin(base_url, html.unescape(m.group(2))))}"', fragment
    )
    return _IMG_WITHOUT_ALT.sub('<img alt=""', absolute)


def _post_view(settings: Settings, post: Post, mode: PostMode, locale: Locale) -> PostView:
    summary_html = _absolute_fragment(post.summary_html, post.url)
    return PostView(
        title=post.title,
        url=post.url,
        date_text=format_date(post.date.astimezone(settings.site.tz), format="long", locale=locale),
        author=post.author,
        tags=tuple(post.tags),
        image=urljoin(post.url, post.image) if post.image else None,
        summary_html=summary_html,
        summary_text=html_to_text(post.summary_html),
        content_html=_absolute_fragment(post.content_html, post.url) if mode == "full" else "",
        mode=mode,
    )


def _period_text(settings: Settings, start: datetime, end: datetime, locale: Locale, translate) -> str:
    tz = settings.site.tz
    first = format_date(start.astimezone(tz), format="long", locale=locale)
    last = format_date(end.astimezone(tz), format="long", locale=locale)
    return first if first == last else translate("period", start=first, end=last)


def render_edition(
    settings: Settings,
    posts: Sequence[Post],
    frequency: str,
    period_start: datetime,
    period_end: datetime,
) -> RenderedEdition:
    """Render a digest of `posts` once, fitting the HTML into `digest.html_budget_bytes`.

    Posts are shown in full while the final inlined HTML fits the budget; past it, the later posts are
    shortened to their summaries, and if even that is too long, to their titles.
    """
    if not posts:
        raise ValueError("an edition needs at least one post")
    language = language_of(settings.site.language)
    translate = translator(language)
    locale = _babel_locale(settings.site.language)
    site = settings.site.title
    subject = posts[0].title if len(posts) == 1 else translate("subject_many", site=site, count=len(posts))
    heading = translate(f"heading_{frequency}" if frequency in ("instant", "daily", "weekly") else "heading_instant", site=site)
    period = "" if frequency == "instant" else _period_text(settings, period_start, period_end, locale, translate)
    # One post: its own page is the browser version; several: the site's front page.
    browser_url = posts[0].url if len(posts) == 1 else f"{settings.site.url}/"
    preheader = (
        html_to_text(posts[0].summary_html)[:150] if len(posts) == 1 else " · ".join(p.title for p in posts)[:150]
    )
    views: dict[tuple[int, PostMode], PostView] = {}

    def view(index: int, mode: PostMode) -> PostView:
        if (index, mode) not in views:
            views[index, mode] = _post_view(settings, posts[index], mode, locale)
        return views[index, mode]

    def render(modes: Sequence[PostMode]) -> tuple[str, str]:
        return _render_pair(
            settings,
            "digest",
            subject=subject,
            heading=heading,
            period=period,
            preheader=preheader,
            browser_url=browser_url,
            posts=[view(i, mode) for i, mode in enumerate(modes)],
            shortened=any(mode != "full" for mode in modes),
            frequency=frequency,
            unsubscribe_url=UNSUBSCRIBE_URL,
            preferences_url=PREFERENCES_URL,
        )

    html_part, text_part = _fit(render, len(posts), settings.digest.html_budget_bytes)
    return RenderedEdition(subject=subject, html=html_part, text=text_part)


def _fit(render, count: int, budget: int) -> tuple[str, str]:
    """The render with the most leading posts in full (then in summary) whose HTML stays within `budget`."""

    def fits(result: tuple[str, str]) -> bool:
        return len(result[0].encode("utf-8")) <= budget

    everything = render(["full"] * count)
    if fits(everything):
        return everything
    for richer, poorer in (("full", "summary"), ("summary", "link")):
        # Binary search for the largest number k of leading posts shown richer; k = count already failed.
        low, high, best = 0, count - 1, None
        while low <= high:
            middle = (low + high) // 2
            result = render([richer] * middle + [poorer] * (count - middle))
            if fits(result):
                best, low = result, middle + 1
            else:
                high = middle - 1
        if best is not None:
            return best
    # Even titles alone are over budget: send them anyway; the site has every post.
    return render(["link"] * count)


def personalise(
    settings: Settings,
    *,
    subject: str,
    html: str,
    text: str,
    to_email: str,
    to_name: str,
    unsubscribe_url: str,
    preferences_url: str,
    message_id: str,
) -> bytes:
    """The complete RFC 5322 message of an edition for one subscriber."""
    skeleton = edition_skeleton(settings, subject, html, text)
    return skeleton.build(
        to_email=to_email,
        to_name=to_name,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        message_id=message_id,
    )


_skeletons: dict[tuple[int, str, str, str], MessageSkeleton] = {}


def edition_skeleton(settings: Settings, subject: str, html: str, text: str) -> MessageSkeleton:
    """The prepared message of an edition, built once and reused for every subscriber."""
    key = (id(settings), subject, html, text)
    skeleton = _skeletons.get(key)
    if skeleton is None:
        if len(_skeletons) >= 16:
            _skeletons.pop(next(iter(_skeletons)))
        skeleton = _skeletons[key] = MessageSkeleton(
            settings, subject=subject, html_body=html, text_body=text, dkim_signer=DkimSigner.from_settings(settings)
        )
    return skeleton


def confirmation_message(settings: Settings, *, to_email: str, to_name: str, confirm_url: str) -> Outgoing:
    """The double opt-in mail asking `to_email` to confirm their subscription at `confirm_url`."""
    translate = translator(language_of(settings.site.language))
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
    translate = translator(language_of(settings.site.language))
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

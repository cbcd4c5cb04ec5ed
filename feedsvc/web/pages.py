"""The browser side: home page, the subscribe form (also JSON), confirm, unsubscribe and preferences links."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from jinja2 import Template
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from feedsvc import subscriptions, tokens
from feedsvc.feeds.formats import BY_FILE_NAME
from feedsvc.metrics import CONFIRMATION_MAILS
from feedsvc.store import rate_limits
from feedsvc.subscriptions import Consent, Subscriber, SubscriptionRequest
from feedsvc.tokens import ExpiredToken, InvalidToken, Link, Purpose
from feedsvc.vocabulary import DEFAULT_FREQUENCY, FREQUENCIES
from feedsvc.web import forms
from feedsvc.web.context import WebContext, route, web_context
from feedsvc.web.forms import BLANK_FORM, BadInput, EmailAddress, FormState, Frequency, Name, Tags
from feedsvc.web.security import CSRF_FIELD, client_key

RATE_WINDOW = timedelta(hours=1)
RATE_PRUNE_INTERVAL = timedelta(minutes=10)


# --- the fields each page reads --------------------------------------------------------------------------------


class SubscribeFields(BaseModel):
    """The subscribe form (and its JSON twin); SHOWN, its fields in the order the home page's form shows them."""

    SHOWN: ClassVar[tuple[str, ...]] = ("email", "name", "frequency", "tags")

    model_config = ConfigDict(extra="forbid")
    email: EmailAddress
    name: Name = ""
    frequency: Frequency = DEFAULT_FREQUENCY
    tags: Tags = ()

    def request(self) -> SubscriptionRequest:
        return SubscriptionRequest(address=self.email, name=self.name, frequency=self.frequency, tags=self.tags)


class PreferencesFields(BaseModel):
    SHOWN: ClassVar[tuple[str, ...]] = ("frequency", "tags")
    model_config = ConfigDict(extra="forbid")
    frequency: Frequency
    tags: Tags = ()


class OneClickFields(BaseModel):
    """RFC 8058: a mail client's `List-Unsubscribe=One-Click` (the page's own button sends nothing)."""

    model_config = ConfigDict(extra="forbid")
    one_click: str = Field("", alias="List-Unsubscribe", max_length=64)


class LinkPath(BaseModel):
    token: str = Field(max_length=512)


def _now() -> datetime:
    return datetime.now(UTC)


def _link(web: WebContext, purpose: Purpose, request: Request) -> Link:
    try:
        return web.tokens.read(purpose, forms.path(LinkPath, request).token)
    except InvalidToken as exc:
        expired = isinstance(exc, ExpiredToken)
        raise HTTPException(400, web.translate("link_expired") if expired else web.translate("link_invalid")) from None


def _link_gone(web: WebContext) -> HTTPException:
    return HTTPException(400, web.translate("link_gone"))


async def _linked_subscriber(web: WebContext, link: Link) -> Subscriber | None:
    """The row the link was made for; None once that row is gone (ids are never reused, so a row found here
    and acted on by id afterwards is still the same subscriber)."""
    subscriber = await run_in_threadpool(subscriptions.get, web.engine, link.subscriber_id)
    return subscriber if link.opens(subscriber) else None


async def _change_linked(
    web: WebContext, link: Link, change: Callable[..., Subscriber | None], *args: object
) -> Subscriber | None:
    """`change(engine, subscriber_id, *args)` on the row the link opens; None when it opens none (any more)."""
    subscriber = await _linked_subscriber(web, link)
    if subscriber is None:
        return None
    return await run_in_threadpool(change, web.engine, subscriber.id, *args)


def _known_tags(web: WebContext, *extra: tuple[str, ...]) -> list[str]:
    """The tags offered in forms: those with feeds, plus any a subscriber already follows."""
    tags = set(web.topics())
    for more in extra:
        tags.update(more)
    return sorted(tags)


# --- home ------------------------------------------------------------------------------------------------------


@dataclass
class _HomePage:
    """The home page as rendered for one listing of the feeds and one version of its template, cut where the
    form's CSRF token goes: each request only puts its own token in. Whether either changed is looked at
    once per HOME_RECHECK_SECONDS."""

    listing: list[str]
    template: Template
    parts: list[bytes]
    checked: float


HOME_RECHECK_SECONDS = 1.0
_TOKEN_SLOT = f"csrf-slot-{secrets.token_hex(16)}"


def _home_values(web: WebContext, listing: list[str]) -> dict[str, object]:
    """What the home page shows besides its subscribe form's state and CSRF token."""
    site_feeds: list[dict[str, str]] = []
    tag_feeds: dict[str, list[dict[str, str]]] = {}
    for path in listing:
        name = path.rpartition("/")[2]
        feed_format = BY_FILE_NAME[name]
        feed = {"url": web.url(path), "type": feed_format.media_type, "label": feed_format.label}
        if path.startswith("/tags/"):
            tag_feeds.setdefault(path.split("/")[2], []).append(feed)
        else:
            site_feeds.append(feed)
    return {
        "site_feeds": site_feeds,
        "tag_feeds": sorted(tag_feeds.items()),
        "tags": sorted(tag_feeds),
        "frequencies": FREQUENCIES,
        "subscribe_url": web.url("/subscribe"),
    }


def _render_home(web: WebContext, listing: list[str], template: Template) -> _HomePage:
    html = web.page("home", **_home_values(web, listing), form=BLANK_FORM, csrf_token=_TOKEN_SLOT)
    return _HomePage(listing, template, html.encode().split(_TOKEN_SLOT.encode()), time.monotonic())


async def home(request: Request) -> Response:
    """Rendered again only when the feeds on disk or the template changed, not per request."""
    web = web_context(request)
    page: _HomePage | None = request.app.state.home_page
    if page is None or time.monotonic() - page.checked >= HOME_RECHECK_SECONDS:
        listing = web.feeds.paths()
        template = web.templates.get_template("web/home.html.j2")  # a new object once the file changed
        if page is None or page.listing is not listing or page.template is not template:
            page = request.app.state.home_page = _render_home(web, listing, template)
        page.checked = time.monotonic()
    token, new_cookie = web.csrf.token(request)
    response = HTMLResponse(token.encode().join(page.parts), headers=web.page_headers)
    web.csrf.set_cookie(response, new_cookie)
    return response


# --- subscribe -------------------------------------------------------------------------------------------------


def _count_hit(web: WebContext, key: str, limit: int) -> rate_limits.Decision:
    now = _now()
    with web.engine.begin() as connection:
        # Every client and address leaves a row; those whose window has passed count as fresh anyway, so
        # they are dropped now and then (by every process: a repeat deletes nothing).
        if now >= web.prune_rate_limits_at:
            web.prune_rate_limits_at = now + RATE_PRUNE_INTERVAL
            rate_limits.prune(connection, older_than=now - RATE_WINDOW)
        return rate_limits.hit(connection, key, limit=limit, window=RATE_WINDOW, now=now)


def _record_subscription(web: WebContext, request: SubscriptionRequest, consent: Consent) -> Subscriber | None:
    """Store the request; the subscriber to mail a confirmation to, or None. Every address state does the
    same store work (a rate-limit hit and a lookup) so timing tells as little as the answer."""
    per_address = _count_hit(web, f"subscribe:address:{request.address.key}", web.settings.web.subscribe_rate_per_address)
    pending = subscriptions.request_subscription(web.engine, request, consent, mail=per_address.allowed)
    if pending is not None and not per_address.allowed:
        CONFIRMATION_MAILS.labels("rate_limited").inc()
        return None
    return pending


async def _checked_fields(web: WebContext, request: Request) -> tuple[list[tuple[str, str]] | dict[str, Any], bool]:
    """The fields sent (see forms.body_fields); a form's only behind its CSRF token."""
    fields, as_json = await forms.body_fields(request)
    if not as_json and not web.csrf.valid(request, forms.form_value(fields, CSRF_FIELD)):
        raise HTTPException(403, web.translate("form_expired"))
    return fields, as_json


async def _refused(
    web: WebContext,
    request: Request,
    refused: BadInput,
    model: type[SubscribeFields | PreferencesFields],
    offers_tags: bool,
) -> FormState:
    """A refused form to show again, its problems next to its fields (a problem with topics the form does not
    offer is said of the form as a whole); a refused JSON body stays the API's 400."""
    if forms.media_type(request) == forms.JSON_TYPE:
        raise refused
    typed = await forms.typed_values(request, model)
    shown = [field for field in model.SHOWN if offers_tags or field != "tags"]
    return forms.refused_form(refused, typed, shown, web.translate)


async def _home_refused(web: WebContext, request: Request, refused: BadInput) -> Response:
    """The home page with its subscribe form refused (whichever form was sent: the home page's, a web copy's
    box or the resubscribe button)."""
    values = _home_values(web, web.feeds.paths())
    form = await _refused(web, request, refused, SubscribeFields, offers_tags=bool(values["tags"]))
    token, new_cookie = web.csrf.token(request)
    response = web.render("home", status=400, **values, form=form, csrf_token=token)
    web.csrf.set_cookie(response, new_cookie)
    return response


async def subscribe(request: Request) -> Response:
    web = web_context(request)
    try:
        fields, as_json = await _checked_fields(web, request)
        # The client limit comes first, so that floods of junk count too.
        per_client = await run_in_threadpool(
            _count_hit, web, f"subscribe:client:{client_key(request)}", web.settings.web.subscribe_rate_per_client
        )
        if not per_client.allowed:
            raise HTTPException(429, web.translate("too_many"), headers={"Retry-After": str(int(per_client.retry_after) + 1)})
        # Refused for what was typed only, never for the address's state: the answer tells nobody who subscribed.
        subscription = forms.form_or_json(SubscribeFields, fields).request()
    except BadInput as refused:
        return await _home_refused(web, request, refused)
    consent = Consent(
        at=_now(),
        source="web-json" if as_json else "web-form",
        ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )
    pending = await run_in_threadpool(_record_subscription, web, subscription, consent)
    # The mail goes out after the answer: the answer's timing does not depend on whether one is sent.
    background = (
        BackgroundTask(subscriptions.send_confirmations, web.settings, web.engine, web.transport)
        if pending is not None
        else None
    )
    message = web.translate("check_inbox", site=web.settings.site.title)
    if as_json:
        return JSONResponse({"status": "ok", "message": message}, status_code=202, background=background)
    response = web.message(web.translate("check_inbox_title"), message)
    response.background = background
    return response


# --- confirm, unsubscribe, preferences -------------------------------------------------------------------------


async def confirm_page(request: Request) -> Response:
    """GET (and HEAD) only show the question: mail scanners fetch links, and must not subscribe anyone."""
    web = web_context(request)
    subscriber = await _linked_subscriber(web, _link(web, Purpose.CONFIRM, request))
    if subscriber is None or subscriber.status not in ("pending", "active"):
        raise _link_gone(web)
    if subscriber.status == "active":
        return _confirmed_page(web, subscriber)
    return web.render("confirm", email=subscriber.email, action=web.url(request.url.path))


async def confirm(request: Request) -> Response:
    """The page's button. As for unsubscribing, the token in the URL is the proof: no CSRF token is asked for."""
    web = web_context(request)
    now = _now()
    subscriber = await _change_linked(web, _link(web, Purpose.CONFIRM, request), subscriptions.confirm, now)
    if subscriber is None:
        raise _link_gone(web)
    response = _confirmed_page(web, subscriber)
    if web.settings.mail.welcome and subscriber.confirmed_at == now:  # confirmed just now, not a second click
        response.background = BackgroundTask(subscriptions.send_welcome, web.settings, web.tokens, web.transport, subscriber)
    return response


def _confirmed_page(web: WebContext, subscriber: Subscriber) -> Response:
    preferences = tokens.preferences_url(web.settings, web.tokens, subscriber.id, subscriber.link_key)
    return web.message(
        web.translate("confirmed_title"),
        web.translate("confirmed", site=web.settings.site.title, email=subscriber.email),
        link={"url": preferences, "label": web.translate("manage_preferences")},
    )


async def unsubscribe_page(request: Request) -> Response:
    web = web_context(request)
    subscriber = await _linked_subscriber(web, _link(web, Purpose.UNSUBSCRIBE, request))
    if subscriber is None:
        raise _link_gone(web)
    if subscriber.status not in ("pending", "active"):
        return _unsubscribed_page(web, request, subscriber)
    return web.render("unsubscribe", email=subscriber.email, action=web.url(request.url.path))


def _unsubscribed_page(web: WebContext, request: Request, subscriber: Subscriber) -> Response:
    token, new_cookie = web.csrf.token(request)
    response = web.render("unsubscribed", subscriber=subscriber, subscribe_url=web.url("/subscribe"), csrf_token=token)
    web.csrf.set_cookie(response, new_cookie)
    return response


async def unsubscribe(request: Request) -> Response:
    """The page's button, and RFC 8058 one-click (`List-Unsubscribe=One-Click` from a mail client): both
    unsubscribe at once; the token in the URL is the proof, so no CSRF token is asked for."""
    web = web_context(request)
    link = _link(web, Purpose.UNSUBSCRIBE, request)
    one_click = False
    if request.headers.get("content-type"):
        fields, _ = await forms.body_fields(request)
        one_click = forms.form_or_json(OneClickFields, fields).one_click == "One-Click"
    subscriber = await _change_linked(web, link, subscriptions.unsubscribe, _now())
    if one_click:
        # An erased subscriber is as unsubscribed as can be: the mail client gets its 200 either way.
        return PlainTextResponse("unsubscribed\n")
    if subscriber is None:
        raise _link_gone(web)
    return _unsubscribed_page(web, request, subscriber)


async def preferences(request: Request) -> Response:
    web = web_context(request)
    link = _link(web, Purpose.PREFERENCES, request)
    saved, form = False, BLANK_FORM
    if request.method == "POST":
        try:
            fields, _ = await _checked_fields(web, request)
            chosen = forms.form_or_json(PreferencesFields, fields)
        except BadInput as refused:
            subscriber = await _linked_subscriber(web, link)
            offered = _known_tags(web, subscriber.tags) if subscriber is not None else []
            form = await _refused(web, request, refused, PreferencesFields, offers_tags=bool(offered))
        else:
            subscriber = await _change_linked(web, link, subscriptions.update_preferences, chosen.frequency, chosen.tags)
            saved = True
    else:
        subscriber = await _linked_subscriber(web, link)
    if subscriber is None:
        raise _link_gone(web)
    token, new_cookie = web.csrf.token(request)
    response = web.render(
        "preferences",
        status=400 if form.errors else 200,
        subscriber=subscriber,
        saved=saved,
        form=form,
        frequencies=FREQUENCIES,
        tags=_known_tags(web, subscriber.tags),
        action=web.url(request.url.path),
        unsubscribe_url=tokens.unsubscribe_url(web.settings, web.tokens, subscriber.id, subscriber.link_key),
        subscribe_url=web.url("/subscribe"),
        csrf_token=token,
    )
    web.csrf.set_cookie(response, new_cookie)
    return response


routes = [
    route("/", get=home),
    route("/subscribe", post=subscribe),
    route("/confirm/{token}", get=confirm_page, post=confirm),
    route("/unsubscribe/{token}", get=unsubscribe_page, post=unsubscribe),
    route("/preferences/{token}", get=preferences, post=preferences),
]

"""Subscribers: search and filters paged by key, one subscriber's history, and what the operator may do."""

from __future__ import annotations

import io
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from feedsvc import mail_events, subscriptions
from feedsvc.store import dashboard
from feedsvc.store import deliveries as delivery_store
from feedsvc.store import subscribers as subscriber_store
from feedsvc.vocabulary import FREQUENCIES, STATUSES
from feedsvc.web.admin.common import PREFIX, Admin, admin_page, now
from feedsvc.web.api import confirmations_task

PAGE_SIZE = 50
HISTORY_LIMIT = 200


def _day(raw: str, field_name: str) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)
    except ValueError:
        raise HTTPException(400, f"{field_name}: give a date as YYYY-MM-DD") from None


def _chosen_filter(admin: Admin) -> dashboard.SubscriberFilter:
    status, frequency, sort = admin.field("status"), admin.field("frequency"), admin.field("sort", "newest")
    if status and status not in STATUSES:
        raise HTTPException(400, f"status: one of {', '.join(STATUSES)}")
    if frequency and frequency not in FREQUENCIES:
        raise HTTPException(400, f"frequency: one of {', '.join(FREQUENCIES)}")
    if sort not in dashboard.SUBSCRIBER_SORTS:
        raise HTTPException(400, f"sort: one of {', '.join(dashboard.SUBSCRIBER_SORTS)}")
    until = _day(admin.field("until"), "until")
    return dashboard.SubscriberFilter(
        query=admin.field("q").strip()[:320], status=status, frequency=frequency,
        since=_day(admin.field("since"), "since"), until=until + timedelta(days=1) if until else None,
        topic=_topic(admin.field("topic")), sort=sort,
    )


def _topic(raw: str) -> str:
    if raw in ("", dashboard.EVERY_POST):
        return raw
    try:
        [topic] = subscriptions.parse_tags([raw])
    except subscriptions.InvalidInput as problem:
        raise HTTPException(400, f"topic: {problem.reason}") from None
    return topic


def _after(admin: Admin) -> dashboard.After | None:
    raw = admin.field("after")
    if not raw:
        return None
    identifier, _, email_key = raw.partition(":")
    if not identifier.isdigit():
        raise HTTPException(400, "after: not a position in this list")
    return dashboard.After(int(identifier), email_key)


@admin_page
async def list_page(admin: Admin) -> Response:
    chosen = _chosen_filter(admin)

    def page():
        with admin.web.engine.connect() as connection:
            return dashboard.subscribers_page(connection, chosen, after=_after(admin), limit=PAGE_SIZE + 1)

    rows = await admin.run(page)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    params = {key: value for key, value in admin.request.query_params.items() if key not in ("after", "note")}
    next_after = f"{rows[-1].id}:{rows[-1].email_key if chosen.sort == 'email' else ''}" if more else ""
    return admin.render(
        "subscribers", rows=rows, chosen=chosen, params=params, next_after=next_after, statuses=STATUSES,
        frequencies=FREQUENCIES, sorts=list(dashboard.SUBSCRIBER_SORTS), until=admin.field("until"),
        topics=sorted(admin.web.topics() | ({chosen.topic} - {"", dashboard.EVERY_POST})), every_post=dashboard.EVERY_POST,
        since=admin.field("since"), note=admin.field("note"),
    )


@admin_page
async def export(admin: Admin) -> Response:
    """The subscribers of the current filter as CSV (what `feedsvc subscribers import` reads)."""
    chosen = _chosen_filter(admin)

    def write() -> tuple[str, int]:
        out = io.StringIO()
        with admin.web.engine.connect() as connection:
            written = subscriptions.write_csv(dashboard.every_matching(connection, chosen), out)
        return out.getvalue(), written

    body, written = await admin.run(write)
    await admin.audit("export", "subscribers", f"{written} rows; filter {urlencode(admin.request.query_params)}")
    return Response(body, media_type="text/csv; charset=utf-8", headers={
        **admin.web.page_headers, "content-disposition": 'attachment; filename="subscribers.csv"'})


def _subscriber_id(admin: Admin) -> int:
    return int(admin.request.path_params["subscriber_id"])


@admin_page
async def detail_page(admin: Admin) -> Response:
    subscriber_id = _subscriber_id(admin)

    def load():
        with admin.web.engine.connect() as connection:
            subscriber = subscriber_store.get(connection, subscriber_id)
            if subscriber is None:
                return None, [], []
            return (
                subscriber,
                dashboard.mails_to(connection, subscriber_id, limit=HISTORY_LIMIT),
                dashboard.events_of(connection, subscriber_id, limit=HISTORY_LIMIT),
            )

    subscriber, mails, events = await admin.run(load)
    if subscriber is None:
        raise HTTPException(404, "no such subscriber (erased, or never there)")
    return admin.render(
        "subscriber", subscriber=subscriber, mails=mails, events=events, frequencies=FREQUENCIES,
        note=admin.field("note"),
    )


async def _existing(admin: Admin) -> subscriptions.Subscriber:
    subscriber = await admin.run(subscriptions.get, admin.web.engine, _subscriber_id(admin))
    if subscriber is None:
        raise HTTPException(404, "no such subscriber (erased, or never there)")
    return subscriber


def _queue_confirmation(engine, subscriber_id: int) -> None:
    with engine.begin() as connection:
        delivery_store.queue_confirmation(connection, subscriber_id, now())


@admin_page
async def act(admin: Admin) -> Response:
    """One action on one subscriber, named by the button pressed."""
    subscriber = await _existing(admin)
    engine, action, page = admin.web.engine, admin.field("action"), f"{PREFIX}/subscribers/{subscriber.id}"
    if action == "resend_confirmation":
        if subscriber.status != "pending":
            raise HTTPException(400, "only a pending subscriber is sent a confirmation mail")
        await admin.run(_queue_confirmation, engine, subscriber.id)
        await admin.audit(action, f"subscriber {subscriber.id}")
        response = admin.redirect(page, admin.web.translate("admin_note_confirmation_queued"))
        response.background = confirmations_task(admin.web, True)
        return response
    if action == "preferences":
        frequency = admin.field("frequency")
        if frequency not in FREQUENCIES:
            raise HTTPException(400, f"frequency: one of {', '.join(FREQUENCIES)}")
        try:
            tags = subscriptions.parse_tags(admin.field("tags"))
        except subscriptions.InvalidInput as problem:
            raise HTTPException(400, str(problem)) from None
        await admin.run(subscriptions.update_preferences, engine, subscriber.id, frequency, tags)
        change = f"{subscriber.frequency} -> {frequency}; topics {' '.join(subscriber.tags) or 'all'} -> {' '.join(tags) or 'all'}"
        await admin.audit(action, f"subscriber {subscriber.id}", change)
        cadence = admin.web.translate(f"admin_cadence_{frequency}")
        topics = " ".join(tags) or admin.web.translate("admin_every_post")
        return admin.redirect(page, admin.web.translate("admin_note_saved", cadence=cadence, topics=topics))
    if action == "unsubscribe":
        await admin.run(subscriptions.remove, engine, subscriber.email, now())
        await admin.audit(action, f"subscriber {subscriber.id}")
        return admin.redirect(page, admin.web.translate("admin_note_unsubscribed"))
    if action == "clear_suppression":
        reason = admin.field("reason").strip()
        if not reason:
            raise HTTPException(400, "reason: say why the bounce or complaint is lifted")
        before = await admin.run(mail_events.clear, engine, subscriber.email, now(), f"admin:{secrets.token_hex(8)}")
        await admin.audit(action, f"subscriber {subscriber.id}", f"was {before}: {reason}")
        return admin.redirect(page, admin.web.translate("admin_note_suppression_cleared"))
    if action == "erase":
        await admin.require_password()
        await admin.run(subscriptions.remove, engine, subscriber.email, now(), forget=True)
        await admin.audit(action, f"subscriber {subscriber.id}", "erased with every mail and event")
        return admin.redirect(f"{PREFIX}/subscribers", admin.web.translate("admin_note_erased", id=subscriber.id))
    raise HTTPException(400, "action: not one this page offers")


routes = [
    Route(f"{PREFIX}/subscribers", list_page, methods=["GET"]),
    Route(f"{PREFIX}/subscribers.csv", export, methods=["GET"]),
    Route(f"{PREFIX}/subscribers/{{subscriber_id:int}}", detail_page, methods=["GET"]),
    Route(f"{PREFIX}/subscribers/{{subscriber_id:int}}", act, methods=["POST"]),
]

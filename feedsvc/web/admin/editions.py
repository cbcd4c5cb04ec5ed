"""Editions: the list with delivery counts, one edition's recipients and failures, retry and cancel."""

from __future__ import annotations

from datetime import timedelta

from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from feedsvc import subscriptions
from feedsvc.mail.render import edition_test_copy
from feedsvc.mail.transport import SendError
from feedsvc.store import dashboard
from feedsvc.store.deliveries import edition_content
from feedsvc.store.editions import delivery_states
from feedsvc.store.schema import DELIVERY_STATES
from feedsvc.web.admin.common import PREFIX, Admin, admin_page, now, throttle

PAGE_SIZE = 50
# Test copies an admin may send per hour: enough to check an edition in a few mailboxes, too few to spam.
TEST_COPIES_PER_HOUR = 10


def _position(admin: Admin, name: str) -> int | None:
    raw = admin.field(name)
    if not raw:
        return None
    if not raw.isdigit():
        raise HTTPException(400, f"{name}: not a position in this list")
    return int(raw)


@admin_page
async def list_page(admin: Admin) -> Response:
    def load():
        with admin.web.engine.connect() as connection:
            rows = dashboard.editions_page(connection, before_id=_position(admin, "before"), limit=PAGE_SIZE + 1)
            return rows, delivery_states(connection, [row.id for row in rows[:PAGE_SIZE]])

    rows, states = await admin.run(load)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return admin.render(
        "editions", rows=rows, states=states, shown_states=DELIVERY_STATES,
        next_before=rows[-1].id if more else None,
    )


def _edition_id(admin: Admin) -> int:
    return int(admin.request.path_params["edition_id"])


@admin_page
async def detail_page(admin: Admin) -> Response:
    edition_id = _edition_id(admin)
    failed_only = admin.field("show") == "failed"

    def load():
        with admin.web.engine.connect() as connection:
            edition = dashboard.edition(connection, edition_id)
            if edition is None:
                return None, {}, []
            lines = dashboard.edition_deliveries(
                connection, edition_id, states=("failed", "bounced", "retry") if failed_only else (),
                after_subscriber=_position(admin, "after"), limit=PAGE_SIZE + 1,
            )
            return edition, delivery_states(connection, [edition_id])[edition_id], lines

    edition, states, lines = await admin.run(load)
    if edition is None:
        raise HTTPException(404, "no such edition")
    more = len(lines) > PAGE_SIZE
    lines = lines[:PAGE_SIZE]
    return admin.render(
        "edition", edition=edition, states=states, shown_states=DELIVERY_STATES, lines=lines, failed_only=failed_only,
        next_after=lines[-1].subscriber_id if more else None, note=admin.field("note"),
        test_address=admin.web.settings.mail.reply_to,
    )


@admin_page
async def web_copy(admin: Admin) -> Response:
    """The edition's HTML as mailed (links personalised at send time are left as placeholders)."""

    def load():
        with admin.web.engine.connect() as connection:
            return dashboard.edition_html(connection, _edition_id(admin))

    html = await admin.run(load)
    if html is None:
        raise HTTPException(404, "no such edition")
    # Its own strict policy: the mail's HTML shows, nothing in it runs or loads from elsewhere.
    return HTMLResponse(html, headers={**admin.web.page_headers, "content-security-policy":
                                       "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; sandbox"})


@admin_page
async def act(admin: Admin) -> Response:
    edition_id, action = _edition_id(admin), admin.field("action")
    page = f"{PREFIX}/editions/{edition_id}"

    def run(change):
        with admin.web.engine.begin() as connection:
            if dashboard.edition(connection, edition_id) is None:
                raise HTTPException(404, "no such edition")
            return change(connection)

    if action == "retry_failed":
        await admin.require_password()
        number = await admin.run(run, lambda connection: dashboard.retry_failed(connection, edition_id, now()))
        await admin.audit(action, f"edition {edition_id}", f"{number} deliveries queued again")
        return admin.redirect(page, admin.web.translate("admin_note_retried", count=number))
    if action == "cancel_waiting":
        await admin.require_password()
        number = await admin.run(run, lambda connection: dashboard.cancel_waiting(connection, edition_id))
        await admin.audit(action, f"edition {edition_id}", f"{number} deliveries cancelled")
        return admin.redirect(page, admin.web.translate("admin_note_cancelled", count=number))
    if action == "send_test":
        return await _send_test_copy(admin, edition_id)
    raise HTTPException(400, "action: not one this page offers")


async def _send_test_copy(admin: Admin, edition_id: int) -> Response:
    """The edition to one address, through the app's own mail transport, recorded as no delivery."""
    try:
        address = subscriptions.normalise_address(admin.field("address"))
    except subscriptions.InvalidInput as problem:
        raise HTTPException(400, str(problem)) from None

    def load():
        with admin.web.engine.connect() as connection:
            return edition_content(connection, edition_id) if dashboard.edition(connection, edition_id) else None

    content = await admin.run(load)
    if content is None:
        raise HTTPException(404, "no such edition")
    await throttle(admin.web, [(f"admin-test-copy:{admin.session.username}", TEST_COPIES_PER_HOUR)],
                   timedelta(hours=1), "too many test copies")
    outgoing = edition_test_copy(
        admin.web.settings, subject=content.subject, html=content.html, text=content.text, to_email=address.email
    )
    try:
        await admin.web.transport.send(outgoing)
    except SendError as exc:
        raise HTTPException(502, f"the mail server did not take the test copy: {exc.reason}") from None
    await admin.audit("send_test", f"edition {edition_id}", f"to {address.email}")
    return admin.redirect(
        f"{PREFIX}/editions/{edition_id}", admin.web.translate("admin_note_test_copy_sent", address=address.email)
    )


routes = [
    Route(f"{PREFIX}/editions", list_page, methods=["GET"]),
    Route(f"{PREFIX}/editions/{{edition_id:int}}", detail_page, methods=["GET"]),
    Route(f"{PREFIX}/editions/{{edition_id:int}}", act, methods=["POST"]),
    Route(f"{PREFIX}/editions/{{edition_id:int}}/copy", web_copy, methods=["GET"]),
]

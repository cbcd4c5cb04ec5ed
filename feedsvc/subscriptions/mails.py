"""The mails of a subscription: the confirmation mails queued with pending subscribers, and the welcome."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import Engine

from feedsvc.config import Settings
from feedsvc.mail.message import message_id_for
from feedsvc.mail.queue import drain
from feedsvc.mail.render import welcome_message
from feedsvc.mail.transport import SendError, Transport
from feedsvc.metrics import CONFIRMATION_MAILS
from feedsvc.store.subscribers import Subscriber
from feedsvc.tokens import Tokens, preferences_url, unsubscribe_url

log = logging.getLogger(__name__)


async def send_confirmations(settings: Settings, engine: Engine, transport: Transport) -> int:
    """Send the queued confirmation mails now (they were queued with their pending subscribers); how many went.

    One that fails stays queued with its retries, which every sender (`run`, `worker`, `digest send`) makes.
    """
    report = await drain(settings, engine, transport, worker_id=f"confirm-{uuid.uuid4().hex[:12]}", kind="confirmation")
    CONFIRMATION_MAILS.labels("sent").inc(report.sent)
    CONFIRMATION_MAILS.labels("failed").inc(report.done - report.sent)
    return report.sent


async def send_welcome(settings: Settings, tokens: Tokens, transport: Transport, subscriber: Subscriber) -> bool:
    """The welcome mail after a confirmation (`mail.welcome`); a failure is logged, never raised."""
    try:
        outgoing = welcome_message(
            settings,
            to_email=subscriber.email,
            to_name=subscriber.name,
            unsubscribe_url=unsubscribe_url(settings, tokens, subscriber.id, subscriber.link_key),
            preferences_url=preferences_url(settings, tokens, subscriber.id, subscriber.link_key),
            message_id=message_id_for(settings, f"welcome:{subscriber.id}:{subscriber.confirmed_at}"),
        )
        await transport.send(outgoing)
    except (SendError, OSError) as exc:
        log.warning("welcome mail to subscriber %d not sent: %s", subscriber.id, exc)
        return False
    return True

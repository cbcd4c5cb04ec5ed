"""Provider webhooks under /hooks/<provider>: bounces, complaints and unsubscribes that a sending provider
reports by HTTP instead of by mail. One handler per provider in `PROVIDERS`; each checks the provider's
signature or shared secret first and refuses anything else (with a log line), then turns the events into
`mail_events.Report`s, which the same policy as the inbound mail applies.

- Amazon SES, through an SNS topic: the SNS message signature is checked against the certificate at
  SigningCertURL, which must be https on sns.<region>.amazonaws.com; subscription confirmations are followed.
- Postmark: HTTP basic auth with the user and password configured (put them in the webhook URL).
- Mailgun: HMAC-SHA256 of timestamp + token under the webhook signing key.
- SendGrid: the signed event webhook, ECDSA P-256 over timestamp + body under the configured public key.
Every event has a provider id that becomes its event key: a webhook delivered twice counts once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedsvc.config import HooksSettings
from feedsvc.mail_events import Kind, Report, apply
from feedsvc.tokens import Purpose, read_tagged_address
from feedsvc.web.context import WebContext, web_context

log = logging.getLogger(__name__)


class Refused(Exception):
    """The call is not from the provider (bad or missing signature, disabled provider, malformed payload)."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.status = status


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused("the body is not JSON", 400) from None


def _fresh(timestamp: str, hooks: HooksSettings) -> None:
    try:
        age = abs(time.time() - float(timestamp))
    except ValueError:
        raise Refused("the timestamp is not a number") from None
    if age > hooks.max_age_seconds:
        raise Refused(f"the signature is {age:.0f} s old (replayed?)")


def _by_address_or_verp(web: WebContext, source_address: str) -> dict[str, int]:
    """The delivery our VERP envelope sender names, when the provider passes it back."""
    tagged = read_tagged_address(web.tokens, source_address) if source_address else None
    return {"delivery_id": tagged[1]} if tagged and tagged[0] is Purpose.BOUNCE else {}


# --- Amazon SES via SNS --------------------------------------------------------------------------------------

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_certificates: dict[str, x509.Certificate] = {}


def _sns_url_allowed(url: str, hooks: HooksSettings) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https" and _SNS_HOST.match(parts.hostname or "") and not parts.username and parts.port in (None, 443):
        return True
    return any(url.startswith(prefix) for prefix in hooks.ses_extra_cert_url_prefixes if prefix)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # the URL passed _sns_url_allowed
        return response.read(1024 * 1024)


def _sns_certificate(url: str) -> x509.Certificate:
    certificate = _certificates.get(url)
    if certificate is None:
        try:
            certificate = x509.load_pem_x509_certificate(_fetch(url))
        except (OSError, ValueError) as exc:
            raise Refused(f"the signing certificate at {url} cannot be loaded: {exc}") from None
        _certificates[url] = certificate
    now = datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Refused("the signing certificate is not valid now")
    return certificate


def _verify_sns(message: dict[str, Any], hooks: HooksSettings) -> None:
    kind = message.get("Type")
    if kind not in _SNS_FIELDS:
        raise Refused(f"unknown SNS message type {kind!r}", 400)
    cert_url = str(message.get("SigningCertURL") or message.get("SigningCertUrl") or "")
    if not _sns_url_allowed(cert_url, hooks):
        raise Refused(f"the signing certificate URL {cert_url!r} is not an SNS one")
    if hooks.ses_topic_arns and message.get("TopicArn") not in hooks.ses_topic_arns:
        raise Refused(f"topic {message.get('TopicArn')!r} is not in hooks.ses_topic_arns")
    digest = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(message.get("SignatureVersion")))
    if digest is None:
        raise Refused(f"unknown SignatureVersion {message.get('SignatureVersion')!r}")
    signed = "".join(f"{name}\n{message[name]}\n" for name in _SNS_FIELDS[kind] if message.get(name) is not None)
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except binascii.Error:
        raise Refused("the signature is not base64") from None
    public_key = _sns_certificate(cert_url).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise Refused("the signing certificate has no RSA key")
    try:
        public_key.verify(signature, signed.encode("utf-8"), padding.PKCS1v15(), digest)
    except InvalidSignature:
        raise Refused("the SNS signature does not verify") from None


async def ses(web: WebContext, request: Request, body: bytes) -> list[Report]:
    hooks = web.settings.hooks
    if not hooks.ses_enabled:
        raise Refused("hooks.ses_enabled is off", 404)
    message = _json(body)
    if not isinstance(message, dict):
        raise Refused("not an SNS message", 400)
    await run_in_threadpool(_verify_sns, message, hooks)
    if message["Type"] == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL", ""))
        if not _sns_url_allowed(url, hooks):
            raise Refused(f"SubscribeURL {url!r} is not an SNS one")
        await run_in_threadpool(_fetch, url)
        log.info("hooks.ses: subscribed to SNS topic %s", message.get("TopicArn"))
        return []
    if message["Type"] != "Notification":
        return []
    notification = _json(str(message.get("Message", "")).encode())
    return list(_ses_reports(web, notification, str(message["MessageId"])))


def _ses_reports(web: WebContext, notification: Any, message_id: str) -> Iterable[Report]:
    if not isinstance(notification, dict):
        return
    kind_name = notification.get("notificationType") or notification.get("eventType")
    verp = _by_address_or_verp(web, str((notification.get("mail") or {}).get("source", "")))
    if kind_name == "Bounce":
        bounce = notification.get("bounce") or {}
        kind = Kind.HARD_BOUNCE if bounce.get("bounceType") == "Permanent" else Kind.SOFT_BOUNCE
        for recipient in bounce.get("bouncedRecipients") or []:
            address = str(recipient.get("emailAddress", ""))
            detail = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}: {recipient.get('diagnosticCode', '')}"
            yield Report(kind, "ses", f"ses:{message_id}:{address}", detail.strip(), address=address, **verp)
    elif kind_name == "Complaint":
        complaint = notification.get("complaint") or {}
        for recipient in complaint.get("complainedRecipients") or []:
            address = str(recipient.get("emailAddress", ""))
            detail = f"complaint ({complaint.get('complaintFeedbackType', 'unspecified')})"
            yield Report(Kind.COMPLAINT, "ses", f"ses:{message_id}:{address}", detail, address=address, **verp)


# --- Postmark ------------------------------------------------------------------------------------------------

_POSTMARK_KINDS = {
    "HardBounce": Kind.HARD_BOUNCE,
    "BadEmailAddress": Kind.HARD_BOUNCE,
    "ManuallyDeactivated": Kind.HARD_BOUNCE,
    "SoftBounce": Kind.SOFT_BOUNCE,
    "Transient": Kind.SOFT_BOUNCE,
    "DnsError": Kind.SOFT_BOUNCE,
    "SpamComplaint": Kind.COMPLAINT,
}


async def postmark(web: WebContext, request: Request, body: bytes) -> list[Report]:
    hooks = web.settings.hooks
    if not (hooks.postmark_username and hooks.postmark_password):
        raise Refused("hooks.postmark_username/password are not set", 404)
    expected = base64.b64encode(f"{hooks.postmark_username}:{hooks.postmark_password}".encode()).decode()
    if not hmac.compare_digest(request.headers.get("authorization", "").encode(), f"Basic {expected}".encode()):
        raise Refused("wrong or missing basic auth", 401)
    event = _json(body)
    if not isinstance(event, dict):
        raise Refused("not a Postmark event", 400)
    record = event.get("RecordType")
    event_id = event.get("ID") or event.get("MessageID") or hashlib.sha256(body).hexdigest()
    if record in ("Bounce", "SpamComplaint"):
        kind = Kind.COMPLAINT if record == "SpamComplaint" else _POSTMARK_KINDS.get(str(event.get("Type")))
        if kind is None:
            return []
        address = str(event.get("Email", ""))
        detail = f"{event.get('Type', record)}: {event.get('Description') or event.get('Details') or ''}".strip()
        return [Report(kind, "postmark", f"postmark:{record}:{event_id}", detail, address=address)]
    if record == "SubscriptionChange" and event.get("SuppressSending") and event.get("SuppressionReason") == "ManualSuppression":
        address = str(event.get("Recipient", ""))
        return [Report(Kind.UNSUBSCRIBE, "postmark", f"postmark:{record}:{event_id}:{event.get('ChangedAt')}",
                       "unsubscribed at Postmark", address=address)]
    return []


# --- Mailgun -------------------------------------------------------------------------------------------------


async def mailgun(web: WebContext, request: Request, body: bytes) -> list[Report]:
    hooks = web.settings.hooks
    if not hooks.mailgun_signing_key:
        raise Refused("hooks.mailgun_signing_key is not set", 404)
    payload = _json(body)
    signature = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(signature, dict):
        raise Refused("no signature")
    timestamp, token = str(signature.get("timestamp", "")), str(signature.get("token", ""))
    expected = hmac.new(hooks.mailgun_signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), str(signature.get("signature", "")).encode()):
        raise Refused("the Mailgun signature does not verify")
    _fresh(timestamp, hooks)
    data = payload.get("event-data") or {}
    event, address = data.get("event"), str(data.get("recipient", ""))
    key = f"mailgun:{data.get('id') or token}"
    status = data.get("delivery-status") or {}
    detail = f"{status.get('code', '')} {status.get('description') or status.get('message') or data.get('reason', '')}".strip()
    if event == "failed":
        kind = Kind.HARD_BOUNCE if data.get("severity") == "permanent" else Kind.SOFT_BOUNCE
        return [Report(kind, "mailgun", key, detail, address=address)]
    if event in ("complained", "unsubscribed"):
        kind = Kind.COMPLAINT if event == "complained" else Kind.UNSUBSCRIBE
        return [Report(kind, "mailgun", key, event, address=address)]
    return []


# --- SendGrid ------------------------------------------------------------------------------------------------

_SENDGRID_KINDS = {"spamreport": Kind.COMPLAINT, "unsubscribe": Kind.UNSUBSCRIBE, "group_unsubscribe": Kind.UNSUBSCRIBE}


async def sendgrid(web: WebContext, request: Request, body: bytes) -> list[Report]:
    hooks = web.settings.hooks
    if not hooks.sendgrid_public_key:
        raise Refused("hooks.sendgrid_public_key is not set", 404)
    signature = request.headers.get("x-twilio-email-event-webhook-signature", "")
    timestamp = request.headers.get("x-twilio-email-event-webhook-timestamp", "")
    try:
        public_key = load_der_public_key(base64.b64decode(hooks.sendgrid_public_key))
        signature_bytes = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise Refused("the signature or hooks.sendgrid_public_key is not valid base64 DER") from None
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise Refused("hooks.sendgrid_public_key is not an elliptic curve key")
    try:
        public_key.verify(signature_bytes, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused("the SendGrid signature does not verify") from None
    _fresh(timestamp, hooks)
    events = _json(body)
    if not isinstance(events, list):
        raise Refused("not a list of SendGrid events", 400)
    reports = []
    for event in events:
        if not isinstance(event, dict):
            continue
        name, address = event.get("event"), str(event.get("email", ""))
        key = f"sendgrid:{event.get('sg_event_id') or hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()}"
        if name == "bounce":
            # "blocked" is SendGrid's temporary refusal (a blocklist, a busy server); "bounce" is permanent.
            kind = Kind.SOFT_BOUNCE if event.get("type") == "blocked" else Kind.HARD_BOUNCE
            detail = f"{event.get('status', '')} {event.get('reason', '')}".strip()
            reports.append(Report(kind, "sendgrid", key, detail, address=address))
        elif name in _SENDGRID_KINDS:
            reports.append(Report(_SENDGRID_KINDS[name], "sendgrid", key, str(name), address=address))
    return reports


# --- the route -----------------------------------------------------------------------------------------------

Handler = Callable[[WebContext, Request, bytes], Awaitable[list[Report]]]
PROVIDERS: dict[str, Handler] = {"ses": ses, "postmark": postmark, "mailgun": mailgun, "sendgrid": sendgrid}


async def provider_hook(request: Request) -> Response:
    web = web_context(request)
    provider = request.path_params["provider"]
    handler = PROVIDERS.get(provider)
    if handler is None:
        return JSONResponse({"error": "unknown provider"}, status_code=404)
    body = await request.body()
    try:
        reports = await handler(web, request, body)
    except Refused as exc:
        client = request.client.host if request.client else "?"
        log.warning("hooks.%s: refused a call from %s: %s", provider, client, exc)
        headers = {"www-authenticate": 'Basic realm="feedsvc hooks"'} if exc.status == 401 else None
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)
    now = datetime.now(UTC)
    outcomes = [await run_in_threadpool(apply, web.settings, web.engine, report, now) for report in reports]
    return JSONResponse({"events": len(reports), "recorded": sum(o.value == "recorded" for o in outcomes)})


routes = [Route("/hooks/{provider}", provider_hook, methods=["POST"])]

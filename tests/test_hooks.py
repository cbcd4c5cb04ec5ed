"""Provider webhooks through a real uvicorn server: each provider's signature checked with keys made here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import test_web
from conftest import add_subscribers
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from tls_certs import issue, make_ca

from feedsvc import mail_events
from feedsvc.tokens import bounce_sender, tokens_for
from feedsvc.web.hooks import _sns_url_allowed

serve = test_web.serve  # the real-uvicorn fixture of the web tests
START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


class CertServer:
    """A local HTTP server standing in for SNS: it serves the signing certificate and records subscribe calls."""

    def __init__(self, certificate_pem: bytes) -> None:
        self.requests: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                body = certificate_pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def sns() -> Iterator[tuple[CertServer, object]]:
    ca = make_ca("feedsvc test CA standing in for Amazon")
    signing = issue(ca, "sns.us-east-1.amazonaws.com")
    server = CertServer(signing.cert_pem)
    yield server, signing
    server.server.shutdown()


def sns_message(signing, cert_url: str, kind: str, message: str, *, version: str = "2", **extra: str) -> dict:
    body = {
        "Type": kind,
        "MessageId": extra.pop("MessageId", "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-feedback",
        "Message": message,
        "Timestamp": "2026-11-02T12:00:05.000Z",
        "SignatureVersion": version,
        "SigningCertURL": cert_url,
        **extra,
    }
    fields = {
        "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
        "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    }[kind]
    signed = "".join(f"{name}\n{body[name]}\n" for name in fields if name in body)
    digest = hashes.SHA256() if version == "2" else hashes.SHA1()
    body["Signature"] = base64.b64encode(signing.key.sign(signed.encode(), padding.PKCS1v15(), digest)).decode()
    return body


def ses_bounce(address: str, source: str, bounce_type: str = "Permanent") -> str:
    """An SES bounce notification as AWS documents it."""
    return json.dumps({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type, "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1",
                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "timestamp": "2026-11-02T12:00:04.000Z", "feedbackId": "0100017-bounce", "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {"timestamp": "2026-11-02T12:00:00.000Z", "source": source, "messageId": "0100017-mail",
                 "destination": [address]},
    })


def ses_complaint(address: str) -> str:
    return json.dumps({
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": address}], "complaintFeedbackType": "abuse",
                      "timestamp": "2026-11-02T12:10:00.000Z", "feedbackId": "0100017-complaint"},
        "mail": {"timestamp": "2026-11-02T12:00:00.000Z", "source": "news@blog.example.org", "messageId": "0100017-mail2",
                 "destination": [address]},
    })


def status(served, address: str) -> str:
    return served.subscriber(address).status


def test_sns_url_check_accepts_only_https_sns_hosts(make_settings):
    hooks = make_settings().hooks
    assert _sns_url_allowed("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", hooks)
    assert _sns_url_allowed("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem", hooks)
    for bad in ("http://sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
                "https://evil.example/sns.us-east-1.amazonaws.com/x.pem", "https://user@sns.us-east-1.amazonaws.com/x.pem",
                "https://sns.us-east-1.amazonaws.com:8443/x.pem", "https://s3.amazonaws.com/x.pem"):
        assert not _sns_url_allowed(bad, hooks), bad


def test_ses_through_sns_verifies_confirms_and_suppresses(serve, sns, caplog):
    cert_server, signing = sns
    served = serve(mail={"bounce_address": "bounces@bounce.blog.example.org"},
                   hooks={"ses_enabled": True, "ses_extra_cert_url_prefixes": [cert_server.url],
                          "ses_topic_arns": ["arn:aws:sns:us-east-1:123456789012:ses-feedback"]})
    add_subscribers(served.engine, ["hard@example.com", "angry@example.com", "kept@example.com"],
                    confirmed_at=START)
    cert_url = cert_server.url + "SimpleNotificationService-test.pem"
    with served.client() as client:
        confirm = sns_message(signing, cert_url, "SubscriptionConfirmation", "You have chosen to subscribe…",
                              SubscribeURL=cert_server.url + "?Action=ConfirmSubscription&Token=abc", Token="abc")
        assert client.post("/hooks/ses", content=json.dumps(confirm)).status_code == 200
        assert "/?Action=ConfirmSubscription&Token=abc" in cert_server.requests

        verp = bounce_sender(served.settings, tokens_for(served.settings), 999)  # a delivery that no longer exists
        bounce = sns_message(signing, cert_url, "Notification", ses_bounce("hard@example.com", verp), MessageId="m-1")
        answer = client.post("/hooks/ses", content=json.dumps(bounce))
        assert answer.json() == {"events": 1, "recorded": 1}
        assert client.post("/hooks/ses", content=json.dumps(bounce)).json() == {"events": 1, "recorded": 0}
        complaint = sns_message(signing, cert_url, "Notification", ses_complaint("angry@example.com"), version="1", MessageId="m-2")
        assert client.post("/hooks/ses", content=json.dumps(complaint)).json()["recorded"] == 1

        # Forgeries: a changed message, a certificate elsewhere, another topic. Each refused and logged.
        forged = sns_message(signing, cert_url, "Notification", ses_bounce("kept@example.com", ""), MessageId="m-3")
        forged["Message"] += " "  # signed, then changed
        elsewhere = sns_message(signing, "https://evil.example/cert.pem", "Notification", ses_bounce("kept@example.com", ""))
        other_topic = sns_message(signing, cert_url, "Notification", ses_bounce("kept@example.com", ""),
                                  TopicArn="arn:aws:sns:us-east-1:999999999999:other")
        for body in (forged, elsewhere, other_topic):
            assert client.post("/hooks/ses", content=json.dumps(body)).status_code == 403
        assert client.post("/hooks/ses", content=b"not json").status_code == 400
    assert [status(served, a) for a in ("hard@example.com", "angry@example.com", "kept@example.com")] == [
        "bounced", "complained", "active"]
    assert sum("hooks.ses: refused" in r.getMessage() for r in caplog.records) == 4
    with served.client() as client:
        metrics = client.get("/metrics").text
    assert 'feedsvc_subscribers{status="complained"} 1.0' in metrics
    assert 'feedsvc_mail_events_total{kind="complaint",source="ses"}' in metrics
    assert 'feedsvc_mail_events_stored{kind="hard_bounce"} 1.0' in metrics


def test_a_provider_without_its_secret_is_refused(serve):
    served = serve()
    with served.client() as client:
        for provider in ("ses", "postmark", "mailgun", "sendgrid"):
            assert client.post(f"/hooks/{provider}", content=b"{}").status_code == 404
        assert client.post("/hooks/nobody", content=b"{}").status_code == 404


def test_postmark_needs_its_basic_auth(serve):
    served = serve(hooks={"postmark_username": "pm", "postmark_password": "s3cret"})
    add_subscribers(served.engine, ["hard@example.com", "left@example.com"], confirmed_at=START)
    bounce = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1,
              "Name": "Hard bounce", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Email": "hard@example.com",
              "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
              "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
              "BouncedAt": "2026-11-02T12:00:00Z", "Inactive": True, "CanActivate": True}
    change = {"RecordType": "SubscriptionChange", "MessageID": "00000000-0000-0000-0000-000000000000",
              "ChangedAt": "2026-11-02T13:00:00Z", "Recipient": "left@example.com", "Origin": "Recipient",
              "SuppressSending": True, "SuppressionReason": "ManualSuppression", "Tag": "", "Metadata": {}}
    with served.client() as client:
        assert client.post("/hooks/postmark", json=bounce).status_code == 401
        assert client.post("/hooks/postmark", json=bounce, auth=("pm", "wrong")).status_code == 401
        assert status(served, "hard@example.com") == "active"
        assert client.post("/hooks/postmark", json=bounce, auth=("pm", "s3cret")).json() == {"events": 1, "recorded": 1}
        assert client.post("/hooks/postmark", json=change, auth=("pm", "s3cret")).json()["recorded"] == 1
    assert (status(served, "hard@example.com"), status(served, "left@example.com")) == ("bounced", "unsubscribed")
    [event] = [e for e in mail_events.recent(served.engine) if e.kind == "hard_bounce"]
    assert event.source == "postmark" and event.detail.startswith("HardBounce: The server was unable")


def mailgun_payload(key: str, event_data: dict, *, timestamp: int | None = None) -> dict:
    timestamp_text, token = str(timestamp or int(time.time())), "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    signature = hmac.new(key.encode(), (timestamp_text + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp_text, "token": token, "signature": signature}, "event-data": event_data}


def test_mailgun_needs_its_hmac_signature_and_a_fresh_timestamp(serve):
    key = "key-mailgun-test-signing"
    served = serve(hooks={"mailgun_signing_key": key})
    add_subscribers(served.engine, ["angry@example.com", "full@example.com"], confirmed_at=START)
    complained = {"event": "complained", "id": "-Agny091SquKnsrW2NEKUA", "timestamp": 1762084800.0, "recipient": "angry@example.com"}
    failed = {"event": "failed", "id": "G9Bn5sl1TC6nu79C8C0bwg", "severity": "temporary", "reason": "generic",
              "recipient": "full@example.com", "delivery-status": {"code": 452, "message": "4.2.2 The email account is over quota"}}
    with served.client() as client:
        assert client.post("/hooks/mailgun", json=mailgun_payload("wrong-key", complained)).status_code == 403
        stale = mailgun_payload(key, complained, timestamp=int(time.time()) - 3600)
        assert client.post("/hooks/mailgun", json=stale).status_code == 403
        assert status(served, "angry@example.com") == "active"
        assert client.post("/hooks/mailgun", json=mailgun_payload(key, complained)).json()["recorded"] == 1
        assert client.post("/hooks/mailgun", json=mailgun_payload(key, failed)).json()["recorded"] == 1
    assert (status(served, "angry@example.com"), status(served, "full@example.com")) == ("complained", "active")
    assert [e.kind for e in mail_events.recent(served.engine, kind="soft_bounce")] == ["soft_bounce"]


def test_sendgrid_needs_its_ecdsa_signature(serve):
    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    served = serve(hooks={"sendgrid_public_key": public})
    add_subscribers(served.engine, ["hard@example.com", "angry@example.com", "kept@example.com"], confirmed_at=START)
    events = json.dumps([
        {"email": "hard@example.com", "timestamp": 1762084800, "event": "bounce", "type": "bounce",
         "status": "5.1.1", "reason": "550 5.1.1 The email account does not exist", "sg_event_id": "ZHJvcC0xMjM0NTY3"},
        {"email": "angry@example.com", "timestamp": 1762084900, "event": "spamreport", "sg_event_id": "c3BhbXJlcG9ydC0x"},
        {"email": "kept@example.com", "timestamp": 1762084900, "event": "delivered", "sg_event_id": "ZGVsaXZlcmVkLTE"},
    ]).encode()

    def signed(body: bytes, timestamp: str) -> dict[str, str]:
        signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"x-twilio-email-event-webhook-signature": base64.b64encode(signature).decode(),
                "x-twilio-email-event-webhook-timestamp": timestamp, "content-type": "application/json"}

    now = str(int(time.time()))
    with served.client() as client:
        tampered = events.replace(b"kept@", b"kapt@")
        assert client.post("/hooks/sendgrid", content=tampered, headers=signed(events, now)).status_code == 403
        assert client.post("/hooks/sendgrid", content=events).status_code == 403
        assert client.post("/hooks/sendgrid", content=events, headers=signed(events, now)).json() == {"events": 2, "recorded": 2}
    assert [status(served, a) for a in ("hard@example.com", "angry@example.com", "kept@example.com")] == [
        "bounced", "complained", "active"]

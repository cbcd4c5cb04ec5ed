# ruff: noqa: F811  (test functions take the `serve` fixture imported from test_web)
"""A test copy of an edition from its dashboard page, through a real server to a real SMTP server (aiosmtpd)
or the Maildir outbox: marked as a test, recorded as no delivery, throttled."""

from __future__ import annotations

import re

from conftest import add_subscribers
from sqlalchemy import text
from test_admin import NOW, seed_edition, signed_in
from test_web import serve, wait_for_mail  # noqa: F401  (the real-server fixture)

from feedsvc.web.admin.editions import TEST_COPIES_PER_HOUR


def deliveries(served) -> list[tuple[str, str]]:
    with served.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(
            "SELECT s.email, d.state FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id ORDER BY d.id"))]


def send_test(client, edition_id: int, address: str):
    page = client.get(f"/admin/editions/{edition_id}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post(f"/admin/editions/{edition_id}",
                       data={"csrf_token": token, "action": "send_test", "address": address})


def test_a_test_copy_reaches_a_real_smtp_server_marked_and_recorded_as_no_delivery(serve, store_url, smtp_server):
    served = serve(store={"url": store_url}, mail={"smtp_url": smtp_server.url})
    ids = add_subscribers(served.engine, ["ani@example.org", "budi@example.org"], confirmed_at=NOW)
    edition_id = seed_edition(served, ids, ["sent", "queued"])
    before = deliveries(served)
    with signed_in(served) as client:
        page = client.get(f"/admin/editions/{edition_id}").text
        assert "Send a test copy" in page
        sent = send_test(client, edition_id, "Editor@Example.org")
        assert sent.status_code == 303 and "Test%20copy%20sent%20to%20Editor%40example.org" in sent.headers["location"]
        [mail] = smtp_server.messages_to("Editor@example.org")
        message = mail.message
        assert message["Subject"] == "[Test] Daily digest, 5 Dec"
        assert "Hello" in message.get_body(preferencelist=("plain",)).get_content()
        assert "<p>Hello</p>" in message.get_body(preferencelist=("html",)).get_content()
        assert message["List-Unsubscribe"].startswith(f"<{served.url}/>")  # no subscriber's link in it
        assert "Feedback-ID" not in message
        assert mail.sender == served.settings.mail.from_address
        # Not a delivery, not a subscriber, not in the edition's counts.
        assert deliveries(served) == before and served.subscriber("editor@example.org") is None
        assert "<td>send_test</td>" in client.get("/admin/audit").text

        bad = send_test(client, edition_id, "not an address")
        assert bad.status_code == 400 and "is not a valid address" in bad.text
        assert client.post(f"/admin/editions/{edition_id + 99}", data={
            "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', page).group(1), "action": "send_test",
            "address": "editor@example.org"}).status_code == 404

        for _ in range(TEST_COPIES_PER_HOUR - 1):
            assert send_test(client, edition_id, "editor@example.org").status_code == 303
        refused = send_test(client, edition_id, "editor@example.org")
        assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 3600
        assert "too many test copies" in refused.text
    assert len(smtp_server.received) == TEST_COPIES_PER_HOUR  # the first one to Editor@, then nine to editor@
    assert deliveries(served) == before


def test_a_refused_test_copy_says_what_the_server_answered(serve, smtp_server):
    smtp_server.fault = lambda stage, _: "550 5.1.1 no such mailbox" if stage == "rcpt" else None
    served = serve(mail={"smtp_url": smtp_server.url})
    edition_id = seed_edition(served, [], [])
    with signed_in(served) as client:
        answer = send_test(client, edition_id, "nobody@example.org")
    assert answer.status_code == 502 and "550 5.1.1 no such mailbox" in answer.text


def test_a_test_copy_into_the_maildir_in_the_sites_language(serve):
    served = serve(site={"language": "id"})
    edition_id = seed_edition(served, [], [])
    with signed_in(served) as client:
        assert send_test(client, edition_id, "editor@example.org").status_code == 303
    [message] = wait_for_mail(served.outbox)
    assert message["Subject"] == "[Uji coba] Daily digest, 5 Dec"
    assert message["To"].addresses[0].addr_spec == "editor@example.org"

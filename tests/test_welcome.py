"""The mails subscribers expect: a welcome after confirming (when on), the postal address in every mail."""

from __future__ import annotations

import time

import test_web

serve = test_web.serve  # the real-uvicorn fixture of the web tests
POSTAL = "Catatan Backend, Jl. Merdeka 1, Jakarta 10110"


def wait_for_count(smtp_server, address: str, count: int, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while len(smtp_server.messages_to(address)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return smtp_server.messages_to(address)


def parts(message) -> tuple[str, str]:
    return (message.get_body(preferencelist=("plain",)).get_content(),
            message.get_body(preferencelist=("html",)).get_content())


def test_welcome_after_confirming_once_and_the_postal_address_everywhere(serve, smtp_server):
    served = serve(mail={"smtp_url": smtp_server.url, "welcome": True, "postal_address": POSTAL})
    with served.client() as client:
        assert client.post("/subscribe", json={"email": "budi@example.org", "name": "Budi"}).status_code == 202
        [confirmation] = wait_for_count(smtp_server, "budi@example.org", 1)
        assert all(POSTAL in part for part in parts(confirmation.message))
        link = test_web.confirm_link(confirmation.message)
        assert client.get(link).status_code == 200  # the page with the button confirms nothing yet
        assert client.post(link).status_code == 200
        [_, welcome] = wait_for_count(smtp_server, "budi@example.org", 2)
        # A second click on the button confirms nothing new, and sends no second welcome.
        assert client.post(link).status_code == 200
        time.sleep(0.5)
    assert len(smtp_server.messages_to("budi@example.org")) == 2
    message = welcome.message
    assert message["Subject"] == "Welcome to Test Blog"
    assert message["List-Unsubscribe"].startswith("<http") and message["Precedence"] == "bulk"
    text, html = parts(message)
    assert "Hi Budi," in text and POSTAL in text and POSTAL in html
    subscriber = served.subscriber("budi@example.org")
    assert "/unsubscribe/" in text and subscriber.status == "active"


def test_no_welcome_unless_asked(serve, smtp_server):
    served = serve(mail={"smtp_url": smtp_server.url})
    with served.client() as client:
        client.post("/subscribe", json={"email": "ani@example.org"})
        [confirmation] = wait_for_count(smtp_server, "ani@example.org", 1)
        assert client.post(test_web.confirm_link(confirmation.message)).status_code == 200
        time.sleep(0.5)
    assert len(smtp_server.messages_to("ani@example.org")) == 1
    assert "Jl. " not in parts(confirmation.message)[0]

"""The SMTP pool against a real aiosmtpd server: connection reuse, caps, rate limit, error mapping, timeouts."""

from __future__ import annotations

import asyncio
import mailbox
import ssl
import subprocess
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import DROP, SmtpSink, free_port

from feedsvc.config import Settings
from feedsvc.mail.smtp import SmtpEndpoint, SmtpTransport
from feedsvc.mail.transport import MaildirTransport, Outgoing, SendError, transport_from_settings


def outgoing(recipient: str, subject: str = "hello") -> Outgoing:
    body = f"From: news@blog.example.org\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    return Outgoing(sender="news@blog.example.org", recipient=recipient, message=body)


async def send_all(transport, items: list[Outgoing]) -> list[BaseException | None]:
    async def one(item: Outgoing) -> BaseException | None:
        try:
            await transport.send(item)
        except SendError as exc:
            return exc
        return None

    try:
        return await asyncio.gather(*(one(item) for item in items))
    finally:
        await transport.aclose()


def test_many_messages_share_the_pooled_connections(make_settings, smtp_server):
    settings = make_settings(mail={"smtp_url": smtp_server.url, "connections": 3})
    items = [outgoing(f"reader{i}@example.com") for i in range(60)]
    results = asyncio.run(send_all(SmtpTransport(settings), items))
    assert results == [None] * 60
    assert sorted(m.recipients[0] for m in smtp_server.received) == sorted(i.recipient for i in items)
    assert 1 <= smtp_server.sessions <= 3


def test_a_connection_is_renewed_after_its_message_cap(make_settings, smtp_server):
    settings = make_settings(mail={"smtp_url": smtp_server.url, "connections": 2, "messages_per_connection": 5})
    results = asyncio.run(send_all(SmtpTransport(settings), [outgoing(f"r{i}@example.com") for i in range(30)]))
    assert results == [None] * 30
    # 30 messages at most 5 per connection: at least 6 connections, and not one per message.
    assert 6 <= smtp_server.sessions <= 8


def test_replies_map_to_permanent_and_transient_errors(make_settings, smtp_server):
    def fault(stage, arg):
        if stage == "rcpt" and arg.startswith("gone"):
            return "550 5.1.1 no such user"
        if stage == "rcpt" and arg.startswith("full"):
            return "452 4.2.2 mailbox full"
        if stage == "data" and any(r.startswith("later") for r in arg.rcpt_tos):
            return "451 4.3.0 try again later"
        if stage == "data" and any(r.startswith("spam") for r in arg.rcpt_tos):
            return "554 5.7.1 rejected as spam"
        if stage == "data" and any(r.startswith("drop") for r in arg.rcpt_tos):
            return DROP
        return None

    smtp_server.fault = fault
    settings = make_settings(mail={"smtp_url": smtp_server.url, "connections": 1})
    names = ["gone", "ok1", "full", "ok2", "later", "ok3", "spam", "ok4", "drop", "ok5"]
    results = asyncio.run(send_all(SmtpTransport(settings), [outgoing(f"{n}@example.com") for n in names]))
    outcome = dict(zip(names, results, strict=True))
    assert outcome["gone"].permanent and outcome["gone"].code == 550 and "no such user" in outcome["gone"].reason
    assert outcome["spam"].permanent and outcome["spam"].code == 554
    assert not outcome["full"].permanent and outcome["full"].code == 452
    assert not outcome["later"].permanent and outcome["later"].code == 451
    assert not outcome["drop"].permanent and outcome["drop"].code is None
    # Each error left the single connection usable or replaced: every good message after it went through.
    assert sorted(m.recipients[0] for m in smtp_server.received) == [f"ok{i}@example.com" for i in range(1, 6)]


def test_rate_limit_spreads_messages_over_time(make_settings, smtp_server):
    settings = make_settings(mail={"smtp_url": smtp_server.url, "connections": 4, "rate_limit": 40})
    started = time.monotonic()
    results = asyncio.run(send_all(SmtpTransport(settings), [outgoing(f"r{i}@example.com") for i in range(41)]))
    elapsed = time.monotonic() - started
    assert results == [None] * 41
    # 41 messages at 40/s: the first goes at once, the last one second later.
    assert elapsed >= 0.95
    assert elapsed < 5


def test_a_server_that_never_answers_times_out():
    async def scenario() -> tuple[SendError, float]:
        async def silent(reader, writer):
            await asyncio.sleep(30)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = SmtpTransport(_settings_for(f"smtp://127.0.0.1:{port}", timeout=0.5))
        started = time.monotonic()
        with pytest.raises(SendError) as caught:
            await transport.send(outgoing("reader@example.com"))
        elapsed = time.monotonic() - started
        await transport.aclose()
        server.close()
        return caught.value, elapsed

    error, elapsed = asyncio.run(scenario())
    assert not error.permanent
    assert "timed out" in error.reason.lower() or "timeout" in error.reason.lower()
    assert elapsed < 3


def test_a_refused_connection_is_transient():
    transport = SmtpTransport(_settings_for(f"smtp://127.0.0.1:{free_port()}", timeout=2))
    results = asyncio.run(send_all(transport, [outgoing("reader@example.com")]))
    assert isinstance(results[0], SendError) and not results[0].permanent
    assert "127.0.0.1" in results[0].reason


def test_smtp_url_parsing():
    plain = SmtpEndpoint.parse("smtp://user%40corp:p%3Ass@mail.example.org")
    assert (plain.host, plain.port, plain.implicit_tls, plain.username, plain.password) == (
        "mail.example.org", 587, False, "user@corp", "p:ss",
    )
    tls = SmtpEndpoint.parse("smtps://mail.example.org")
    assert (tls.port, tls.implicit_tls, tls.username) == (465, True, None)
    assert SmtpEndpoint.parse("smtp://localhost:2525").port == 2525
    with pytest.raises(ValueError, match="smtp_url"):
        SmtpEndpoint.parse("http://mail.example.org")


def test_transport_from_settings_picks_maildir_or_smtp(make_settings, smtp_server):
    settings = make_settings()
    transport = transport_from_settings(settings)
    assert isinstance(transport, MaildirTransport)
    asyncio.run(transport.send(outgoing("reader@example.com")))
    stored = list(mailbox.Maildir(settings.store.outbox_dir))
    assert [m["To"] for m in stored] == ["reader@example.com"]

    smtp = transport_from_settings(make_settings(mail={"smtp_url": smtp_server.url}))
    assert isinstance(smtp, SmtpTransport)
    assert asyncio.run(send_all(smtp, [outgoing("reader@example.com")])) == [None]
    assert smtp_server.messages_to("reader@example.com")


def _settings_for(smtp_url: str, **mail) -> Settings:
    return Settings(site={"url": "https://blog.example.org"}, mail={"smtp_url": smtp_url, **mail})


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_credentials_in_the_url_authenticate():
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            logins.append((auth_data.login, auth_data.password))
            return AuthResult(success=auth_data.password == b"s3cr:t")
        return AuthResult(success=False)

    sink = SmtpSink()
    sink.port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, authenticator=authenticator,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    try:
        good = SmtpTransport(_settings_for(f"smtp://news%40blog:s3cr%3At@127.0.0.1:{sink.port}"))
        assert asyncio.run(send_all(good, [outgoing("reader@example.com")])) == [None]
        bad = SmtpTransport(_settings_for(f"smtp://news%40blog:wrong@127.0.0.1:{sink.port}", timeout=1))
        [error] = asyncio.run(send_all(bad, [outgoing("other@example.com")]))
    finally:
        controller.stop()
    assert logins[0] == (b"news@blog", b"s3cr:t")
    assert [m.recipients for m in sink.received] == [["reader@example.com"]]
    # A relay refusing our credentials is the operator's problem, never the recipient's: not a bounce.
    assert isinstance(error, SendError) and not error.permanent
    assert f"cannot connect to SMTP server 127.0.0.1:{sink.port}" in error.reason


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate (made by the openssl command)."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_tls_is_used_and_certificates_are_checked(scheme, self_signed):
    # smtp:// upgrades with STARTTLS when the server offers it; smtps:// speaks TLS from the first byte.
    # Either way an untrusted certificate stops the send (transient: the relay needs fixing, not the reader).
    sink = SmtpSink()
    sink.port = free_port()
    tls = {"tls_context": self_signed} if scheme == "smtp" else {"ssl_context": self_signed}
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, **tls)
    controller.start()
    try:
        transport = SmtpTransport(_settings_for(f"{scheme}://127.0.0.1:{sink.port}", timeout=5))
        [error] = asyncio.run(send_all(transport, [outgoing("reader@example.com")]))
    finally:
        controller.stop()
    assert isinstance(error, SendError) and not error.permanent
    assert "CERTIFICATE_VERIFY_FAILED" in error.reason
    assert sink.received == []

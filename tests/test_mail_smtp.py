"""The SMTP pool against a real aiosmtpd server: connection reuse, caps, rate limit, error mapping, timeouts."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import mailbox
import quopri
import random
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import uvloop
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


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def any_server(request, smtp_server) -> SmtpSink:
    """The aiosmtpd server, once as it is and once advertising PIPELINING (the session's fast path)."""
    smtp_server.pipelining = request.param
    return smtp_server


def test_many_messages_share_the_pooled_connections(make_settings, any_server):
    smtp_server = any_server
    settings = make_settings(mail={"smtp_url": smtp_server.url, "connections": 3})
    items = [outgoing(f"reader{i}@example.com") for i in range(60)]
    results = asyncio.run(send_all(SmtpTransport(settings), items))
    assert results == [None] * 60
    assert sorted(m.recipients[0] for m in smtp_server.received) == sorted(i.recipient for i in items)
    assert 1 <= smtp_server.sessions <= 3


def test_a_connection_is_renewed_after_its_message_cap(make_settings, any_server):
    smtp_server = any_server
    settings = make_settings(mail={"smtp_url": smtp_server.url, "connections": 2, "messages_per_connection": 5})
    results = asyncio.run(send_all(SmtpTransport(settings), [outgoing(f"r{i}@example.com") for i in range(30)]))
    assert results == [None] * 30
    # 30 messages at most 5 per connection: at least 6 connections, and not one per message.
    assert 6 <= smtp_server.sessions <= 8


def test_replies_map_to_permanent_and_transient_errors(make_settings, any_server):
    smtp_server = any_server

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
def self_signed_cert(tmp_path_factory) -> Path:
    """A fresh self-signed certificate for 127.0.0.1 (made by the openssl command); its key lies beside it."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )
    return folder / "cert.pem"


@pytest.fixture(scope="module")
def self_signed(self_signed_cert) -> ssl.SSLContext:
    """A server TLS context with that certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(self_signed_cert, self_signed_cert.parent / "key.pem")
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


# --- pipelining and the DATA block on the wire -------------------------------------------------------------


class ScriptedServer:
    """A raw SMTP server on asyncio streams that records how commands arrive: each group is the commands read
    before the server answered (one group of three when the client pipelines). `rcpt_reply`/`data_reply`
    script the answers; the DATA block is kept exactly as it came over the wire (still dot-stuffed). With
    `reply_delay`, each message is answered that long after it came, and `before_reply` records the command the
    client sent meanwhile, if any ("" if none): what it pipelined behind the message."""

    def __init__(
        self,
        *,
        pipelining: bool,
        rcpt_reply: bytes = b"250 OK",
        data_reply: bytes = b"354 go ahead",
        after_message: bytes = b"",
        reply_delay: float = 0.0,
    ) -> None:
        self.pipelining = pipelining
        self.reply_delay = reply_delay
        self.before_reply: list[str] = []
        self.got_message = asyncio.Event()  # set at the first message's end
        self.after_message = after_message  # said unasked after each accepted message
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.groups: list[list[str]] = []
        self.blocks: list[bytes] = []
        self.sessions = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        writer.write(b"220 scripted ready\r\n")
        early = b""  # a command that came before the reply to the message it followed
        while line := early or await reader.readline():
            early = b""
            group = [line]
            # Whatever the client sent without waiting for an answer belongs to the same group.
            while not group[-1].upper().startswith(b"DATA"):
                try:
                    group.append(await asyncio.wait_for(reader.readline(), 0.2))
                except TimeoutError:
                    break
                if not group[-1]:  # the client closed the connection
                    break
            self.groups.append([command.split()[0].decode().upper() for command in group if command.strip()])
            for command in group:
                verb = command.split()[0].upper() if command.strip() else b""
                if verb == b"EHLO":
                    extensions = [b"250-scripted", b"250-SIZE 10000000"] + ([b"250-PIPELINING"] if self.pipelining else [])
                    writer.write(b"\r\n".join(extensions) + b"\r\n250 HELP\r\n")
                elif verb == b"RCPT":
                    writer.write(self.rcpt_reply + b"\r\n")
                elif verb == b"DATA":
                    writer.write(self.data_reply + b"\r\n")
                    if self.data_reply.startswith(b"354"):
                        block = await reader.readuntil(b"\r\n.\r\n")
                        self.blocks.append(block)
                        self.got_message.set()
                        if self.reply_delay:
                            await writer.drain()
                            with contextlib.suppress(TimeoutError):
                                early = await asyncio.wait_for(reader.readline(), self.reply_delay)
                            self.before_reply.append(early.split()[0].decode().upper() if early.strip() else "")
                        writer.write(b"250 queued\r\n" + self.after_message)
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    writer.close()
                    return
                else:  # MAIL, RSET
                    writer.write(b"250 OK\r\n")
            await writer.drain()
        writer.close()


def scripted_send(server: ScriptedServer, items: list[Outgoing], **mail) -> list[BaseException | None]:
    async def scenario() -> list[BaseException | None]:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        try:
            transport = SmtpTransport(_settings_for(f"smtp://127.0.0.1:{port}", connections=1, timeout=5, **mail))
            return await send_all(transport, items)
        finally:
            listener.close()

    return asyncio.run(scenario())


DOTTED = b"Subject: dots\r\n\r\n.hidden line\r\n..two dots\r\n.\r\nend\r\n"


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
def test_envelope_commands_are_pipelined_only_when_offered_and_lines_with_dots_are_stuffed(pipelining):
    server = ScriptedServer(pipelining=pipelining)
    message = Outgoing("news@blog.example.org", "reader@example.com", DOTTED)
    assert scripted_send(server, [message, message]) == [None, None]
    transactions = [group for group in server.groups if group[0] in ("MAIL", "RCPT", "DATA")]
    if pipelining:
        assert transactions == [["MAIL", "RCPT", "DATA"]] * 2  # one round trip for the envelope
    else:
        assert transactions == [["MAIL"], ["RCPT"], ["DATA"]] * 2
    assert server.sessions == 1
    # Every line starting with '.' gets one more on the wire; the lone '.' line must not end the message.
    assert server.blocks == [b"Subject: dots\r\n\r\n..hidden line\r\n...two dots\r\n..\r\nend\r\n.\r\n"] * 2


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
def test_the_next_envelope_or_quit_follows_a_message_before_its_reply_only_with_pipelining(pipelining):
    # A relay taking 0.3 s to answer each message. With PIPELINING the next mail's envelope (or the QUIT ending
    # a connection at its cap) goes right behind the message (RFC 2920 3.1: the content may begin a group), so a
    # message costs one round trip; without it every command waits for the reply before it (RFC 5321).
    server = ScriptedServer(pipelining=pipelining, reply_delay=0.3)
    items = [outgoing(f"reader{n}@example.com") for n in range(3)]
    assert scripted_send(server, items, messages_per_connection=2) == [None] * 3
    assert server.before_reply == (["MAIL", "QUIT", ""] if pipelining else ["", "", ""])
    assert server.sessions == 2
    assert len(server.blocks) == 3


def test_a_mail_that_comes_after_the_last_message_went_out_alone_waits_for_its_reply():
    # The end of a message went out with nothing behind it; the next mail comes before the relay's reply. Its envelope waits for that reply (and carries its acknowledgement) instead of following at once: it
    # could otherwise reach the relay after the reply, and Nagle's algorithm would hold the relay's answers to it.
    server = ScriptedServer(pipelining=True, reply_delay=0.3)

    async def scenario() -> None:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        transport = SmtpTransport(_settings_for(f"smtp://127.0.0.1:{port}", connections=1, timeout=5))
        try:
            first = asyncio.create_task(transport.send(outgoing("first@example.com")))
            await server.got_message.wait()  # the first message is on the wire, its reply 0.3 s away
            await asyncio.sleep(0.05)
            await transport.send(outgoing("second@example.com"))
            await first
        finally:
            await transport.aclose()
            listener.close()

    asyncio.run(scenario())
    assert server.before_reply == ["", ""]
    assert len(server.blocks) == 2 and server.sessions == 1


def test_a_mail_given_up_between_its_envelope_and_its_text_takes_its_connection_with_it():
    # The drain's check just before a message's text (renewing its claims) fails after the relay said 354: whatever
    # came next on that connection would be taken as the text of that mail, so the connection is dropped and the
    # next mail goes out whole on a fresh one.
    server = ScriptedServer(pipelining=True)

    async def store_down() -> None:
        raise RuntimeError("the store is down")

    async def scenario() -> None:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        transport = SmtpTransport(_settings_for(f"smtp://127.0.0.1:{port}", connections=1, timeout=2))
        try:
            with pytest.raises(RuntimeError, match="store is down"):
                await transport.start(outgoing("first@example.com"), store_down)
            await transport.send(outgoing("second@example.com"))
        finally:
            await transport.aclose()
            listener.close()

    asyncio.run(scenario())
    assert server.sessions == 2
    assert len(server.blocks) == 1 and b"To: second@example.com" in server.blocks[0]
    assert b"MAIL FROM" not in server.blocks[0]


def test_a_refused_message_leaves_the_session_to_the_next_one_and_a_421_behind_it_is_survived():
    # 554 to the first message's text ends that transaction only (no RSET): the next mail goes out on the same
    # connection. Then the relay answers the second message and says 421 before closing: the third mail, whose
    # envelope already followed, is sent again on a fresh connection instead of failing.
    replies = iter([b"554 5.7.1 rejected as spam\r\n", b"250 queued\r\n421 4.3.2 shutting down\r\n"])

    class Relay(ScriptedServer):
        async def handle(self, reader, writer):
            self.sessions += 1
            writer.write(b"220 scripted ready\r\n")
            while line := await reader.readline():
                verb = line.split()[0].upper()
                self.groups.append([verb.decode()])
                if verb == b"EHLO":
                    writer.write(b"250-scripted\r\n250 PIPELINING\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    self.blocks.append(await reader.readuntil(b"\r\n.\r\n"))
                    reply = next(replies, b"250 queued\r\n")
                    writer.write(reply)
                    if b"421" in reply:
                        await writer.drain()
                        break
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 OK\r\n")
                await writer.drain()
            writer.close()

    server = Relay(pipelining=True)
    errors = scripted_send(server, [outgoing(f"reader{n}@example.com") for n in range(3)])
    assert isinstance(errors[0], SendError) and errors[0].permanent and errors[0].code == 554
    assert errors[1:] == [None, None]
    assert ["RSET"] not in server.groups
    assert server.sessions == 2 and len(server.blocks) == 3


def test_bare_line_endings_are_sent_as_crlf():
    server = ScriptedServer(pipelining=True)
    message = Outgoing("news@blog.example.org", "reader@example.com", b"Subject: unix\n\n.line one\nline two\rlast")
    assert scripted_send(server, [message]) == [None]
    assert server.blocks == [b"Subject: unix\r\n\r\n..line one\r\nline two\r\nlast\r\n.\r\n"]


def test_a_pipelined_refusal_is_mapped_to_its_command_and_the_session_reset():
    # 550 to RCPT; the pipelined DATA then fails too (503), which must not hide the recipient's refusal.
    server = ScriptedServer(pipelining=True, rcpt_reply=b"550 5.1.1 no such user", data_reply=b"503 5.5.1 no recipients")
    [error] = scripted_send(server, [outgoing("gone@example.com")])
    assert isinstance(error, SendError) and error.permanent and error.code == 550
    assert error.reason == "recipient refused: 550 5.1.1 no such user"
    assert ["RSET"] in server.groups and server.sessions == 1  # the session was kept, its transaction ended


def test_data_accepted_after_a_refused_recipient_is_a_bounce_and_abandons_the_connection():
    # A broken server takes the pipelined DATA although it refused the only recipient. The 550 is a bounce (issue 9:
    # it used to be retried as temporary and end `failed`, never suppressing the address); whatever we sent next
    # would become message text, so the connection is dropped and the next mail goes out on a fresh one.
    server = ScriptedServer(pipelining=True, rcpt_reply=b"550 5.1.1 no such user")
    errors = scripted_send(server, [outgoing("gone@example.com"), outgoing("next@example.com")])
    assert isinstance(errors[0], SendError) and errors[0].permanent and errors[0].code == 550
    assert errors[0].reason == "recipient refused: 550 5.1.1 no such user"
    assert server.sessions == 2
    assert ["RSET"] not in server.groups  # nothing more was said on the abandoned session


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "plain"])
def test_a_reply_nobody_asked_for_retires_the_connection_instead_of_answering_the_next_mail(pipelining):
    # A relay announcing its shutdown (421) between two mails: that reply must not fail the next mail, whose
    # MAIL may already have gone out behind the first message and been answered by it; the next mail goes out
    # on a fresh connection.
    server = ScriptedServer(pipelining=pipelining, after_message=b"421 4.4.2 closing idle connection\r\n")
    assert scripted_send(server, [outgoing("a@example.com"), outgoing("b@example.com")]) == [None, None]
    assert server.sessions == 2


def test_a_mail_whose_text_starts_lines_with_dots_arrives_intact(make_settings, any_server):
    from feedsvc.mail.message import MessageSkeleton, WireMessage

    settings = make_settings(mail={"smtp_url": any_server.url})
    plain = MessageSkeleton(settings, subject="Halo", html_body="<p>halo</p>", text_body="halo\n")
    dotted = MessageSkeleton(settings, subject="Titik", html_body="<p>x</p>", text_body="first\n.second\n..third\n.\n")
    items = []
    for n, skeleton in enumerate((plain, dotted)):
        message = skeleton.build(to_email=f"r{n}@example.com", to_name="R", message_id=f"<m{n}@example.org>")
        items.append(Outgoing(skeleton.envelope_sender, f"r{n}@example.com", message))
    # Bytes from elsewhere, with dotted lines and bare line endings, are normalised and stuffed on the way.
    raw = b"Subject: raw\r\n\r\nfirst\n.second\r..third\r\n.\r\n"
    items.append(Outgoing("news@example.org", "r2@example.com", raw))
    # A skeleton writes a line-leading dot as =2E, so its mails are fit for DATA as they are, dotted or not.
    assert [isinstance(item.message, WireMessage) for item in items] == [True, True, False]
    assert asyncio.run(send_all(SmtpTransport(settings), items)) == [None, None, None]
    for n, item in enumerate(items[:2]):
        [mail] = any_server.messages_to(f"r{n}@example.com")
        assert mail.data.replace(b"\r\n", b"\n") == item.message.replace(b"\r\n", b"\n")
    [mail] = any_server.messages_to("r1@example.com")
    assert mail.message.get_body(("plain",)).get_content().replace("\r\n", "\n") == "first\n.second\n..third\n.\n"
    [mail] = any_server.messages_to("r2@example.com")
    assert mail.data.replace(b"\r\n", b"\n") == b"Subject: raw\n\nfirst\n.second\n..third\n.\n"


def test_quoted_printable_lines_never_start_with_a_dot_and_decode_back():
    from feedsvc.mail.message import _qp

    rng = random.Random(13)
    pieces = ["a", ".", " ", "é", "=", "\n", "x" * 7, ".x", "🚀", "\t"]
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 400)))
        encoded = _qp(text)
        lines = encoded.split(b"\r\n")
        assert not any(line.startswith(b".") for line in lines), encoded
        longest_plain = max(len(line) for line in binascii.b2a_qp(text.encode(), istext=True).split(b"\n"))
        assert max(len(line) for line in lines) <= max(76, longest_plain), encoded  # no longer than the encoder's own
        assert quopri.decodestring(encoded.replace(b"\r\n", b"\n")).decode() == text


def test_an_address_that_would_break_the_command_line_is_refused_before_sending(make_settings, smtp_server):
    settings = make_settings(mail={"smtp_url": smtp_server.url})
    bad = Outgoing("news@blog.example.org", "reader@example.com>\r\nRCPT TO:<victim@example.com", b"Subject: x\r\n\r\nx\r\n")
    [error] = asyncio.run(send_all(SmtpTransport(settings), [bad]))
    assert isinstance(error, SendError) and error.permanent and "recipient" in error.reason
    assert smtp_server.received == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_pipelined_sessions_run_over_tls_and_auth_once_the_certificate_is_trusted(
    scheme, loop, self_signed, self_signed_cert, monkeypatch
):
    # The session takes over the connection aiosmtplib secured and logged in: the transactions must go
    # through that same TLS layer (STARTTLS upgraded or TLS from the start), on asyncio's own loop and on
    # uvloop's (what uvicorn runs the web app on), whose transports are other classes.
    monkeypatch.setenv("SSL_CERT_FILE", str(self_signed_cert))  # the client trusts our test CA, as with a real one
    logins: list[bytes] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append(auth_data.login)
        return AuthResult(success=auth_data.password == b"pw")

    sink = SmtpSink(pipelining=True)
    sink.port = free_port()
    if scheme == "smtp":
        tls = {"tls_context": self_signed, "require_starttls": True}  # and AUTH only once TLS is up
    else:
        tls = {"ssl_context": self_signed, "auth_require_tls": False}  # aiosmtpd cannot tell it is under TLS
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, authenticator=authenticator,
                            auth_required=True, **tls)
    controller.start()
    try:
        transport = SmtpTransport(_settings_for(f"{scheme}://news:pw@127.0.0.1:{sink.port}", timeout=5, connections=2))
        items = [Outgoing("news@blog.example.org", f"r{n}@example.com", DOTTED) for n in range(6)]
        with asyncio.Runner(loop_factory=uvloop.new_event_loop if loop == "uvloop" else None) as runner:
            assert runner.run(send_all(transport, items)) == [None] * 6
    finally:
        controller.stop()
    assert sorted(m.recipients[0] for m in sink.received) == [f"r{n}@example.com" for n in range(6)]
    assert all(m.data == DOTTED for m in sink.received)
    assert 1 <= len(logins) <= 2 and set(logins) == {b"news"}

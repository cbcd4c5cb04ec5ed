"""Bounces, complaints and mailto unsubscribes: parsing real-format reports, the Maildir and the SMTP receiver,
the suppression policy, and the whole loop from sending an edition to the next one skipping the suppressed."""

from __future__ import annotations

import asyncio
import smtplib
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import inbound_samples as samples
import pytest
from conftest import add_subscribers, free_port, write_post
from sqlalchemy import func, select

from feedsvc import mail_events, subscriptions
from feedsvc.digests import run_due
from feedsvc.inbound import handle
from feedsvc.inbound.maildir import Source as MaildirSource
from feedsvc.inbound.parse import read_message
from feedsvc.inbound.smtp_receiver import Source as SmtpReceiver
from feedsvc.mail.queue import drain
from feedsvc.mail.smtp import SmtpTransport
from feedsvc.mail_events import Kind, Outcome, Report
from feedsvc.posts import Collection
from feedsvc.store.engine import open_engine
from feedsvc.store.schema import deliveries
from feedsvc.store.schema import mail_events as mail_events_table
from feedsvc.tokens import Purpose, bounce_sender, read_tagged_address, tokens_for, unsubscribe_mailto

START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
BOUNCES = "bounces@bounce.blog.example.org"


@pytest.fixture
def loop_site(make_settings, store_url, tmp_path):
    """Settings with a bounce address, a Maildir for inbound mail, and an engine on the parametrized store."""
    engines = []

    def make(**sections):
        mail = {"bounce_address": BOUNCES} | sections.pop("mail", {})
        inbound = {"maildir": str(tmp_path / "bounces-maildir"), "soft_bounce_limit": 3} | sections.pop("inbound", {})
        settings = make_settings(store={"url": store_url}, mail=mail, inbound=inbound, **sections)
        engine = open_engine(store_url)
        engines.append(engine)
        return settings, engine

    yield make
    for engine in engines:
        engine.dispose()


def status_of(engine, subscriber_id: int) -> str:
    return subscriptions.get(engine, subscriber_id).status


def deliver_to_maildir(maildir: Path, raw: bytes, name: str) -> None:
    """As an MTA delivers: written whole into tmp/, then renamed into new/."""
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    (maildir / "tmp" / name).write_bytes(raw)
    (maildir / "tmp" / name).rename(maildir / "new" / name)


# --- reading reports -----------------------------------------------------------------------------------------


@pytest.fixture
def reader(make_settings):
    settings = make_settings(mail={"bounce_address": BOUNCES})
    tokens = tokens_for(settings)
    verp = bounce_sender(settings, tokens, 41)
    mailto = unsubscribe_mailto(settings, tokens, 7)
    return settings, tokens, verp, mailto


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        (samples.postfix_dsn, Kind.HARD_BOUNCE),
        (samples.gmail_dsn, Kind.HARD_BOUNCE),
        (samples.exim_bounce, Kind.HARD_BOUNCE),
        (samples.outlook_mailbox_full, Kind.SOFT_BOUNCE),
        (lambda verp, rcpt: samples.exim_delay_dsn(verp, rcpt, "2"), Kind.SOFT_BOUNCE),
    ],
)
def test_bounces_of_every_format_name_their_delivery(reader, sample, kind):
    settings, tokens, verp, _ = reader
    assert verp.startswith("bounces+") and verp.endswith("@bounce.blog.example.org")
    reading = read_message(settings, tokens, sample(verp, "gone@example.com"), "maildir")
    assert [(r.kind, r.delivery_id, r.address) for r in reading.reports] == [(kind, 41, None)]


def test_signed_addresses_come_back_in_any_case(reader):
    """A mail system may change the case of a local part on the way back; the signature must survive it."""
    settings, tokens, verp, mailto = reader
    local, _, domain = verp.partition("@")
    assert local == local.lower()  # as mailed: lowercase base32, short enough for a local part (64 octets)
    assert len(local) <= 64 and len(mailto.partition("@")[0]) <= 64
    for spelled in (verp.upper(), local.upper() + "@" + domain, local[:10] + local[10:].upper() + "@" + domain):
        reading = read_message(settings, tokens, samples.postfix_dsn(spelled, "gone@example.com"), "maildir")
        assert [(r.kind, r.delivery_id) for r in reading.reports] == [(Kind.HARD_BOUNCE, 41)]
    [report] = read_message(settings, tokens, samples.mailto_unsubscribe(mailto.upper(), "x@gmail.com"), "smtp").reports
    assert (report.kind, report.subscriber_id) == (Kind.UNSUBSCRIBE, 7)


def test_addresses_signed_before_tags_were_case_proof_are_still_read(reader):
    """Mails already out carry a base64 link token in their envelope sender and mailto; their bounces and
    unsubscribes still count."""
    settings, tokens, _, _ = reader
    legacy_verp = f"bounces+{tokens.make(Purpose.BOUNCE, 41, None)}@bounce.blog.example.org"
    reading = read_message(settings, tokens, samples.gmail_dsn(legacy_verp, "gone@example.com"), "imap")
    assert [(r.kind, r.delivery_id) for r in reading.reports] == [(Kind.HARD_BOUNCE, 41)]
    legacy_mailto = f"unsubscribe+{tokens.make(Purpose.MAILTO_UNSUBSCRIBE, 7, None)}@bounce.blog.example.org"
    [report] = read_message(settings, tokens, samples.mailto_unsubscribe(legacy_mailto, "x@gmail.com"), "smtp").reports
    assert (report.kind, report.subscriber_id) == (Kind.UNSUBSCRIBE, 7)
    # A tag says its own purpose, whatever address it is put in: a mailto tag is never a delivery's bounce.
    as_bounce = f"bounces+{tokens.address_tag(Purpose.MAILTO_UNSUBSCRIBE, 41)}@bounce.blog.example.org"
    assert read_tagged_address(tokens, as_bounce) == (Purpose.MAILTO_UNSUBSCRIBE, 41)
    assert read_tagged_address(tokens, as_bounce.replace("+", "+x")) is None


def test_dsn_detail_keeps_status_and_diagnostic(reader):
    settings, tokens, verp, _ = reader
    [report] = read_message(settings, tokens, samples.gmail_dsn(verp, "gone@example.com"), "imap").reports
    assert report.detail.startswith("5.1.1 smtp; 550-5.1.1 The email account that you tried to reach does not exist.")


def test_complaints_name_the_mail_by_its_envelope_sender_or_signed_mailto(reader):
    settings, tokens, verp, mailto = reader
    by_verp = samples.arf_complaint("reader@example.com", original_mail_from=verp, mailto="unsubscribe@blog.example.org")
    [report] = read_message(settings, tokens, by_verp, "maildir").reports
    assert (report.kind, report.delivery_id) == (Kind.COMPLAINT, 41)
    assert report.detail == "abuse report from blog.example.org"
    # Outlook's JMRP redacts the envelope; the signed mailto inside the original still names the subscriber.
    by_mailto = samples.arf_complaint("[redacted]", original_mail_from="[redacted]", mailto=mailto,
                                      reporter="Microsoft JMRP")
    [report] = read_message(settings, tokens, by_mailto, "maildir").reports
    assert (report.kind, report.subscriber_id) == (Kind.COMPLAINT, 7)


def test_mailto_unsubscribe_needs_the_signed_address(reader):
    settings, tokens, _, mailto = reader
    [report] = read_message(settings, tokens, samples.mailto_unsubscribe(mailto, "someone@gmail.com"), "smtp").reports
    assert (report.kind, report.subscriber_id) == (Kind.UNSUBSCRIBE, 7)
    # A forged token, or a token of another purpose, is nothing.
    local, _, domain = mailto.partition("@")
    forged = local[:-3] + ("AAA" if not local.upper().endswith("AAA") else "BBB") + "@" + domain
    assert read_message(settings, tokens, samples.mailto_unsubscribe(forged, "x@gmail.com"), "smtp").reports == []


def test_unsigned_or_forged_reports_are_refused_when_mail_is_signed(reader, caplog):
    settings, tokens, verp, _ = reader
    unsigned = read_message(settings, tokens, samples.postfix_dsn(BOUNCES, "victim@example.com"), "maildir")
    assert unsigned.reports == [] and "unsigned" in unsigned.note
    forged_verp = "bounces+MTIz.aaaa.bbbb@bounce.blog.example.org"
    assert read_message(settings, tokens, samples.gmail_dsn(forged_verp, "victim@example.com"), "maildir").reports == []
    complaint = samples.arf_complaint("victim@example.com", original_mail_from=BOUNCES, mailto="unsubscribe@blog.example.org")
    assert read_message(settings, tokens, complaint, "maildir").reports == []
    other = read_message(settings, tokens, samples.vacation_reply(verp, "friend@example.com"), "maildir")
    assert other.reports == [] and other.note == "not a bounce, complaint or unsubscribe"


def test_without_a_bounce_address_reports_name_subscribers_by_address(make_settings):
    settings = make_settings()
    tokens = tokens_for(settings)
    [report] = read_message(settings, tokens, samples.exim_bounce("news@blog.example.org", "Gone@Example.com"), "maildir").reports
    assert (report.kind, report.address, report.delivery_id) == (Kind.HARD_BOUNCE, "Gone@Example.com", None)
    complaint = samples.arf_complaint("reader@example.com", original_mail_from="news@blog.example.org", mailto="news@blog.example.org")
    [report] = read_message(settings, tokens, complaint, "maildir").reports
    assert (report.kind, report.address) == (Kind.COMPLAINT, "reader@example.com")


# --- the policy ------------------------------------------------------------------------------------------------


def test_policy_hard_soft_complaint_and_resubscription(loop_site):
    settings, engine = loop_site(inbound={"soft_bounce_limit": 3, "soft_bounce_window_days": 7})
    hard, soft, slow, complained = add_subscribers(
        engine, ["hard@example.com", "soft@example.com", "slow@example.com", "c@example.com"],
        confirmed_at=START - timedelta(days=30),
    )

    def report(kind, subscriber_id, key, at):
        return mail_events.apply(settings, engine, Report(kind, "postmark", key, "test", subscriber_id=subscriber_id), at)

    assert report(Kind.HARD_BOUNCE, hard, "h1", START) is Outcome.RECORDED
    assert status_of(engine, hard) == "bounced"
    # Three soft bounces within the window suppress; the same report twice counts once.
    for n in range(2):
        assert report(Kind.SOFT_BOUNCE, soft, f"s{n}", START + timedelta(days=n)) is Outcome.RECORDED
    assert report(Kind.SOFT_BOUNCE, soft, "s1", START + timedelta(days=2)) is Outcome.DUPLICATE
    assert status_of(engine, soft) == "active"
    assert report(Kind.SOFT_BOUNCE, soft, "s2", START + timedelta(days=2)) is Outcome.RECORDED
    assert status_of(engine, soft) == "bounced"
    assert "3 soft bounces within 7 days" in subscriptions.get(engine, soft).status_reason
    # Spread wider than the window: never suppressed.
    for n in range(4):
        report(Kind.SOFT_BOUNCE, slow, f"w{n}", START + timedelta(days=8 * n))
    assert status_of(engine, slow) == "active"
    assert report(Kind.COMPLAINT, complained, "c1", START) is Outcome.RECORDED
    assert status_of(engine, complained) == "complained"
    assert report(Kind.HARD_BOUNCE, None, "nobody", START) is Outcome.UNKNOWN

    # Back through the form: allowed after a bounce, not after a complaint until the operator clears it.
    def again(address):
        consent = subscriptions.Consent(at=START, source="form")
        return subscriptions.request_subscription(engine, subscriptions.subscription_request(address), consent)

    assert again("hard@example.com").status == "pending"
    assert again("c@example.com") is None
    assert subscriptions.add(engine, subscriptions.subscription_request("c@example.com"), confirmed=True,
                           consent=subscriptions.Consent(at=START, source="import")).outcome.value == "suppressed"
    assert mail_events.clear(engine, "c@example.com", START + timedelta(days=40), "clear-1") == "complained"
    assert again("c@example.com").status == "pending"
    kinds = [(e.email, e.kind) for e in mail_events.recent(engine, limit=3)]
    assert kinds[0] == ("c@example.com", "cleared")


# --- the inbound paths ----------------------------------------------------------------------------------------


def _send_edition(settings, engine, smtp_server, now: datetime, title: str) -> list[str]:
    """Write a post, create its instant edition, send it to the relay; the recipients of this edition."""
    slug = title.lower().replace(" ", "-")
    write_post(settings.posts.dir, f"{slug}.md", title=title, date=now - timedelta(minutes=1))
    [summary] = run_due(settings, engine, Collection(settings).scan(), now)
    before = len(smtp_server.received)

    async def send():
        transport = SmtpTransport(settings)
        try:
            return await drain(settings, engine, transport, worker_id="test", now=lambda: now)
        finally:
            await transport.aclose()

    report = asyncio.run(send())
    assert report.sent == summary.deliveries
    return sorted(r for mail in smtp_server.received[before:] for r in mail.recipients)


def test_end_to_end_the_next_edition_skips_exactly_the_suppressed(loop_site, smtp_server, tmp_path):
    settings, engine = loop_site(
        mail={"smtp_url": smtp_server.url, "postal_address": "Test Blog, 1 Example Street, Springfield"},
        inbound={"smtp_listen": f"127.0.0.1:{free_port()}"},
    )
    people = ["hard@example.com", "soft@example.com", "angry@example.com", "leaving@example.com",
              "stays@example.com", "also.stays@example.com", "victim@example.com"]
    ids = dict(zip(people, add_subscribers(engine, people, frequency="instant", confirmed_at=START - timedelta(days=9)),
                   strict=True))
    assert run_due(settings, engine, Collection(settings).scan(), START) == []  # the first run: the archive

    assert _send_edition(settings, engine, smtp_server, START + timedelta(minutes=5), "First news") == sorted(people)
    mails = {mail.recipients[0]: mail for mail in smtp_server.received}
    # Each mail went out with its own signed envelope sender, and a signed mailto for its reader.
    verp = {address: mail.sender for address, mail in mails.items()}
    assert len(set(verp.values())) == len(people) and all(s.startswith("bounces+") for s in verp.values())
    list_unsubscribe = {address: str(mail.message["List-Unsubscribe"]) for address, mail in mails.items()}
    mailto = {address: value.split("<mailto:")[1].rstrip(">") for address, value in list_unsubscribe.items()}
    assert all(m.startswith("unsubscribe+") and m.endswith("@bounce.blog.example.org") for m in mailto.values())
    first = mails["stays@example.com"].message
    assert (first["Precedence"], first["Auto-Submitted"]) == ("bulk", "auto-generated")
    assert first["Feedback-ID"].endswith(":blog.example.org:feedsvc")
    assert all("1 Example Street" in first.get_body(preferencelist=(kind,)).get_content() for kind in ("plain", "html"))

    receiver = SmtpReceiver(settings, engine, tokens_for(settings))
    maildir = MaildirSource(settings, engine, tokens_for(settings))

    async def over_smtp(messages):
        await receiver.start()
        try:
            for sender, recipient, raw in messages:
                await asyncio.to_thread(_smtp_send, receiver.port, sender, recipient, raw)
            # The receiver is no relay: other domains are refused.
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                await asyncio.to_thread(_smtp_send, receiver.port, "", "someone@elsewhere.example", b"Subject: x\r\n\r\nx\r\n")
        finally:
            await receiver.close()

    asyncio.run(over_smtp([
        # A hard bounce straight from the recipient's MX, to the VERP address.
        ("", verp["hard@example.com"], samples.gmail_dsn(verp["hard@example.com"], "hard@example.com")),
        # The unsubscribe button of a mail client.
        ("leaving@example.com", mailto["leaving@example.com"], samples.mailto_unsubscribe(mailto["leaving@example.com"], "leaving@example.com")),
    ]))
    # A soft bounce three times, a complaint through a feedback loop, and two forgeries, in the Maildir.
    for n in range(3):
        deliver_to_maildir(maildir.path, samples.exim_delay_dsn(verp["soft@example.com"], "soft@example.com", str(n + 1)), f"soft{n}")
    deliver_to_maildir(maildir.path, samples.arf_complaint(
        "angry@example.com", original_mail_from=verp["angry@example.com"], mailto=mailto["angry@example.com"]), "arf")
    deliver_to_maildir(maildir.path, samples.postfix_dsn(BOUNCES, "victim@example.com"), "unsigned")
    deliver_to_maildir(maildir.path, samples.mailto_unsubscribe(
        mailto["victim@example.com"].replace("unsubscribe+", "unsubscribe+x"), "mallory@example.com"), "forged")
    assert maildir.process_new() == 6
    assert sorted(p.name for p in (maildir.path / "cur").iterdir()) == [
        "arf:2,S", "forged:2,S", "soft0:2,S", "soft1:2,S", "soft2:2,S", "unsigned:2,S"]
    assert list((maildir.path / "new").iterdir()) == []

    statuses = {address: status_of(engine, ids[address]) for address in people}
    assert statuses == {
        "hard@example.com": "bounced", "soft@example.com": "bounced", "angry@example.com": "complained",
        "leaving@example.com": "unsubscribed", "stays@example.com": "active", "also.stays@example.com": "active",
        "victim@example.com": "active",
    }
    events = {(e.email, e.kind, e.source) for e in mail_events.recent(engine)}
    assert events == {
        ("hard@example.com", "hard_bounce", "smtp"), ("leaving@example.com", "unsubscribe", "smtp"),
        ("soft@example.com", "soft_bounce", "maildir"), ("angry@example.com", "complaint", "maildir"),
    }
    with engine.connect() as connection:
        # Bounces and the complaint name their edition (VERP); the mailto names only its subscriber.
        named = connection.execute(select(mail_events_table.c.kind, mail_events_table.c.edition_id)).all()
        [edition_id] = set(connection.execute(select(deliveries.c.edition_id)).scalars())
        assert sorted(named) == sorted([("complaint", edition_id), ("hard_bounce", edition_id), ("unsubscribe", None)]
                                       + [("soft_bounce", edition_id)] * 3)

    second = _send_edition(settings, engine, smtp_server, START + timedelta(hours=1), "Second news")
    assert second == ["also.stays@example.com", "stays@example.com", "victim@example.com"]


def _smtp_send(port: int, sender: str, recipient: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, [recipient], raw)


def test_smtp_receiver_asks_to_retry_when_the_store_fails(loop_site, tmp_path):
    settings, engine = loop_site(inbound={"smtp_listen": f"127.0.0.1:{free_port()}"})
    [subscriber_id] = add_subscribers(engine, ["x@example.com"], frequency="instant", confirmed_at=START)
    mailto = unsubscribe_mailto(settings, tokens_for(settings), subscriber_id)
    raw = samples.mailto_unsubscribe(mailto, "x@example.com")
    # A store that holds the subscriber but fails when the event is written (its table is gone).
    broken = open_engine(f"sqlite:///{tmp_path / 'broken.db'}")
    assert add_subscribers(broken, ["x@example.com"], frequency="instant", confirmed_at=START) == [subscriber_id]
    with broken.begin() as connection:
        connection.exec_driver_sql("DROP TABLE mail_events")
    receiver = SmtpReceiver(settings, broken, tokens_for(settings))

    async def attempt():
        await receiver.start()
        try:
            await asyncio.to_thread(_smtp_send, receiver.port, "x@example.com", mailto, raw)
        finally:
            await receiver.close()

    with pytest.raises(smtplib.SMTPDataError) as refused:
        asyncio.run(attempt())
    assert refused.value.smtp_code == 451
    broken.dispose()
    # The sender tries again later, when the store works: now it takes effect.
    receiver = SmtpReceiver(settings, engine, tokens_for(settings))
    asyncio.run(attempt())
    assert status_of(engine, subscriber_id) == "unsubscribed"


@pytest.mark.slow
def test_maildir_killed_mid_way_loses_nothing_and_counts_nothing_twice(loop_site, tmp_path):
    """kill -9 a `feedsvc bounces fetch` while it works through a Maildir: every message in cur/ has its event
    stored; a second run handles the rest, and each report is recorded exactly once."""
    settings, engine = loop_site(inbound={"soft_bounce_limit": 1000})
    count = 400
    ids = add_subscribers(engine, [f"r{n}@example.com" for n in range(count)], confirmed_at=START)
    maildir = settings.inbound.maildir
    tokens = tokens_for(settings)
    for n, subscriber_id in enumerate(ids):
        mailto = unsubscribe_mailto(settings, tokens, subscriber_id)
        deliver_to_maildir(maildir, samples.mailto_unsubscribe(mailto, f"r{n}@example.com"), f"m{n:04d}")
    command = [sys.executable, "-m", "feedsvc", "bounces", "fetch", "--config", str(settings.config_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((maildir / "cur").iterdir())) < 20:
        time.sleep(0.005)
    process.kill()
    process.wait()
    done = {p.name.split(":2,")[0] for p in (maildir / "cur").iterdir()}
    assert 20 <= len(done) < count, "the kill should land mid-way"
    unsubscribed = {address for address in (f"r{n}@example.com" for n in range(count))
                    if subscriptions.find(engine, address).status == "unsubscribed"}
    # Marked processed implies stored (the reverse may not hold: killed between the two).
    assert {f"r{int(name[1:])}@example.com" for name in done} <= unsubscribed

    finished = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert len(list((maildir / "cur").iterdir())) == count and not list((maildir / "new").iterdir())
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(mail_events_table)).scalar_one() == count
    assert subscriptions.counts(engine)["unsubscribed"] == count


def test_a_message_the_bounce_detectors_choke_on_is_set_aside_not_retried_forever(loop_site):
    settings, engine = loop_site()
    maildir = MaildirSource(settings, engine, tokens_for(settings))
    # No From header and no MIME boundary: one of flufl.bounce's heuristic detectors raises on it.
    deliver_to_maildir(maildir.path, b"To: bounces@bounce.blog.example.org\r\nSubject: failure notice\r\n"
                       b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary\r\n", "odd")
    assert maildir.process_new() == 1
    assert [p.name for p in (maildir.path / "cur").iterdir()] == ["odd:2,S"]


def test_handle_stores_nothing_for_a_message_it_cannot_place(loop_site):
    settings, engine = loop_site()
    assert handle(settings, engine, tokens_for(settings), samples.vacation_reply(BOUNCES, "a@example.com"), "maildir") == []



def test_cli_lists_events_and_suppressed_subscribers_and_clears_a_complaint(make_settings):
    from test_cli_subscribers import run

    settings = make_settings(mail={"bounce_address": BOUNCES})
    engine = open_engine(settings.store.database_url)
    try:
        hard, angry = add_subscribers(engine, ["hard@example.com", "angry@example.com"], confirmed_at=START)
        mail_events.apply(settings, engine, Report(Kind.HARD_BOUNCE, "sendgrid", "k1", "550 5.1.1 no such user",
                                                   subscriber_id=hard), START)
        mail_events.apply(settings, engine, Report(Kind.COMPLAINT, "imap", "k2", "abuse report", subscriber_id=angry),
                          START + timedelta(minutes=1))
    finally:
        engine.dispose()
    listed = run(settings, "bounces")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "2026-11-02T12:01:00+00:00\tangry@example.com\tcomplaint\timap\tabuse report",
        "2026-11-02T12:00:00+00:00\thard@example.com\thard_bounce\tsendgrid\t550 5.1.1 no such user",
    ]
    assert run(settings, "bounces", "--kind", "complaint").stdout.count("\n") == 1
    assert run(settings, "bounces", "--kind", "nonsense").returncode == 1
    assert [line.split("\t")[:2] for line in run(settings, "subscribers", "list", "--status", "complained").stdout.splitlines()] == [
        ["angry@example.com", "complained"]]
    assert run(settings, "subscribers", "list", "--status", "bounced").stdout.startswith("hard@example.com\tbounced")
    cleared = run(settings, "bounces", "clear", "Angry@Example.com")
    assert cleared.returncode == 0 and "was complained; now unsubscribed" in cleared.stdout
    assert run(settings, "bounces", "clear", "nobody@example.com").returncode == 1
    assert run(settings, "bounces", "fetch").returncode == 1  # no mailbox configured: said so

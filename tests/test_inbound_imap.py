"""Reading bounces and complaints from a real IMAP server (Dovecot, started here on a free port over TLS)."""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import inbound_samples as samples
import pytest
import test_inbound
from conftest import add_subscribers, free_port
from sqlalchemy import func, select
from tls_certs import issue, make_ca

from feedsvc import subscriptions
from feedsvc.inbound.imap import Source as ImapSource
from feedsvc.store.engine import open_engine
from feedsvc.store.schema import mail_events
from feedsvc.tokens import bounce_sender, tokens_for, unsubscribe_mailto

START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
loop_site = test_inbound.loop_site  # settings with a bounce address, on the parametrized store
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "imap-test-password"


@dataclass
class ImapServer:
    port: int
    ca_file: Path

    def url(self, folder: str = "INBOX") -> str:
        return f"imaps://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{folder}"

    def client(self) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=ssl.create_default_context(cafile=str(self.ca_file)))
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.client() as client:
            status, _ = client.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK"

    def count(self, folder: str, criterion: str = "ALL") -> int:
        with self.client() as client:
            status, _ = client.select(folder, readonly=True)
            if status != "OK":
                return 0
            _, found = client.search(None, criterion)
            return len(found[0].split())


@pytest.fixture
def imap_server() -> Iterator[ImapServer]:
    """Dovecot with a throw-away config, a passwd-file user and a self-made CA, on a free port (imaps)."""
    if not os.path.exists(DOVECOT):
        pytest.skip("Dovecot is not installed (apt-get install -y dovecot-imapd) — the IMAP path is not tested")
    # Dovecot's own processes run as an unprivileged user, which must reach the folder: not under pytest's 0700 tmp.
    folder = Path(tempfile.mkdtemp(prefix="feedsvc-dovecot-"))
    folder.chmod(0o755)
    owner = pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    ca = make_ca()
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    cert, key = issue(ca, "127.0.0.1", hosts=("127.0.0.1",)).write(folder, "server")
    mail = folder / "mail"
    mail.mkdir()
    os.chown(mail, owner.pw_uid, owner.pw_gid)
    (folder / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{owner.pw_uid}:{owner.pw_gid}::{mail}/{USER}\n")
    port = free_port()
    config = folder / "dovecot.conf"
    config.write_text(f"""\
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
default_internal_user = {owner.pw_name}
default_internal_group = {grp.getgrgid(owner.pw_gid).gr_name}
default_login_user = {owner.pw_name}
first_valid_uid = {min(owner.pw_uid, 100)}
first_valid_gid = 0
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {folder}/users
}}
userdb {{
  driver = passwd-file
  args = {folder}/users
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
""")
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    server = ImapServer(port, ca_file)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                server.client().logout()
                break
            except (OSError, imaplib.IMAP4.error):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "dovecot.log").read_text() if (folder / "dovecot.log").exists() else ""
                    raise AssertionError(f"dovecot did not start: {process.stdout.read().decode() if process.stdout else ''}{log}") from None
                time.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def imap_inbound(imap_server: ImapServer, **inbound) -> dict:
    """The [inbound] settings reading this server, trusting its CA."""
    return {"imap_url": imap_server.url(), "imap_ca_file": str(imap_server.ca_file)} | inbound


def _delivery(engine, subscriber_id: int) -> int:
    """A delivery row for the subscriber, as the queue would have made (the VERP token names it)."""
    from feedsvc.store.schema import deliveries, editions

    with engine.begin() as connection:
        edition_id = connection.execute(
            editions.insert().values(key=f"e{subscriber_id}", frequency="instant", period_start=START, period_end=START,
                                     post_ids=[], subject="s", html="h", text="t", created_at=START)
        ).inserted_primary_key[0]
        return connection.execute(
            deliveries.insert().values(key=f"d{subscriber_id}", edition_id=edition_id, subscriber_id=subscriber_id,
                                       state="sent", attempts=1, next_attempt_at=START, last_error="", created_at=START)
        ).inserted_primary_key[0]


def test_imap_bounces_and_complaints_suppress_and_are_moved_once_stored(imap_server, loop_site):
    settings, engine = loop_site(inbound=imap_inbound(imap_server, imap_processed_folder="Processed"))
    hard, angry, leaving, fine = add_subscribers(
        engine, ["hard@example.com", "angry@example.com", "leaving@example.com", "fine@example.com"], confirmed_at=START
    )
    tokens = tokens_for(settings)
    imap_server.append(samples.postfix_dsn(bounce_sender(settings, tokens, _delivery(engine, hard)), "hard@example.com"))
    imap_server.append(samples.arf_complaint("angry@example.com", original_mail_from=bounce_sender(settings, tokens, _delivery(engine, angry)),
                                             mailto="unsubscribe@blog.example.org"))
    imap_server.append(samples.mailto_unsubscribe(unsubscribe_mailto(settings, tokens, leaving), "leaving@example.com"))
    imap_server.append(samples.vacation_reply(settings.mail.bounce_address, "fine@example.com"))
    imap_server.append(samples.postfix_dsn(settings.mail.bounce_address, "fine@example.com"))  # unsigned: refused

    source = ImapSource(settings, engine, tokens)
    assert source.process_new() == 5
    statuses = {s: subscriptions.get(engine, i).status for s, i in
                [("hard", hard), ("angry", angry), ("leaving", leaving), ("fine", fine)]}
    assert statuses == {"hard": "bounced", "angry": "complained", "leaving": "unsubscribed", "fine": "active"}
    assert (imap_server.count("INBOX"), imap_server.count("Processed")) == (0, 5)
    assert source.process_new() == 0


def test_imap_message_stays_unseen_until_its_effect_is_stored(imap_server, loop_site, tmp_path):
    settings, engine = loop_site(inbound=imap_inbound(imap_server))
    [leaving] = add_subscribers(engine, ["leaving@example.com"], confirmed_at=START)
    tokens = tokens_for(settings)
    imap_server.append(samples.mailto_unsubscribe(unsubscribe_mailto(settings, tokens, leaving), "leaving@example.com"))
    # The store fails while the message is handled (its events table is gone): the message stays unseen.
    broken = open_engine(f"sqlite:///{tmp_path / 'broken.db'}")
    add_subscribers(broken, ["leaving@example.com"], confirmed_at=START)
    with broken.begin() as connection:
        connection.exec_driver_sql("DROP TABLE mail_events")
    with pytest.raises(Exception, match="mail_events"):
        ImapSource(settings, broken, tokens).process_new()
    broken.dispose()
    assert imap_server.count("INBOX", "UNSEEN") == 1
    # Next time, with the store back, it takes effect and is flagged \Seen (no processed folder set).
    assert ImapSource(settings, engine, tokens).process_new() == 1
    assert subscriptions.get(engine, leaving).status == "unsubscribed"
    assert (imap_server.count("INBOX", "UNSEEN"), imap_server.count("INBOX", "SEEN")) == (0, 1)
    assert ImapSource(settings, engine, tokens).process_new() == 0


def test_imap_refuses_a_server_certificate_it_cannot_verify(imap_server, loop_site):
    settings, engine = loop_site(inbound=imap_inbound(imap_server))
    untrusting = settings.model_copy(update={"inbound": settings.inbound.model_copy(update={"imap_ca_file": None})})
    with pytest.raises(ssl.SSLCertVerificationError):
        ImapSource(untrusting, engine, tokens_for(settings)).process_new()


def senders_in(imap_server, folder: str) -> list[str]:
    """The From address of every message in a folder, one entry per message."""
    with imap_server.client() as client:
        client.select(folder, readonly=True)
        _, found = client.search(None, "ALL")
        if not found[0]:
            return []
        _, parts = client.fetch(b",".join(found[0].split()), "(BODY.PEEK[HEADER.FIELDS (FROM)])")
    return [part[1].decode().split()[-1] for part in parts if isinstance(part, tuple)]


@pytest.mark.slow
def test_imap_fetch_killed_mid_way_loses_nothing_and_counts_nothing_twice(imap_server, loop_site):
    """kill -9 a `feedsvc bounces fetch` while it works through the mailbox: every message moved to the processed
    folder has its effect stored; a second run handles the rest, each report recorded exactly once."""
    settings, engine = loop_site(inbound=imap_inbound(imap_server, imap_processed_folder="Done"))
    count = 150
    addresses = [f"r{n}@example.com" for n in range(count)]
    ids = add_subscribers(engine, addresses, confirmed_at=START)
    tokens = tokens_for(settings)
    with imap_server.client() as client:
        for address, subscriber_id in zip(addresses, ids, strict=True):
            raw = samples.mailto_unsubscribe(unsubscribe_mailto(settings, tokens, subscriber_id), address)
            client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)
    command = [sys.executable, "-m", "feedsvc", "bounces", "fetch", "--config", str(settings.config_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and imap_server.count("Done") < 10:
        time.sleep(0.01)
    process.kill()
    process.wait()
    moved = set(senders_in(imap_server, "Done"))
    assert 10 <= len(moved) < count, "the kill should land mid-way"
    # Moved implies stored (the reverse may not hold: killed between the two).
    assert all(subscriptions.find(engine, address).status == "unsubscribed" for address in moved)

    finished = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    # Dovecot's MOVE is a copy and an expunge: a client killed inside it can leave one extra copy of the message
    # in flight in the processed folder (never a loss, and its report is counted once below).
    done = senders_in(imap_server, "Done")
    assert imap_server.count("INBOX") == 0 and set(done) == set(addresses) and len(done) <= count + 1
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(mail_events)).scalar_one() == count
    assert subscriptions.counts(engine)["unsubscribed"] == count

"""`feedsvc run` / `feedsvc worker` as real subprocesses: real HTTP, real SMTP (in this process), real stores."""

from __future__ import annotations

import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import inbound_samples
import pytest
import test_inbound as inbound
import tomli_w
from conftest import add_subscribers, free_port, wait_for, write_post
from sqlalchemy import text

from feedsvc.config import Settings, load_settings
from feedsvc.posts import Collection
from feedsvc.store import open_engine
from feedsvc.tokens import bounce_sender, tokens_for, unsubscribe_mailto

INBOUND_START = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)

# Bounds for correctness, not benchmarks (benchmarks/latency.py measures): a saved post is served within 1 s.
SERVE_BOUND = 1.0 + 0.5


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"service exited with {self.process.returncode}:\n{self.output()}"
            try:
                if httpx.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"service not healthy within {timeout} s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(config: Path, command: str = "run", *, port: int | None = None) -> Service:
        port = port or free_port()
        log = tmp_path / f"{command}-{len(started)}.log"
        args = [sys.executable, "-m", "feedsvc", command, "--config", str(config)]
        if command == "run":
            args += ["--port", str(port)]
        with log.open("wb") as sink:
            process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
        service = Service(process, port, log)
        started.append(service)
        return service

    yield start
    for service in started:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


def write_config(folder: Path, **sections: dict[str, Any]) -> Path:
    config: dict[str, dict[str, Any]] = {
        "site": {"title": "Service Blog", "url": "https://blog.example.org", "timezone": "UTC"},
        "posts": {"dir": "posts"},
        "feeds": {"output_dir": "public"},
        "store": {"dir": "subscribers"},
        "mail": {"from_address": "news@blog.example.org"},
        "web": {"secret_key": "service-test-secret-of-at-least-32-bytes"},
        "scheduler": {"debounce_ms": 50, "drain_interval": 0.5},
        "log": {"format": "json"},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    (folder / "posts").mkdir(exist_ok=True)
    path = folder / "feedsvc.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    return path


def feed_has(service: Service, title: str) -> bool:
    return title in httpx.get(service.url("/rss.xml"), timeout=2).text


def test_a_saved_post_is_served_within_a_second(tmp_path, services):
    config = write_config(tmp_path)
    service = services(config)
    service.wait_healthy()
    first = httpx.get(service.url("/rss.xml"), timeout=2)
    assert first.status_code == 200
    etag = first.headers["etag"]

    saved = time.monotonic()
    write_post(tmp_path / "posts", "fresh.md", title="Fresh from the editor", date=datetime.now(UTC) - timedelta(minutes=1))

    def updated() -> httpx.Response | None:
        response = httpx.get(service.url("/rss.xml"), headers={"If-None-Match": etag}, timeout=2)
        return response if response.status_code == 200 else None

    response = wait_for(updated, SERVE_BOUND + 1, "the new feed")
    elapsed = time.monotonic() - saved
    assert "Fresh from the editor" in response.text
    assert elapsed < SERVE_BOUND, f"served after {elapsed:.2f} s"
    health = httpx.get(service.url("/healthz"), timeout=2).json()
    assert health["checks"]["scheduler"] is True and health["checks"]["watcher"] is True, health
    metrics = httpx.get(service.url("/metrics"), timeout=2).text
    builds = re.search(r'^feedsvc_feed_builds_total\{outcome="ok"\} (\S+)$', metrics, re.MULTILINE)
    assert builds and float(builds.group(1)) >= 2, metrics  # the first build and the one for the saved post
    assert service.stop() == 0


def test_a_future_post_appears_at_its_time(tmp_path, services):
    config = write_config(tmp_path)
    service = services(config)
    service.wait_healthy()
    due = datetime.now(UTC) + timedelta(seconds=3)
    write_post(tmp_path / "posts", "later.md", title="Scheduled for later", date=due)
    time.sleep(1)  # seen by the watcher, rebuilt, not yet published
    assert not feed_has(service, "Scheduled for later")
    wait_for(lambda: feed_has(service, "Scheduled for later"), 10, "the scheduled post", interval=0.05)
    appeared = datetime.now(UTC)
    assert due <= appeared < due + timedelta(seconds=SERVE_BOUND), appeared - due
    assert service.stop() == 0


def test_the_daily_digest_fires_at_its_time(tmp_path, services, smtp_server):
    # Far enough ahead for the service to be up first even on a loaded machine: a run missed before the
    # service existed is rightly not caught up, and the test would wait for tomorrow's.
    fires = datetime.now(UTC) + timedelta(seconds=20)
    config = write_config(
        tmp_path,
        mail={"smtp_url": smtp_server.url},
        digest={"daily_time": fires.time().replace(microsecond=0)},
    )
    engine = open_engine(f"sqlite:///{tmp_path / 'subscribers' / 'feedsvc.db'}")
    add_subscribers(engine, ["daily@example.org"], frequency="daily", confirmed_at=datetime.now(UTC) - timedelta(hours=1))
    engine.dispose()
    service = services(config)
    service.wait_healthy()
    assert datetime.now(UTC) < fires, "the service took longer to start than the test allows for"
    write_post(tmp_path / "posts", "news.md", title="News of the day", date=datetime.now(UTC))
    wait_for(lambda: feed_has(service, "News of the day"), 3, "the post in the feed")
    assert smtp_server.messages_to("daily@example.org") == []

    mails = wait_for(lambda: smtp_server.messages_to("daily@example.org"), 40, "the daily digest", interval=0.1)
    arrived = datetime.now(UTC)
    assert arrived >= fires.replace(microsecond=0)
    assert "News of the day" in mails[0].message.get_body(("plain",)).get_content()
    time.sleep(1)
    assert len(smtp_server.messages_to("daily@example.org")) == 1
    assert service.stop() == 0


def test_a_subscriber_who_chooses_monthly_gets_one_digest_of_the_months_posts(tmp_path, services, smtp_server):
    port = free_port()
    fires = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
    config = write_config(
        tmp_path,
        mail={"smtp_url": smtp_server.url},
        web={"port": port, "public_url": f"http://127.0.0.1:{port}"},
        digest={"monthly_day": fires.day, "monthly_time": fires.time()},
    )
    write_post(tmp_path / "posts", "old.md", title="From the archive", date=datetime.now(UTC) - timedelta(days=40))
    service = services(config, port=port)
    service.wait_healthy()
    with httpx.Client(base_url=service.url(""), timeout=5) as client:
        home = client.get("/")
        assert '<option value="monthly">Monthly digest</option>' in home.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)
        sent = client.post("/subscribe", data={"email": "month@example.org", "frequency": "monthly", "csrf_token": token})
        assert sent.status_code == 200, sent.text
        [confirmation] = wait_for(lambda: smtp_server.messages_to("month@example.org"), 10, "the confirmation mail")
        body = confirmation.message.get_body(("plain",)).get_content()
        link = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", body).group(0)
        assert client.post(link).status_code == 200
    write_post(tmp_path / "posts", "news.md", title="News of the month", date=datetime.now(UTC))
    wait_for(lambda: feed_has(service, "News of the month"), 3, "the post in the feed")
    assert datetime.now(UTC) < fires, "the set-up took longer than the time left before the monthly digest"

    def digests() -> list[Any]:
        return [mail for mail in smtp_server.messages_to("month@example.org") if "monthly digest" in mail.message["Subject"]]

    [digest] = wait_for(digests, 30, "the monthly digest", interval=0.1)
    assert datetime.now(UTC) >= fires
    text = digest.message.get_body(("plain",)).get_content()
    assert "News of the month" in text and "From the archive" not in text
    assert digest.message["Subject"].startswith("Service Blog — monthly digest, ")
    time.sleep(1.5)
    assert len(digests()) == 1
    assert service.stop() == 0


def test_sigterm_mid_send_exits_cleanly_and_a_restart_delivers_the_rest(tmp_path, services, smtp_server):
    def slow(stage: str, _: object) -> None:
        if stage == "data":
            time.sleep(0.03)  # a slow relay: the signal lands mid-send

    smtp_server.fault = slow
    config = write_config(tmp_path, mail={"smtp_url": smtp_server.url, "connections": 2})
    addresses = [f"reader{index}@example.org" for index in range(120)]
    engine = open_engine(f"sqlite:///{tmp_path / 'subscribers' / 'feedsvc.db'}")
    add_subscribers(engine, addresses, frequency="instant", confirmed_at=datetime.now(UTC) - timedelta(hours=1))
    engine.dispose()

    service = services(config)
    service.wait_healthy()
    write_post(tmp_path / "posts", "announce.md", title="Worth a mail", date=datetime.now(UTC))
    wait_for(lambda: len(smtp_server.received) >= 20, 20, "the first mails")
    signalled = time.monotonic()
    assert service.stop(signal.SIGTERM) == 0, service.output()
    assert time.monotonic() - signalled < 10
    sent_before_restart = len(smtp_server.received)
    assert sent_before_restart < len(addresses), "the signal must land mid-send"
    assert '"event": "service.stopped"' in service.output()

    restarted = services(config)
    restarted.wait_healthy()
    wait_for(lambda: len(smtp_server.received) >= len(addresses), 30, "the remaining mails", interval=0.1)
    time.sleep(1)
    per_address = Counter(recipient for mail in smtp_server.received for recipient in mail.recipients)
    assert per_address == Counter(addresses), "a graceful stop neither loses nor repeats a message"
    assert restarted.stop() == 0


def test_a_second_run_on_the_same_sqlite_store_is_refused(tmp_path, services):
    config = write_config(tmp_path)
    first = services(config)
    first.wait_healthy()
    second = services(config)
    assert second.process.wait(20) == 1
    output = second.output()
    assert "already running on the SQLite store" in output and f"pid {first.process.pid}" in output
    assert httpx.get(first.url("/healthz"), timeout=2).status_code == 200
    assert first.stop() == 0


def test_a_taken_port_is_one_clear_line_and_exit_1(tmp_path, services):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = services(write_config(tmp_path), port=port)
        assert service.process.wait(20) == 1
    output = service.output()
    assert f"cannot listen on 127.0.0.1:{port}" in output and "--port" in output
    assert "Traceback" not in output


@pytest.mark.slow
@pytest.mark.postgres
def test_two_runs_and_a_worker_share_a_digest_and_survive_a_kill(tmp_path, postgres_url, services, smtp_server):
    connections = 4
    addresses = [f"s{index}@example.org" for index in range(5000)]
    engine = open_engine(postgres_url)
    add_subscribers(engine, addresses, frequency="daily", confirmed_at=datetime.now(UTC) - timedelta(hours=1))
    # Room for three services to start (each also starts its build process) on a busy two-core machine.
    fires = datetime.now(UTC) + timedelta(seconds=25)
    config = write_config(
        tmp_path,
        store={"url": postgres_url},
        # A short claim lease, so the killed process's unsent claims come back within the test.
        mail={"smtp_url": smtp_server.url, "connections": connections, "batch_size": 100, "lease_seconds": 5},
        digest={"daily_time": fires.time().replace(microsecond=0)},
        scheduler={"leader_ttl": 3},
    )
    runs = [services(config), services(config)]
    worker = services(config, "worker")
    for run in runs:
        run.wait_healthy()
    # Saved once every instance runs: a new post for the leader to announce, not part of the archive.
    write_post(tmp_path / "posts", "big-news.md", title="Big news for everyone", date=datetime.now(UTC))
    assert datetime.now(UTC) < fires - timedelta(seconds=2), "the instances started too slowly for the schedule"

    wait_for(lambda: len(smtp_server.received) >= 800, 60, "the digest to be under way", interval=0.05)
    victim = runs[0]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    # What the killed process had in flight: its rows left `sending` (read before their lease lets others in).
    with engine.connect() as connection:
        in_flight = set(
            connection.execute(
                text(
                    "SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id"
                    " WHERE d.state = 'sending' AND d.claimed_by LIKE :victim"
                ),
                {"victim": f"%:{victim.process.pid}:%"},
            ).scalars()
        )
    wait_for(lambda: len({r for m in smtp_server.received for r in m.recipients}) >= len(addresses), 90, "every digest")
    time.sleep(1.5)

    per_address = Counter(recipient for mail in smtp_server.received for recipient in mail.recipients)
    assert set(per_address) == set(addresses), "nobody is left out"
    # Only mail the killed process had in flight may repeat (sent, or accepted but not yet recorded), once each;
    # that window is its connections' sends plus a flush interval's worth, never a whole batch: at most four waves
    # were left `sending` (one awaiting its replies, one being started, one queued, one being marked).
    repeated = {address for address, count in per_address.items() if count > 1}
    assert repeated <= in_flight, sorted(repeated - in_flight)[:5]
    assert max(per_address.values()) <= 2 and len(in_flight) <= 4 * connections, (len(in_flight), per_address.most_common(3))
    with engine.connect() as connection:
        editions = connection.execute(text("SELECT count(*) FROM editions WHERE frequency = 'daily'")).scalar_one()
        states = dict(connection.execute(text("SELECT state, count(*) FROM deliveries GROUP BY state")).all())
    assert editions == 1, "the schedule fired once across the instances"
    assert states == {"sent": len(addresses)}
    engine.dispose()
    assert runs[1].stop() == 0 and worker.stop() == 0


# --- feedsvc init -------------------------------------------------------------------------------------------


def _init(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feedsvc", "init", *args], check=False, cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_init_writes_a_commented_config_templates_and_a_sample_post(tmp_path):
    result = _init("blog", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    site = tmp_path / "blog"
    assert "Next steps" in result.stdout and "feedsvc run" in result.stdout
    text_of_config = (site / "feedsvc.toml").read_text(encoding="utf-8")
    # Every key of every section is there, with a value or (when it has no default) commented out.
    for section, model in Settings.model_fields.items():
        if section == "config_path":
            continue
        assert f"[{section}]" in text_of_config
        for key in model.annotation.model_fields:
            assert re.search(rf"^#? ?{key} = ", text_of_config, re.MULTILINE), f"{section}.{key} missing"
    assert text_of_config.count("\n#") > 30, "the keys are explained"

    settings = load_settings(site / "feedsvc.toml")
    defaults = Settings(site={"url": "http://127.0.0.1:8080"})
    for section in ("posts", "feeds", "mail", "digest", "web", "scheduler", "log"):
        written, default = getattr(settings, section), getattr(defaults, section)
        for key in type(written).model_fields:
            if key not in ("dir", "output_dir", "templates_dir"):
                assert getattr(written, key) == getattr(default, key), f"{section}.{key} differs from the default"
    assert settings.mail.templates_dir == site / "templates"
    assert (site / "templates" / "mail" / "digest.html.j2").is_file()
    assert (site / "templates" / "mail").is_dir() and (site / "templates" / "web").is_dir()
    scan = Collection(settings).scan()
    assert [post.title for post in scan.published(datetime.now(UTC) + timedelta(days=1))] == ["Hello, world"]
    assert scan.problems == []


def test_init_refuses_to_overwrite_unless_forced(tmp_path):
    assert _init(cwd=tmp_path).returncode == 0
    (tmp_path / "feedsvc.toml").write_text("# mine\n", encoding="utf-8")
    refused = _init(cwd=tmp_path)
    assert refused.returncode == 1
    assert "not overwriting" in refused.stderr and "--force" in refused.stderr
    assert (tmp_path / "feedsvc.toml").read_text(encoding="utf-8") == "# mine\n"
    assert _init("--force", cwd=tmp_path).returncode == 0
    assert "[scheduler]" in (tmp_path / "feedsvc.toml").read_text(encoding="utf-8")


# --- in the running service ----------------------------------------------------------------------------------


def test_feedsvc_run_receives_reports_and_warns_about_risky_mail_settings(tmp_path, services, smtp_server):
    listen_port = free_port()
    config = write_config(
        tmp_path,
        site={"url": "https://blog.example.org"},
        mail={"from_address": "feedsvc@localhost", "smtp_url": smtp_server.url, "bounce_address": "bounces@bounce.blog.example.org"},
        web={"public_url": "http://news.example.com"},
        inbound={"smtp_listen": f"127.0.0.1:{listen_port}", "maildir": "inbound-maildir", "poll_seconds": 0.2},
    )
    settings = load_settings(config)
    engine = open_engine(settings.store.database_url)
    try:
        leaving, hard = add_subscribers(engine, ["leaving@example.com", "hard@example.com"], confirmed_at=INBOUND_START)
        service = services(config)
        service.wait_healthy()
        tokens = tokens_for(settings)
        mailto = unsubscribe_mailto(settings, tokens, leaving)
        wait_for(lambda: _smtp_accepts(listen_port), 10, "the SMTP receiver")
        inbound_smtp_send(listen_port, "leaving@example.com", mailto, inbound_samples.mailto_unsubscribe(mailto, "leaving@example.com"))
        # The SMTP receiver answered 250 only after storing: the effect is there already.
        assert subscriber_status(engine, leaving) == "unsubscribed"
        with engine.begin() as connection:  # the delivery the VERP token names
            connection.exec_driver_sql(
                "INSERT INTO editions (id, key, frequency, period_start, period_end, post_ids, subject, html, text, created_at)"
                " VALUES (1, 'e', 'instant', '2026-11-02 12:00:00', '2026-11-02 12:00:00', '[]', 's', 'h', 't', '2026-11-02 12:00:00')"
            )
            connection.exec_driver_sql(
                "INSERT INTO deliveries (id, key, edition_id, subscriber_id, state, attempts, next_attempt_at, last_error, created_at)"
                f" VALUES (1, 'd', 1, {hard}, 'sent', 1, '2026-11-02 12:00:00', '', '2026-11-02 12:00:00')"
            )
        inbound.deliver_to_maildir(settings.inbound.maildir, inbound_samples.exim_bounce(bounce_sender(settings, tokens, 1), "hard@example.com"), "b1")
        wait_for(lambda: subscriber_status(engine, hard) == "bounced", 10, "the Maildir bounce to take effect")
        assert service.stop() == 0
    finally:
        engine.dispose()
    output = service.output()
    assert "plain http on a public host" in output
    assert "mail goes out as feedsvc@localhost" in output


def _smtp_accepts(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


def inbound_smtp_send(port: int, sender: str, recipient: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, [recipient], raw)


def subscriber_status(engine, subscriber_id: int) -> str:
    with engine.connect() as connection:
        return connection.execute(text("SELECT status FROM subscribers WHERE id = :id"), {"id": subscriber_id}).scalar_one()

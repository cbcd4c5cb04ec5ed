"""`feedsvc subscribers …` and `feedsvc db upgrade` as real subprocesses on a temporary site."""

from __future__ import annotations

import csv
import io
import mailbox
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from feedsvc import subscriptions
from feedsvc.store import open_engine

CONSENT = subscriptions.Consent(at=datetime(2026, 11, 1, tzinfo=UTC), source="test")


def run(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSVC_")} | {"NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "feedsvc", *args, "--config", str(settings.config_path)],
        check=False,
        env=env, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def settings(make_settings):
    # SQLite only: each command is a whole process (seconds on a busy machine), and the store code under
    # these commands runs on both backends in test_subscribers.py.
    return make_settings()


def outbox_recipients(settings) -> list[str]:
    outbox = settings.store.outbox_dir
    if not (outbox / "new").is_dir():
        return []
    return sorted(str(m["To"]) for m in mailbox.Maildir(outbox))


def test_db_upgrade_then_add_list_remove(settings):
    first = run(settings, "db", "upgrade")
    assert first.returncode == 0 and "upgraded" in first.stdout

    added = run(settings, "subscribers", "add", "Ann@Example.org", "--name", "Ann", "--frequency", "monthly", "--confirmed")
    assert added.returncode == 0, added.stderr
    assert "added Ann@example.org (active)" in added.stdout
    pending = run(settings, "subscribers", "add", "bo@example.org", "--tags", "python,go")
    assert pending.returncode == 0 and "pending: confirmation mail sent" in pending.stdout
    assert outbox_recipients(settings) == ["bo@example.org"]

    bad = run(settings, "subscribers", "add", "not-an-address")
    assert bad.returncode == 1 and "email: is not a valid address" in bad.stderr

    listed = run(settings, "subscribers", "list")
    assert listed.stdout.splitlines() == [
        "Ann@example.org\tactive\tmonthly\t\tAnn",
        "bo@example.org\tpending\tinstant\tgo,python\t",
    ]
    assert "2 of 2 subscribers" in listed.stderr

    removed = run(settings, "subscribers", "remove", "ANN@example.org")
    assert removed.returncode == 0 and "is now unsubscribed" in removed.stdout
    again = run(settings, "subscribers", "add", "ann@example.org", "--confirmed")
    assert again.returncode == 1 and "not resubscribed" in again.stderr
    assert run(settings, "subscribers", "remove", "ann@example.org", "--forget").returncode == 0
    assert "1 of 1" in run(settings, "subscribers", "list").stderr


def test_import_reports_bad_rows_and_keeps_suppressions(settings, tmp_path):
    engine = open_engine(settings.store.database_url)
    try:
        subscriptions.add(
            engine, subscriptions.subscription_request("gone@example.org"), confirmed=True, consent=CONSENT
        )
        subscriptions.remove(engine, "gone@example.org", CONSENT.at)
    finally:
        engine.dispose()
    source = tmp_path / "list.csv"
    source.write_text(
        "email,name,frequency\n"
        "cy@example.org,Cy,monthly\n"
        "bad address,Nope,\n"
        "gone@example.org,Gone,\n"
        "dee@example.org,Dee,fortnightly\n"
        "eve@bücher.example,Eve,\n",
        encoding="utf-8",
    )
    result = run(settings, "subscribers", "import", str(source), "--confirmed")
    assert result.returncode == 1
    assert f"{source}:3: email: is not a valid address" in result.stderr
    assert f"{source}:5: frequency: must be one of instant, daily, weekly, monthly\n" in result.stderr
    assert "imported 2 (0 pending" in result.stdout and "skipped 1 (already there or kept as suppressions)" in result.stdout

    exported = run(settings, "subscribers", "export")
    assert exported.returncode == 0
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(exported.stdout))}
    assert rows["cy@example.org"]["frequency"] == "monthly"
    assert rows["gone@example.org"]["status"] == "unsubscribed"
    assert rows["cy@example.org"]["status"] == "active" and rows["cy@example.org"]["consent_source"] == "operator-import"
    assert rows["eve@xn--bcher-kva.example"]["status"] == "active"
    assert outbox_recipients(settings) == []

    out = tmp_path / "export.csv"
    assert run(settings, "subscribers", "export", "--out", str(out)).returncode == 0
    assert out.read_text(encoding="utf-8").replace("\r\n", "\n") == exported.stdout.replace("\r\n", "\n")

    # Without --confirmed new addresses are pending and get their confirmation mail.
    (tmp_path / "more.csv").write_text("email\nfay@example.org\n", encoding="utf-8")
    more = run(settings, "subscribers", "import", str(tmp_path / "more.csv"))
    assert more.returncode == 0 and "1 confirmation mails sent" in more.stdout
    assert outbox_recipients(settings) == ["fay@example.org"]

    (tmp_path / "broken.csv").write_bytes(b"name\nx\n")
    broken = run(settings, "subscribers", "import", str(tmp_path / "broken.csv"))
    assert broken.returncode == 1 and "no 'email' column" in broken.stderr


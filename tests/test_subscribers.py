"""Subscriber rules and store, on SQLite and PostgreSQL (the `store_url` fixture)."""

from __future__ import annotations

import csv
import io
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from feedsvc import subscriptions
from feedsvc.store import open_engine, rate_limits
from feedsvc.subscriptions import AddOutcome, Consent, ImportFileError, InvalidInput
from feedsvc.tokens import Purpose, confirm_url, preferences_url, tokens_for, unsubscribe_url

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(store_url):
    engine = open_engine(store_url)
    yield engine
    engine.dispose()


def form_consent(at: datetime = NOW) -> Consent:
    return Consent(at=at, source="web-form", ip="203.0.113.7", user_agent="Firefox\r\nX-Evil: 1")


def request(email: str, **fields):
    return subscriptions.subscription_request(email, **fields)


# --- validation ------------------------------------------------------------------------------------------------


def test_addresses_are_normalised_and_idn_domains_encoded():
    address = subscriptions.normalise_address("  Ann.Lee@Bücher.Example ")
    assert address.email == "Ann.Lee@xn--bcher-kva.example"
    assert address.key == "ann.lee@xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "required"),
        (None, "required"),
        ("ann@example.org\r\nBcc: victim@example.org", "control characters"),
        ("ann@exa\x00mple.org", "control characters"),
        ("ann@\u2028example.org", "control characters"),
        ("a" * 250 + "@example.org", "longer than 254"),
        ("jürgen@example.org", "not a valid address"),
        ("not-an-address", "not a valid address"),
        ("ann@localhost", "not a valid address"),
        ("'; DROP TABLE subscribers; --@example.org", "not a valid address"),
        (["ann@example.org"], "required"),
    ],
)
def test_bad_addresses_are_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidInput) as caught:
        subscriptions.normalise_address(raw)
    assert caught.value.field == "email"
    assert reason in str(caught.value)


def test_names_frequencies_and_tags_are_checked():
    with pytest.raises(InvalidInput, match="name: contains line breaks"):
        request("ann@example.org", name="Ann\r\nBcc: x@example.org")
    with pytest.raises(InvalidInput, match="name: is longer than 200"):
        request("ann@example.org", name="A" * 201)
    with pytest.raises(InvalidInput, match=r"frequency: must be one of instant, daily, weekly, monthly$"):
        request("ann@example.org", frequency="hourly")
    with pytest.raises(InvalidInput, match="tags: '<script>' is not a tag"):
        request("ann@example.org", tags=["python", "<script>"])
    parsed = request("ann@example.org", name="  Ani 😀 ", frequency="Weekly", tags="Python, go;rust go")
    assert (parsed.name, parsed.frequency, parsed.tags) == ("Ani 😀", "weekly", ("go", "python", "rust"))


# --- the double opt-in form ------------------------------------------------------------------------------------


def test_form_requests_by_state(engine):
    first = subscriptions.request_subscription(engine, request("Ann@Example.org", name="Ann"), form_consent())
    assert first is not None and first.status == "pending"
    assert (first.consent_ip, first.consent_source) == ("203.0.113.7", "web-form")
    assert first.consent_user_agent == "FirefoxX-Evil: 1"  # line breaks never reach the store

    # Pending again (any case of the address): the same row, the latest request wins, a mail is due again.
    again = subscriptions.request_subscription(engine, request("ann@EXAMPLE.org", name="Annie", frequency="daily"), form_consent())
    assert again is not None and again.id == first.id
    assert (again.name, again.frequency) == ("Annie", "daily")

    active = subscriptions.confirm(engine, first.id, NOW + timedelta(minutes=5))
    assert active is not None and active.status == "active" and active.confirmed_at == NOW + timedelta(minutes=5)
    # Confirming twice is harmless.
    assert subscriptions.confirm(engine, first.id, NOW + timedelta(hours=1)).confirmed_at == NOW + timedelta(minutes=5)

    # Active: nothing changes and no mail is due (a stranger must not alter the subscription).
    assert subscriptions.request_subscription(engine, request("ann@example.org", name="Mallory", frequency="weekly"), form_consent()) is None
    unchanged = subscriptions.get(engine, first.id)
    assert (unchanged.name, unchanged.frequency, unchanged.status) == ("Annie", "daily", "active")

    # Unsubscribed: may come back through the form, pending until confirmed again.
    left = subscriptions.unsubscribe(engine, first.id, NOW + timedelta(days=1))
    assert left.status == "unsubscribed" and left.unsubscribed_at == NOW + timedelta(days=1)
    back = subscriptions.request_subscription(engine, request("ann@example.org"), form_consent())
    assert back is not None and back.status == "pending"
    assert subscriptions.confirm(engine, first.id, NOW + timedelta(days=2)).status == "active"


def test_complained_addresses_get_no_confirmation_and_old_confirm_links_do_not_revive(engine):
    subscriber = subscriptions.request_subscription(engine, request("bob@example.org"), form_consent())
    with engine.begin() as connection:
        connection.execute(text("UPDATE subscribers SET status = 'complained' WHERE id = :id"), {"id": subscriber.id})
    assert subscriptions.request_subscription(engine, request("bob@example.org"), form_consent()) is None
    assert subscriptions.confirm(engine, subscriber.id, NOW) is None
    assert subscriptions.get(engine, subscriber.id).status == "complained"
    # Unsubscribing a complained address keeps the stronger reason.
    assert subscriptions.unsubscribe(engine, subscriber.id, NOW).status == "complained"
    assert subscriptions.confirm(engine, 999_999, NOW) is None
    assert subscriptions.unsubscribe(engine, 999_999, NOW) is None


def test_bounced_addresses_come_back_only_through_a_new_confirmation(engine):
    subscriber = subscriptions.request_subscription(engine, request("bob@example.org"), form_consent())
    with engine.begin() as connection:
        connection.execute(text("UPDATE subscribers SET status = 'bounced' WHERE id = :id"), {"id": subscriber.id})
    # An old confirmation link does not revive it, and unsubscribing keeps the stronger reason.
    assert subscriptions.confirm(engine, subscriber.id, NOW) is None
    assert subscriptions.unsubscribe(engine, subscriber.id, NOW).status == "bounced"
    # The person asking again through the form gets a confirmation mail (the mailbox may work again).
    back = subscriptions.request_subscription(engine, request("bob@example.org"), form_consent())
    assert back is not None and back.status == "pending"
    assert subscriptions.confirm(engine, subscriber.id, NOW).status == "active"


def test_preferences_change_frequency_and_tags_only(engine):
    subscriber = subscriptions.request_subscription(engine, request("cy@example.org"), form_consent())
    updated = subscriptions.update_preferences(engine, subscriber.id, "weekly", ("python",))
    assert (updated.frequency, updated.tags, updated.status) == ("weekly", ("python",), "pending")
    assert subscriptions.update_preferences(engine, 999_999, "daily", ()) is None


def test_concurrent_requests_for_a_new_address_make_one_row(engine):
    results = []

    def submit():
        results.append(subscriptions.request_subscription(engine, request("race@example.org"), form_consent()))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({result.id for result in results}) == 1
    assert subscriptions.counts(engine)["pending"] == 1


# --- the operator ----------------------------------------------------------------------------------------------


def operator(source: str = "operator-import") -> Consent:
    return Consent(at=NOW, source=source)


def test_operator_add_respects_suppressions(engine):
    added = subscriptions.add(engine, request("dee@example.org"), confirmed=True, consent=operator())
    assert added.outcome is AddOutcome.ADDED and not added.needs_confirmation
    assert (added.subscriber.status, added.subscriber.consent_source) == ("active", "operator-import")
    assert added.subscriber.confirmed_at == NOW

    pending = subscriptions.add(engine, request("eve@example.org"), confirmed=False, consent=operator("operator-add"))
    assert pending.needs_confirmation and pending.subscriber.status == "pending"
    activated = subscriptions.add(engine, request("EVE@example.org"), confirmed=True, consent=operator())
    assert activated.outcome is AddOutcome.ACTIVATED and activated.subscriber.status == "active"
    assert subscriptions.add(engine, request("eve@example.org"), confirmed=True, consent=operator()).outcome is AddOutcome.EXISTS

    subscriptions.remove(engine, "dee@example.org", NOW)
    again = subscriptions.add(engine, request("dee@example.org"), confirmed=True, consent=operator())
    assert again.outcome is AddOutcome.SUPPRESSED and again.subscriber.status == "unsubscribed"
    assert again.subscriber.status_reason == "removed by operator"

    # Erasure forgets the address altogether.
    assert subscriptions.remove(engine, "dee@example.org", NOW, forget=True) is not None
    assert subscriptions.find(engine, "dee@example.org") is None
    assert subscriptions.remove(engine, "nobody@example.org", NOW) is None


CSV_WITH_BAD_ROWS = (
    "Email,Name,Frequency,Tags\n"
    "fay@example.org,Fay,daily,python\n"
    "not-an-address,Broken,,\n"
    "gus@example.org,\"Gus \"\"G\"\" Ng\",weekly,\n"
    "hal@example.org,Hal,hourly,\n"
    "FAY@example.org,Fay again,,\n"
    "ivy@bücher.example,Ivy,,go rust\n"
    "jo@example.org,Jo,,,extra\n"
    "gone@example.org,Gone,,\n"
)


def test_csv_import_reports_bad_rows_by_line_and_keeps_the_rest(engine):
    subscriptions.add(engine, request("gone@example.org"), confirmed=True, consent=operator())
    subscriptions.remove(engine, "gone@example.org", NOW)

    report = subscriptions.import_csv(engine, CSV_WITH_BAD_ROWS.encode(), confirmed=True, consent=operator())

    assert [(line, reason.split(":")[0]) for line, reason in report.refused] == [
        (3, "email"),
        (5, "frequency"),
        (6, "email"),
        (8, "more fields than the header row names"),
    ]
    assert "already on line 2" in report.refused[2][1]
    assert (report.imported, report.pending, report.updated, report.skipped) == (3, 0, 0, 1)
    added = [subscriptions.find(engine, email) for email in ("fay@example.org", "gus@example.org", "ivy@bücher.example")]
    assert all(s.status == "active" and s.consent_source == "operator-import" for s in added)
    # The suppression stays.
    assert subscriptions.find(engine, "gone@example.org").status == "unsubscribed"
    assert subscriptions.find(engine, "gus@example.org").name == 'Gus "G" Ng'
    assert subscriptions.find(engine, "ivy@bücher.example").tags == ("go", "rust")


def test_csv_import_without_consent_leaves_new_rows_pending(engine):
    report = subscriptions.import_csv(engine, b"email\nkim@example.org\n", confirmed=False, consent=operator())
    assert (report.imported, report.pending) == (1, 1)
    assert subscriptions.find(engine, "kim@example.org").status == "pending"
    again = subscriptions.import_csv(engine, b"email\nkim@example.org\n", confirmed=False, consent=operator())
    assert (again.imported, again.skipped, again.pending) == (0, 1, 0)


def test_csv_files_that_cannot_be_read_are_refused_whole(engine):
    with pytest.raises(ImportFileError, match="no 'email' column"):
        subscriptions.import_csv(engine, b"name,address\nA,a@example.org\n", confirmed=True, consent=operator())
    with pytest.raises(ImportFileError, match="empty"):
        subscriptions.import_csv(engine, b"", confirmed=True, consent=operator())
    with pytest.raises(ImportFileError, match="line 3: the file is not UTF-8"):
        subscriptions.import_csv(engine, b"email\na@example.org\nb\xff@example.org\n", confirmed=True, consent=operator())
    assert subscriptions.counts(engine)["active"] == 0


def test_export_defuses_spreadsheet_formulas(engine):
    subscriptions.add(engine, subscriptions.subscription_request("calc@example.org", name='=HYPERLINK("http://x")'),
                    confirmed=True, consent=operator())
    out = io.StringIO()
    subscriptions.export_csv(engine, out)
    [row] = csv.DictReader(io.StringIO(out.getvalue()))
    assert row["name"] == '\'=HYPERLINK("http://x")'


def test_export_then_import_elsewhere_keeps_suppressions(engine, tmp_path):
    subscriptions.import_csv(engine, b"email,name,tags\nlee@example.org,Lee,python\nmo@example.org,Mo,\n", confirmed=True, consent=operator())
    subscriptions.remove(engine, "mo@example.org", NOW)
    out = io.StringIO()
    assert subscriptions.export_csv(engine, out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["email"], r["status"], r["tags"], r["consent_source"]) for r in rows] == [
        ("lee@example.org", "active", "python", "operator-import"),
        ("mo@example.org", "unsubscribed", "", "operator-import"),
    ]

    other = open_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        subscriptions.import_csv(other, out.getvalue().encode(), confirmed=True, consent=operator())
        assert subscriptions.find(other, "mo@example.org").status == "unsubscribed"
        assert subscriptions.find(other, "lee@example.org").status == "active"
        # An active address the other list says has left is suppressed here too.
        subscriptions.add(other, request("nia@example.org"), confirmed=True, consent=operator())
        subscriptions.import_csv(other, b"email,status\nnia@example.org,complained\n", confirmed=True, consent=operator())
        assert subscriptions.find(other, "nia@example.org").status == "complained"
    finally:
        other.dispose()


def test_search_and_counts(engine):
    subscriptions.import_csv(
        engine, b"email,name\nann@example.org,Ann\nbo@example.org,Bo 100%_sure\ncat@example.net,Cat\n", confirmed=True, consent=operator()
    )
    subscriptions.remove(engine, "cat@example.net", NOW)
    assert subscriptions.search(engine, query="EXAMPLE.ORG")[0] == 2
    # LIKE wildcards in the query are literal.
    total, found = subscriptions.search(engine, query="100%_")
    assert total == 1 and found[0].email == "bo@example.org"
    assert subscriptions.search(engine, query="%")[0] == 1
    assert [s.email for s in subscriptions.search(engine, status="unsubscribed")[1]] == ["cat@example.net"]
    assert [s.email for s in subscriptions.search(engine, limit=1, offset=1)[1]] == ["bo@example.org"]
    assert subscriptions.counts(engine) == {"pending": 0, "active": 2, "unsubscribed": 1, "bounced": 0, "complained": 0}


# --- links -----------------------------------------------------------------------------------------------------


def test_links_carry_purpose_bound_tokens(make_settings):
    settings = make_settings(web={"public_url": "https://news.example.org/"})
    tokens = tokens_for(settings)
    url = unsubscribe_url(settings, tokens, 42, "k3y")
    assert url.startswith("https://news.example.org/unsubscribe/")
    link = tokens.read(Purpose.UNSUBSCRIBE, url.rsplit("/", 1)[1])
    assert (link.subscriber_id, link.key) == (42, "k3y")
    assert confirm_url(settings, tokens, 7, "k3y").startswith("https://news.example.org/confirm/")
    assert preferences_url(settings, tokens, 7, "k3y").startswith("https://news.example.org/preferences/")


# --- rate limits -----------------------------------------------------------------------------------------------


def test_rate_limit_window(engine):
    window = timedelta(hours=1)

    def hit(at: datetime) -> rate_limits.Decision:
        with engine.begin() as connection:
            return rate_limits.hit(connection, "subscribe:client:203.0.113.7", limit=2, window=window, now=at)

    assert [hit(NOW + timedelta(minutes=m)).allowed for m in (0, 1, 2)] == [True, True, False]
    assert hit(NOW + timedelta(minutes=30)).retry_after == 30 * 60
    assert hit(NOW + timedelta(minutes=61)).allowed  # a new window
    with engine.begin() as connection:
        assert rate_limits.prune(connection, older_than=NOW + timedelta(minutes=62)) == 1


def test_rate_limit_counts_agree_across_engines(engine, store_url):
    """Several processes share the counters: two engines, hammering one key from threads, lose no hit."""
    other = create_engine(store_url) if not store_url.startswith("sqlite") else open_engine(store_url)
    allowed = []

    def worker(target):
        for _ in range(15):
            with target.begin() as connection:
                allowed.append(rate_limits.hit(connection, "k", limit=10, window=timedelta(hours=1), now=NOW).allowed)

    threads = [threading.Thread(target=worker, args=(e,)) for e in (engine, other, engine, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.dispose()
    assert len(allowed) == 60 and allowed.count(True) == 10
    with engine.begin() as connection:
        assert rate_limits.hit(connection, "k", limit=10, window=timedelta(hours=1), now=NOW).count == 61

"""Subscriber ids are never reused and every link is bound to its row, also for a store made before that
(migration 0002_web_identity), on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import text

from feedsvc.store import subscribers as store
from feedsvc.store.engine import create_store_engine, upgrade
from feedsvc.tokens import Purpose, Tokens

SECRET = "identity-secret"
NOW = datetime.now(UTC)


def _insert(connection, email: str, created_at: datetime) -> int:
    values = {"email": email, "created_at": created_at}
    connection.execute(
        text(
            "INSERT INTO subscribers (email, email_key, name, status, frequency, tags, created_at, status_reason,"
            " consent_ip, consent_user_agent, consent_source)"
            " VALUES (:email, :email, '', 'active', 'daily', '[]', :created_at, '', '', '', '')"
        ),
        values,
    )
    return connection.execute(text("SELECT id FROM subscribers WHERE email = :email"), values).scalar_one()


def test_a_store_from_before_keeps_its_rows_links_and_stops_reusing_ids(store_url):
    engine = create_store_engine(store_url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as connection:
            first = _insert(connection, "first@example.org", NOW - timedelta(days=30))
            erased = _insert(connection, "erased@example.org", NOW - timedelta(days=20))
            connection.execute(text("DELETE FROM subscribers WHERE id = :id"), {"id": erased})
            # On SQLite before the migration, the next row takes the erased row's id: exactly the problem.
            heir = _insert(connection, "heir@example.org", NOW + timedelta(hours=1))
            connection.execute(
                text(
                    "INSERT INTO editions (key, frequency, period_start, period_end, post_ids, subject, html, text,"
                    " created_at) VALUES ('e', 'daily', :now, :now, '[]', 's', 'h', 't', :now)"
                ),
                {"now": NOW},
            )
            connection.execute(
                text(
                    "INSERT INTO deliveries (key, edition_id, subscriber_id, state, attempts, next_attempt_at,"
                    " last_error, created_at) SELECT 'd', id, :subscriber, 'queued', 0, :now, '', :now FROM editions"
                ),
                {"subscriber": first, "now": NOW},
            )
        # A link mailed before the upgrade: signed with the bare id, as feedsvc did then.
        old_link = URLSafeTimedSerializer(SECRET, salt="feedsvc.unsubscribe").dumps(first)
        erased_link = URLSafeTimedSerializer(SECRET, salt="feedsvc.unsubscribe").dumps(heir)

        upgrade(engine)

        tokens = Tokens(SECRET, 3600)
        with engine.begin() as connection:
            rows = {s.email: s for s in store.search(connection)}
            # The table was rebuilt without touching what refers to it.
            assert connection.execute(text("SELECT count(*) FROM deliveries")).scalar_one() == 1
        assert len({row.link_key for row in rows.values()}) == 2 and all(len(r.link_key) >= 20 for r in rows.values())
        assert all(row.unkeyed_links for row in rows.values())
        # The existing row's old link still opens it.
        assert tokens.read(Purpose.UNSUBSCRIBE, old_link).opens(rows["first@example.org"])
        # A link signed before its row existed was made for someone else (here: the erased subscriber, whose
        # id the heir took on SQLite before the upgrade); it opens nothing.
        assert not tokens.read(Purpose.UNSUBSCRIBE, erased_link).opens(rows["heir@example.org"])

        # From now on an erased id is never handed out again, and new rows only take keyed links.
        with engine.begin() as connection:
            top = max(row.id for row in rows.values())
            connection.execute(text("DELETE FROM subscribers WHERE id = :id"), {"id": top})
            store.insert_if_absent(
                connection, email="next@example.org", email_key="next@example.org", status="active",
                frequency="daily", tags=(), created_at=NOW - timedelta(days=1),
            )
            newcomer = store.find(connection, "next@example.org")
        assert newcomer is not None and newcomer.id > top and not newcomer.unkeyed_links
        bare = URLSafeTimedSerializer(SECRET, salt="feedsvc.unsubscribe").dumps(newcomer.id)
        assert not tokens.read(Purpose.UNSUBSCRIBE, bare).opens(newcomer)
        keyed = tokens.make(Purpose.UNSUBSCRIBE, newcomer.id, newcomer.link_key)
        assert tokens.read(Purpose.UNSUBSCRIBE, keyed).opens(newcomer)
        assert not tokens.read(Purpose.UNSUBSCRIBE, keyed).opens(rows["first@example.org"])
    finally:
        engine.dispose()

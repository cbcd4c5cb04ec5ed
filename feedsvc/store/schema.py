"""The tables. Every change here comes with a migration in `migrations/versions/` (a test compares them).

Times are stored as timezone-aware UTC (`DateTime(timezone=True)`; on SQLite they round-trip as UTC through
`UtcDateTime`).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from feedsvc.vocabulary import DEFAULT_FREQUENCY, INITIAL_STATUS

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Integer primary keys that are 64-bit on PostgreSQL and SQLite's rowid alias on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Delivery states: queued -> sending -> sent | retry (-> sending ...) | failed | bounced
DELIVERY_STATES = ("queued", "sending", "sent", "retry", "failed", "bounced")
# What a delivery carries: an edition to an active subscriber, or the double opt-in mail to a pending one.
DELIVERY_KINDS = ("digest", "confirmation")


def new_link_key() -> str:
    return secrets.token_urlsafe(16)


subscribers = Table(
    "subscribers",
    metadata,
    # Never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL): an erased subscriber's id never names
    # someone else.
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False),
    # Lower-cased address: the case-insensitive unique key.
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    # One of vocabulary.STATUSES and vocabulary.FREQUENCIES.
    Column("status", String(16), nullable=False, default=INITIAL_STATUS),
    Column("frequency", String(16), nullable=False, default=DEFAULT_FREQUENCY),
    # Tag slugs; empty list = every post.
    Column("tags", JSON, nullable=False, default=list),
    Column("created_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime),
    Column("unsubscribed_at", UtcDateTime),
    # Why the subscriber left or was suppressed (bounce reply, complaint, operator note).
    Column("status_reason", Text, nullable=False, default=""),
    # Consent record (GDPR art. 7(1)): when, from where and through which form the address was given.
    Column("consent_at", UtcDateTime),
    Column("consent_ip", String(64), nullable=False, default=""),
    Column("consent_user_agent", String(512), nullable=False, default=""),
    Column("consent_source", String(64), nullable=False, default=""),
    # Every signed link (confirm, unsubscribe, preferences) carries this key and is checked against it, so a
    # link dies with its row.
    Column("link_key", String(32), nullable=False, default=new_link_key),
    # Rows from before links carried a key (migration 0002): their older links stay valid when signed after
    # the row was created.
    Column("unkeyed_links", Boolean, nullable=False, default=False),
    Index(None, "status", "frequency"),
    sqlite_autoincrement=True,
)

# A post is announced once, when first seen published; the row is the proof across restarts and processes.
announcements = Table(
    "announcements",
    metadata,
    Column("post_id", String(512), primary_key=True),
    Column("slug", String(512), nullable=False),
    Column("title", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("tags", JSON, nullable=False, default=list),
    Column("published_at", UtcDateTime, nullable=False),
    # When the post counts as news: its date, moved up past periods already handed out (digests' windows).
    Column("announced_at", UtcDateTime, nullable=False),
    # When feedsvc first saw it published: who gets it (those confirmed by then), whatever date it carries.
    Column("first_seen_at", UtcDateTime, nullable=False),
    # Posts first seen in the same scan share a batch: one instant mail for all of them.
    Column("batch", String(64), nullable=False),
    # False for the archive found on the first run: recorded, never mailed (unless --include-archive).
    Column("mailable", Integer, nullable=False, default=1),
    Index(None, "announced_at"),
    Index(None, "batch"),
)

# One rendered mail (subject + HTML + text, personalised per subscriber at send time) for one set of posts.
editions = Table(
    "editions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # e.g. "instant:<batch>:<posts-hash>", "daily:2026-11-23:<posts-hash>": creating an edition twice is a no-op.
    Column("key", String(255), nullable=False, unique=True),
    Column("frequency", String(16), nullable=False),
    Column("period_start", UtcDateTime, nullable=False),
    Column("period_end", UtcDateTime, nullable=False),
    Column("post_ids", JSON, nullable=False),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "frequency", "period_end"),
)

# The stretch of announcements handed to one frequency's subscribers. Written (with its window fixed) before any
# of its deliveries, completed after the last one: a restart redoes an incomplete period with the same window, and
# the next period starts where the last one ended. The single "archive" row marks the first run: posts announced
# then were the existing blog, not news.
digest_periods = Table(
    "digest_periods",
    metadata,
    # "archive", "instant:<batch>", "daily:2026-11-23T08:00:00", "weekly:…" (local time of the period's end)
    Column("key", String(255), primary_key=True),
    Column("frequency", String(16), nullable=False),
    Column("period_start", UtcDateTime, nullable=False),
    Column("period_end", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
    Index(None, "frequency", "period_end"),
)

# One message to send: edition x subscriber, or a subscriber's confirmation mail (no edition; rendered at send
# time). `key` makes a subscriber's mail for a period unique.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, unique=True),
    Column("kind", String(16), nullable=False, default="digest", server_default="digest"),
    Column("edition_id", Id, ForeignKey("editions.id", ondelete="CASCADE"), nullable=True),
    Column("subscriber_id", Id, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False, default="queued"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    # Lease: a process that claims a delivery owns it until lease_until; past that, another may take it.
    Column("claimed_by", String(128)),
    Column("lease_until", UtcDateTime),
    Column("message_id", String(255)),
    Column("last_error", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    UniqueConstraint("edition_id", "subscriber_id"),
    Index(None, "state", "next_attempt_at"),
    Index(None, "subscriber_id"),
)

# Named leases: the scheduler leader, the single-writer guard on SQLite.
leases = Table(
    "leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

# Rate-limit counters for the subscribe form, shared by every process.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("window_start", UtcDateTime, nullable=False),
    Column("count", Integer, nullable=False, default=0),
)

# What mail systems reported (`vocabulary.MAIL_EVENT_KINDS`). `event_key` names the report (message hash, provider
# event id): a report read twice is recorded once.
mail_events = Table(
    "mail_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_key", String(255), nullable=False, unique=True),
    Column("subscriber_id", Id, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    # imap, maildir, smtp, ses, postmark, mailgun, sendgrid, operator
    Column("source", String(32), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    # The mail it is about, when the report names it (VERP); no foreign keys: the history outlives editions.
    Column("delivery_id", Id),
    Column("edition_id", Id),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "subscriber_id", "kind", "created_at"),
    Index(None, "created_at"),
)

# --- the fediverse (ActivityPub): followers, what was published to them, and the signed POSTs to their inboxes ---

# An account on another server that follows the blog. `delivery_inbox` is its server's shared inbox when it has one
# (one POST per server), else its own inbox.
fediverse_followers = Table(
    "fediverse_followers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("actor", String(1024), nullable=False, unique=True),
    Column("inbox", String(1024), nullable=False),
    Column("delivery_inbox", String(1024), nullable=False),
    Column("host", String(255), nullable=False),
    # The Follow activity's id, echoed in the Accept.
    Column("follow_id", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "host"),
    Index(None, "delivery_inbox"),
)

# Refused actors (an actor URL) and servers (a host name): their requests are refused, they are never delivered to.
fediverse_blocks = Table(
    "fediverse_blocks",
    metadata,
    Column("pattern", String(1024), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
)

# A post as last published to the fediverse: the object served at its id, and the digest that tells an edit.
fediverse_objects = Table(
    "fediverse_objects",
    metadata,
    Column("post_id", String(512), primary_key=True),
    Column("digest", String(64), nullable=False),
    # Size and mtime of the post's file when the object was made: an unchanged file is not rendered again.
    Column("source_version", String(64), nullable=False, default=""),
    Column("object", JSON, nullable=False),
    Column("published_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime),
    # Set when the post was unpublished or deleted: the object is served as a Tombstone.
    Column("deleted_at", UtcDateTime),
    Index(None, "published_at"),
)

# Facts about the fediverse side kept across restarts, e.g. "started": when posts were first federated (those
# already published then are the archive: served and listed, never pushed).
fediverse_state = Table(
    "fediverse_state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# One activity (Create, Update, Delete, Accept) as sent: the body every delivery of it signs and POSTs.
fediverse_activities = Table(
    "fediverse_activities",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("activity_id", String(1024), nullable=False, unique=True),
    Column("body", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# One signed POST of an activity to one inbox, with the same states, claims and leases as `deliveries`.
fediverse_deliveries = Table(
    "fediverse_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("activity_id", Id, ForeignKey("fediverse_activities.id", ondelete="CASCADE"), nullable=False),
    Column("inbox", String(1024), nullable=False),
    Column("state", String(16), nullable=False, default="queued"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_by", String(128)),
    Column("lease_until", UtcDateTime),
    Column("last_error", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime),
    UniqueConstraint("activity_id", "inbox"),
    Index(None, "state", "next_attempt_at"),
)

# --- the dashboard (/admin/) ---------------------------------------------------------------------------------

# People who may sign in to the dashboard; `feedsvc admin password` creates or updates one.
admin_users = Table(
    "admin_users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    # argon2id, in its PHC string form (parameters and salt included).
    Column("password_hash", String(255), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("password_changed_at", UtcDateTime, nullable=False),
    # TOTP second factor (RFC 6238), when turned on: the shared secret (base32) and the last time step used,
    # so no code works twice.
    Column("totp_secret", String(64)),
    Column("totp_last_step", BigInteger),
)

# One-time recovery codes for when the authenticator is lost; the SHA-256 of each (they are random, 60 bits).
admin_recovery_codes = Table(
    "admin_recovery_codes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("admin_users.id", ondelete="CASCADE"), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("used_at", UtcDateTime),
    Index(None, "user_id", "code_hash"),
)

# Signed-in browsers. `id` is the SHA-256 of the cookie's value: a copy of the store opens no session.
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", Id, ForeignKey("admin_users.id", ondelete="CASCADE"), nullable=False),
    # The session's CSRF token, sent back in every form.
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("ip", String(64), nullable=False, default=""),
    Column("user_agent", String(512), nullable=False, default=""),
    Index(None, "expires_at"),
)

# Every admin action: who, when, what, from where. No foreign key: the log outlives users and subscribers.
admin_audit = Table(
    "admin_audit",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("username", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(400), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    Column("ip", String(64), nullable=False, default=""),
)

# Feed readers, aggregated as the feeds are served (never a row per request). Hosted readers (Feedly,
# Inoreader, ...) fetch once for all their users and say how many in their User-Agent: the latest count per
# day, feed, reader and the reader's own feed id.
feed_reader_counts = Table(
    "feed_reader_counts",
    metadata,
    Column("day", String(10), primary_key=True),  # YYYY-MM-DD, UTC
    Column("feed", String(300), primary_key=True),  # the path served, e.g. /rss.xml
    Column("reader", String(64), primary_key=True),
    Column("reader_feed_id", String(128), primary_key=True),  # "" when the reader names none
    Column("subscribers", Integer, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
)

# Every other client that fetched a feed on a day, once: a keyed hash of its address and User-Agent.
feed_fetchers = Table(
    "feed_fetchers",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("feed", String(300), primary_key=True),
    Column("client", String(32), primary_key=True),
)

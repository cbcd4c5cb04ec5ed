"""the dashboard: admin users (TOTP, recovery codes), their sessions, the audit log, feed-reader counts

Revision ID: 0006_dashboard
Revises: 0005_fediverse
"""

import sqlalchemy as sa
from alembic import op

import feedsvc.store.schema

revision = "0006_dashboard"
down_revision = "0005_fediverse"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_users")),
        sa.UniqueConstraint("username", name=op.f("uq_admin_users_username")),
    )
    op.create_table(
        "admin_recovery_codes",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["admin_users.id"], name=op.f("fk_admin_recovery_codes_user_id_admin_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_recovery_codes")),
    )
    with op.batch_alter_table("admin_recovery_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_admin_recovery_codes_user_id_code_hash"), ["user_id", "code_hash"], unique=False
        )
    op.create_table(
        "admin_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["admin_users.id"], name=op.f("fk_admin_sessions_user_id_admin_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_sessions")),
    )
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_admin_sessions_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "admin_audit",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_audit")),
    )
    op.create_table(
        "feed_reader_counts",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("feed", sa.String(length=300), nullable=False),
        sa.Column("reader", sa.String(length=64), nullable=False),
        sa.Column("reader_feed_id", sa.String(length=128), nullable=False),
        sa.Column("subscribers", sa.Integer(), nullable=False),
        sa.Column("seen_at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day", "feed", "reader", "reader_feed_id", name=op.f("pk_feed_reader_counts")),
    )
    op.create_table(
        "feed_fetchers",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("feed", sa.String(length=300), nullable=False),
        sa.Column("client", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("day", "feed", "client", name=op.f("pk_feed_fetchers")),
    )


def downgrade() -> None:
    op.drop_table("feed_fetchers")
    op.drop_table("feed_reader_counts")
    op.drop_table("admin_audit")
    with op.batch_alter_table("admin_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_sessions_expires_at"))
    op.drop_table("admin_sessions")
    with op.batch_alter_table("admin_recovery_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_admin_recovery_codes_user_id_code_hash"))
    op.drop_table("admin_recovery_codes")
    op.drop_table("admin_users")

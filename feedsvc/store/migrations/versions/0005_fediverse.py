"""the fediverse: followers, blocks, published objects, activities and their deliveries

Revision ID: 0005_fediverse
Revises: 0004_queue_hardening
"""

import sqlalchemy as sa
from alembic import op

import feedsvc.store.schema

revision = "0005_fediverse"
down_revision = "0004_queue_hardening"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = feedsvc.store.schema.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "fediverse_followers",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=1024), nullable=False),
        sa.Column("inbox", sa.String(length=1024), nullable=False),
        sa.Column("delivery_inbox", sa.String(length=1024), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("follow_id", sa.Text(), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fediverse_followers")),
        sa.UniqueConstraint("actor", name=op.f("uq_fediverse_followers_actor")),
    )
    with op.batch_alter_table("fediverse_followers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fediverse_followers_host"), ["host"], unique=False)
        batch_op.create_index(batch_op.f("ix_fediverse_followers_delivery_inbox"), ["delivery_inbox"], unique=False)
    op.create_table(
        "fediverse_blocks",
        sa.Column("pattern", sa.String(length=1024), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("pattern", name=op.f("pk_fediverse_blocks")),
    )
    op.create_table(
        "fediverse_objects",
        sa.Column("post_id", sa.String(length=512), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.String(length=64), nullable=False),
        sa.Column("object", sa.JSON(), nullable=False),
        sa.Column("published_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=True),
        sa.Column("deleted_at", Time, nullable=True),
        sa.PrimaryKeyConstraint("post_id", name=op.f("pk_fediverse_objects")),
    )
    with op.batch_alter_table("fediverse_objects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fediverse_objects_published_at"), ["published_at"], unique=False)
    op.create_table(
        "fediverse_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_fediverse_state")),
    )
    op.create_table(
        "fediverse_activities",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("activity_id", sa.String(length=1024), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fediverse_activities")),
        sa.UniqueConstraint("activity_id", name=op.f("uq_fediverse_activities_activity_id")),
    )
    op.create_table(
        "fediverse_deliveries",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("activity_id", Id, nullable=False),
        sa.Column("inbox", sa.String(length=1024), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", Time, nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("lease_until", Time, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("sent_at", Time, nullable=True),
        sa.ForeignKeyConstraint(
            ["activity_id"], ["fediverse_activities.id"],
            name=op.f("fk_fediverse_deliveries_activity_id_fediverse_activities"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fediverse_deliveries")),
        sa.UniqueConstraint("activity_id", "inbox", name=op.f("uq_fediverse_deliveries_activity_id_inbox")),
    )
    with op.batch_alter_table("fediverse_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_fediverse_deliveries_state_next_attempt_at"), ["state", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("fediverse_deliveries")
    op.drop_table("fediverse_activities")
    op.drop_table("fediverse_state")
    op.drop_table("fediverse_objects")
    op.drop_table("fediverse_blocks")
    op.drop_table("fediverse_followers")

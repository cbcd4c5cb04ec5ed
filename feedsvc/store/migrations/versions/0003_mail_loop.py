"""mail events: bounces, complaints and mailto unsubscribes reported by mail systems

Revision ID: 0003_mail_loop
Revises: 0002_web_identity
"""

import sqlalchemy as sa
from alembic import op

import feedsvc.store.schema

revision = "0003_mail_loop"
down_revision = "0002_web_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_key", sa.String(length=255), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("edition_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name=op.f("fk_mail_events_subscriber_id_subscribers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_events")),
        sa.UniqueConstraint("event_key", name=op.f("uq_mail_events_event_key")),
    )
    with op.batch_alter_table("mail_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_events_created_at"), ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_mail_events_subscriber_id_kind_created_at"), ["subscriber_id", "kind", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("mail_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mail_events_subscriber_id_kind_created_at"))
        batch_op.drop_index(batch_op.f("ix_mail_events_created_at"))
    op.drop_table("mail_events")

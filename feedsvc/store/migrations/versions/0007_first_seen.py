"""announcements.first_seen_at: when a post was first seen published, which decides who gets it

Rows from before this column take their announcement time, the best the store knew.

Revision ID: 0007_first_seen
Revises: 0006_dashboard
"""

import sqlalchemy as sa
from alembic import op

import feedsvc.store.schema

revision = "0007_first_seen"
down_revision = "0006_dashboard"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("announcements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_seen_at", feedsvc.store.schema.UtcDateTime(timezone=True), nullable=True))
    op.execute("UPDATE announcements SET first_seen_at = announced_at")
    with op.batch_alter_table("announcements", schema=None) as batch_op:
        batch_op.alter_column(
            "first_seen_at", existing_type=feedsvc.store.schema.UtcDateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("announcements", schema=None) as batch_op:
        batch_op.drop_column("first_seen_at")

"""confirmation mails through the delivery queue: deliveries.kind, edition_id optional

Revision ID: 0004_queue_hardening
Revises: 0003_mail_loop
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_queue_hardening"
down_revision = "0003_mail_loop"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="digest"))
        batch_op.alter_column(
            "edition_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        )


def downgrade() -> None:
    op.execute("DELETE FROM deliveries WHERE kind = 'confirmation'")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column(
            "edition_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        )
        batch_op.drop_column("kind")

"""web identity: never-reused subscriber ids and a per-subscriber link key

Revision ID: 0002_web_identity
Revises: 0001
Create Date: 2026-12-05 16:00:00

SQLite reuses the largest rowid after a delete unless the table says AUTOINCREMENT, so the subscribers table is
rebuilt with it (PostgreSQL's sequence never goes back). Every row gets its own random link key; the rows that
exist now also keep accepting the links already mailed to them (`unkeyed_links`), which carry no key.
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0002_web_identity"
down_revision = "0001"
branch_labels = None
depends_on = None

_SQLITE_TABLE = {"sqlite_autoincrement": True}


def upgrade() -> None:
    connection = op.get_bind()
    # On SQLite the table is rebuilt even though adding columns alone would not need it: AUTOINCREMENT is part
    # of the table's definition. PostgreSQL just adds the columns.
    sqlite = connection.dialect.name == "sqlite"
    with op.batch_alter_table("subscribers", recreate="always" if sqlite else "auto", table_kwargs=_SQLITE_TABLE) as batch_op:
        batch_op.add_column(sa.Column("link_key", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("unkeyed_links", sa.Boolean(), nullable=False, server_default=sa.true()))
    subscribers = sa.table("subscribers", sa.column("id", sa.Integer), sa.column("link_key", sa.String))
    ids = connection.execute(sa.select(subscribers.c.id)).scalars().all()
    update = sa.update(subscribers).where(subscribers.c.id == sa.bindparam("row_id")).values(link_key=sa.bindparam("key"))
    for start in range(0, len(ids), 1000):
        connection.execute(update, [{"row_id": i, "key": secrets.token_urlsafe(16)} for i in ids[start : start + 1000]])
    with op.batch_alter_table("subscribers", table_kwargs=_SQLITE_TABLE) as batch_op:
        batch_op.alter_column("link_key", existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column("unkeyed_links", existing_type=sa.Boolean(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("unkeyed_links")
        batch_op.drop_column("link_key")

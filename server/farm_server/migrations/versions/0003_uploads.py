"""Uploads to RefStack: the cloud's cpid and the upload target on each test, and a row per
upload.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("test_id", sa.String(64), sa.ForeignKey("tests.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("signed_by", sa.Text()),
        sa.Column("result_id", sa.String(64)),
        sa.Column("result_url", sa.Text()),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("next_at", TZ),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )
    with op.batch_alter_table("tests") as batch:
        batch.add_column(sa.Column("cpid", sa.String(64)))
        batch.add_column(sa.Column("upload_to", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.drop_column("upload_to")
        batch.drop_column("cpid")
    op.drop_table("uploads")

"""Uploaded results (per-test rows and the subunit stream) and the cancel job's handle.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("test_id", sa.String(64), sa.ForeignKey("tests.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("duration_s", sa.Float()),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_table(
        "result_files",
        sa.Column("test_id", sa.String(64), sa.ForeignKey("tests.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("uploaded_at", TZ, nullable=False),
    )
    with op.batch_alter_table("tests") as batch:
        batch.add_column(sa.Column("cancel_server", sa.String(128)))
        batch.add_column(sa.Column("cancel_handle", sa.String(128)))


def downgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.drop_column("cancel_handle")
        batch.drop_column("cancel_server")
    op.drop_table("result_files")
    op.drop_table("results")

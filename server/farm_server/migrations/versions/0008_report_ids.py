"""Idempotent delivery from the workers' outboxes: a report's id, unique per test, and
the digest of a test's subunit file, so that what a worker delivers again is answered
`duplicate` and recorded once.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("report_id", sa.String(128)))
        batch.create_index("ix_reports_report_id", ["test_id", "report_id"], unique=True)
    with op.batch_alter_table("result_files") as batch:
        batch.add_column(sa.Column("sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("result_files") as batch:
        batch.drop_column("sha256")
    with op.batch_alter_table("reports") as batch:
        batch.drop_index("ix_reports_report_id")
        batch.drop_column("report_id")

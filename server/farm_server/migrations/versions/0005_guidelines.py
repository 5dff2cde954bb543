"""Guideline runs: which interop guideline, target and capability statuses a test runs
(listed and filtered by), the guideline block its job carries, and what the worker
reported at its end: the test list's matching and the compliance report.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.add_column(sa.Column("guideline", sa.String(64)))
        batch.add_column(sa.Column("guideline_target", sa.String(64)))
        batch.add_column(sa.Column("guideline_types", sa.String(128)))
        batch.add_column(sa.Column("guideline_json", sa.Text()))
        batch.add_column(sa.Column("selection_json", sa.Text()))
        batch.add_column(sa.Column("compliance_json", sa.Text()))
        batch.create_index("ix_tests_guideline", ["guideline"])


def downgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.drop_index("ix_tests_guideline")
        for column in ("compliance_json", "selection_json", "guideline_json",
                       "guideline_types", "guideline_target", "guideline"):
            batch.drop_column(column)

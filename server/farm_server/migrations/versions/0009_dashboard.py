"""The dashboard: sign-in sessions, a run's origin (run again, run the failed tests again)
and what it takes to run it again without its secrets, and the indexes its pages use
(runs newest first, by cloud; a test's history by name).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    with op.batch_alter_table("tests") as batch:
        batch.add_column(sa.Column("origin_id", sa.String(64)))
        batch.add_column(sa.Column("rerun_json", sa.Text()))
        batch.create_index("ix_tests_created_at", ["created_at"])
        batch.create_index("ix_tests_cpid", ["cpid"])
    with op.batch_alter_table("results") as batch:
        batch.create_index("ix_results_name", ["name"])


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_index("ix_results_name")
    with op.batch_alter_table("tests") as batch:
        batch.drop_index("ix_tests_cpid")
        batch.drop_index("ix_tests_created_at")
        batch.drop_column("rerun_json")
        batch.drop_column("origin_id")
    op.drop_table("sessions")

"""The first schema: tests, their report history, workers and users.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("tempest_version", sa.String(32), nullable=False, index=True),
        sa.Column("conf_json", sa.Text()),
        sa.Column("tests_json", sa.Text()),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("timeout_s", sa.Integer()),
        sa.Column("submitted_by", sa.String(64)),
        sa.Column("worker", sa.String(64)),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("progress_done", sa.Integer()),
        sa.Column("progress_total", sa.Integer()),
        sa.Column("progress_current", sa.Text()),
        sa.Column("passed", sa.Integer()),
        sa.Column("failed", sa.Integer()),
        sa.Column("skipped", sa.Integer()),
        sa.Column("total", sa.Integer()),
        sa.Column("gearman_server", sa.String(128)),
        sa.Column("gearman_handle", sa.String(128)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False, index=True),
        sa.Column("started_at", TZ),
        sa.Column("finished_at", TZ),
        sa.Column("last_report_at", TZ),
    )
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("test_id", sa.String(64), sa.ForeignKey("tests.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(64)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("progress_json", sa.Text()),
        sa.Column("payload_json", sa.Text()),
        sa.Column("applied", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("allow_json", sa.Text(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TZ, nullable=False),
    )


def downgrade() -> None:
    for table in ("users", "workers", "reports", "tests"):
        op.drop_table(table)

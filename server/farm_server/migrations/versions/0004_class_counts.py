"""Class-level counts: setUpClass/tearDownClass fixtures that failed or skipped, counted
apart from the tests (whose `not run` they explain).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.add_column(sa.Column("classes_failed", sa.Integer()))
        batch.add_column(sa.Column("classes_skipped", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.drop_column("classes_skipped")
        batch.drop_column("classes_failed")

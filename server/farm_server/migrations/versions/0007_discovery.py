"""A test's conf discovery options, and the tempest.conf its run used (its secrets removed
by the worker and again here), kept with the run: "why was this skipped" starts there.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.add_column(sa.Column("discover_json", sa.Text()))
        batch.add_column(sa.Column("tempest_conf_json", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.drop_column("tempest_conf_json")
        batch.drop_column("discover_json")

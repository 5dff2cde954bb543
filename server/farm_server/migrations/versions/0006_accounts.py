"""A test's pre-provisioned accounts (Tempest's accounts.yaml, passwords included): kept,
like its conf, only until the test ends, and given to the worker that holds it.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.add_column(sa.Column("accounts_json", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("tests") as batch:
        batch.drop_column("accounts_json")

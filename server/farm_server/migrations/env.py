"""Alembic environment: the engine comes from `farm-server init-db` (farm_server.store)."""

from __future__ import annotations

from alembic import context

from farm_server.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=True, compare_type=True)
with context.begin_transaction():
    context.run_migrations()

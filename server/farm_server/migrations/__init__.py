"""Alembic migrations of the status server's database (run by `farm-server init-db`)."""

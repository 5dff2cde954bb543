"""refstack-farm's status server: the RefStack-compatible endpoints workers report to, the
v1 API for people and tools, its store (SQLAlchemy, Alembic migrations), the monitor that
reconciles the store with gearmand and the uploader to RefStack. `farm-server` runs it."""

__version__ = "0.1.0"

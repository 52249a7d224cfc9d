"""Alembic migrations of the store; run them with ``workers.store.migrate.upgrade``."""

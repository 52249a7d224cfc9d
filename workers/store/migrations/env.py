"""Alembic environment: runs on the connection ``workers.store.migrate`` hands over.

There is no alembic.ini: ``workers.store.migrate.upgrade(engine)`` builds the Config,
takes the migration lock, opens the transaction and passes its connection in
``config.attributes["connection"]``. Offline (SQL script) mode is not supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from schemas.tables import metadata


def run_migrations_online(connection: Connection) -> None:
    """Run the pending revisions inside the caller's transaction."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(_connection, Connection):
    raise RuntimeError("run the store's migrations with workers.store.migrate.upgrade(engine)")
run_migrations_online(_connection)

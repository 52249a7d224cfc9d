"""Schema migrations (Alembic), run programmatically: ``upgrade(engine)``.

The revisions live in the installed package (``workers/store/migrations``); there is no
alembic.ini. ``upgrade`` is idempotent and safe when several processes call it at once:
on SQLite they queue on a ``fcntl`` lock file next to the database file (and the migration
runs in one ``BEGIN IMMEDIATE`` transaction); on PostgreSQL the migration transaction first
takes a transaction-level advisory lock, so the second process waits, then finds the schema
at head and does nothing.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from schemas.errors import StoreError
from workers.store.engine import Store

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only to migrate or to list revisions: opening a store that is at
# HEAD_REVISION (every command but the first after an upgrade) reads one row instead.

__all__ = [
    "HEAD_REVISION",
    "MIGRATION_LOCK_KEY",
    "alembic_config",
    "check_migrated",
    "current_revision",
    "head_revision",
    "upgrade",
]

log = logging.getLogger(__name__)

SCRIPT_LOCATION = "workers.store:migrations"
HEAD_REVISION = "0006"  # the newest file in migrations/versions (a test checks it)
# pg_advisory_xact_lock key of the migration: any fixed bigint (here b"qwc-migr" as int).
MIGRATION_LOCK_KEY = int.from_bytes(b"qwc-migr", "big") & 0x7FFF_FFFF_FFFF_FFFF


def alembic_config() -> Config:
    """An Alembic Config pointing at the store's revisions inside the installed package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    return HEAD_REVISION


def script_head_revision() -> str:
    """The newest revision of the migration scripts, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise StoreError("the store has no migration revisions")
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's revision (its ``alembic_version`` row), None when it was never
    migrated.

    Raises ``StoreError`` when the database cannot be reached.
    """
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            return rows[0] if len(rows) == 1 else None
    except DBAPIError as exc:
        raise StoreError(f"cannot reach database at {_url(engine)}: {_reason(exc)}") from exc


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the head; does nothing when already
    there).

    Raises ``StoreError`` when the database cannot be reached or the migration fails.
    """
    from alembic import command

    try:
        with _sqlite_file_lock(engine), Store(engine).begin(foreign_keys=False) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    except DBAPIError as exc:
        raise StoreError(f"cannot migrate database at {_url(engine)}: {_reason(exc)}") from exc
    except OSError as exc:
        raise StoreError(f"cannot lock database at {_url(engine)} to migrate it: {exc}") from exc
    log.info("store: database %s upgraded to %s", _url(engine), revision)


def check_migrated(engine: Engine) -> None:
    """Raise ``StoreError`` unless the database is at the head revision (or unreachable)."""
    if current_revision(engine) != head_revision():
        raise StoreError(
            f"database at {_url(engine)} is not migrated: run `qwc db upgrade`",
        )


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``<db file>.migrate.lock`` (SQLite files only)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(f"{database}.migrate.lock")
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _reason(exc: DBAPIError) -> str:
    """First line of the driver's message (psycopg adds hints on further lines)."""
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__

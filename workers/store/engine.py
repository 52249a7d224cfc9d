"""Engines for the store: embedded SQLite or PostgreSQL (psycopg 3), and the ``Store`` handle.

SQLite is tuned for several processes sharing one file: WAL journal, foreign keys on,
a busy timeout, and SQLAlchemy (not the sqlite3 driver) emits ``BEGIN`` — so SELECTs run
inside the transaction too, and write transactions (``Store.begin()``) start with
``BEGIN IMMEDIATE``: they take the write lock up front and wait for it (busy timeout)
instead of failing half-way with "database is locked" when two writers race. The threads
of one process take turns on a lock of their ``Store`` first: SQLite's busy handler has a
waiting writer sleep 1, 2, 5, 10 ms… between tries, where the lock hands over at once (a
member's threads write many small transactions; its pool ran 10-20 % faster so).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from schemas.errors import StoreError

__all__ = [
    "DB_CONNECT_TIMEOUT_S",
    "SQLITE_BUSY_TIMEOUT_MS",
    "Store",
    "create_store_engine",
    "default_sqlite_url",
    "masked_url",
]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 5000
DB_CONNECT_TIMEOUT_S = 5  # a server that does not answer fails a connect instead of hanging
SQLITE_FILE_NAME = "qwc.db"
# Execution option set by Store.begin(): the SQLite "begin" hook then emits BEGIN IMMEDIATE.
_WRITE_OPTION = "qwc_write"


def default_sqlite_url(home_dir: Path) -> str:
    """URL of the embedded SQLite database ``home_dir/qwc.db``; creates ``home_dir``.

    Raises ``OSError`` when the directory cannot be created.
    """
    home_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home_dir / SQLITE_FILE_NAME).resolve()}"


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to print or log), even when
    ``url`` is not a valid SQLAlchemy URL."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def create_store_engine(
    url: str,
    *,
    connect_timeout_s: int = DB_CONNECT_TIMEOUT_S,
    idle_in_transaction_timeout_s: float | None = None,
) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    A PostgreSQL connect gives up after ``connect_timeout_s`` (unless the URL sets its own
    ``connect_timeout``), so an unreachable database surfaces as an error (a 503, a retried
    loop) instead of a hang. With ``idle_in_transaction_timeout_s``, PostgreSQL ends a
    session of this engine that stays idle inside a transaction that long (its
    ``idle_in_transaction_session_timeout``, unless the URL sets ``options``): a process
    frozen (SIGSTOP, a VM paused) in the middle of a transaction then releases its row
    locks, instead of holding up a takeover of its jobs until it wakes. Raises
    ``sqlalchemy.exc.ArgumentError`` for a malformed URL and
    ``sqlalchemy.exc.NoSuchModuleError`` for an unknown dialect; nothing connects yet.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            if "connect_timeout" not in parsed.query:
                connect_args["connect_timeout"] = connect_timeout_s
            if idle_in_transaction_timeout_s is not None and "options" not in parsed.query:
                ms = max(1, round(idle_in_transaction_timeout_s * 1000))
                connect_args["options"] = f"-c idle_in_transaction_session_timeout={ms}"
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 driver (see _sqlite_on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragma(conn: Connection, pragma: str) -> None:
    """Run ``PRAGMA <pragma>`` on the driver's connection, outside any transaction."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _check_foreign_keys(conn: Connection) -> None:
    violation = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
    if violation is not None:
        table, rowid, parent, _ = violation
        raise StoreError(f"foreign key violation: {table} row {rowid} refers to no {parent}")


class Store:
    """The store's engine and URL. Close what you open: ``Store.close()``.

    ``begin()`` yields a connection in a write transaction (committed on success, rolled
    back on error); ``connect()`` yields a connection for reads.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._write_turn: AbstractContextManager[object] = (
            threading.RLock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    @property
    def url(self) -> str:
        """The database URL with its password masked."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @contextmanager
    def begin(self, *, foreign_keys: bool = True) -> Iterator[Connection]:
        """A connection in a write transaction (``BEGIN IMMEDIATE`` on SQLite, after the
        other threads' write transactions on this ``Store``).

        ``foreign_keys=False`` (migrations) turns SQLite's foreign key enforcement off for
        this transaction, as SQLite's procedure for altering a table that others refer to
        asks (a batch migration drops and re-creates it), checks every foreign key before
        the commit (``StoreError`` naming the first violation) and turns enforcement back
        on. Other databases ignore it.
        """
        with self._write_turn, self.engine.connect() as conn:
            sqlite_fk_off = not foreign_keys and conn.dialect.name == "sqlite"
            if sqlite_fk_off:
                _sqlite_pragma(conn, "foreign_keys = OFF")  # a no-op inside a transaction
            try:
                conn.execution_options(**{_WRITE_OPTION: True})
                with conn.begin():
                    yield conn
                    if sqlite_fk_off:
                        _check_foreign_keys(conn)
            finally:
                if sqlite_fk_off:
                    _sqlite_pragma(conn, "foreign_keys = ON")

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads; its implicit transaction is rolled back on exit."""
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def close(self) -> None:
        """Same as ``dispose()``."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

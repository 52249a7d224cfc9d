"""What every store function accepts: a ``Store``, an ``Engine`` or a ``Connection``.

A ``Connection`` runs the statement in the caller's transaction (the caller commits), so
several store functions can share one transaction; a ``Store`` or ``Engine`` gets a
transaction of its own for writes (:func:`writing`; a single statement on PostgreSQL runs
in autocommit instead: :func:`one_statement`) and a fresh connection for reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import ColumnElement, Connection, Engine, literal_column

from workers.store.engine import Store

__all__ = ["Db", "by_ids_only", "dialect_of", "one_statement", "reading", "writing"]

Db = Store | Engine | Connection


@contextmanager
def writing(db: Db) -> Iterator[Connection]:
    """A connection in a write transaction: the caller's, or a new one committed on exit."""
    if isinstance(db, Connection):
        yield db
        return
    store = db if isinstance(db, Store) else Store(db)
    with store.begin() as conn:
        yield conn


def dialect_of(db: Db) -> str:
    """``"sqlite"`` or ``"postgresql"``."""
    return db.dialect if isinstance(db, Store) else db.dialect.name


@contextmanager
def one_statement(db: Db) -> Iterator[Connection]:
    """A connection for ONE writing statement: the caller's (in its transaction), or on
    PostgreSQL a connection in autocommit — one statement is a transaction of its own, and
    the BEGIN and COMMIT round trips around it are saved (the pool's start path pays them
    for every batch) — else a write transaction (SQLite: ``BEGIN IMMEDIATE``, after the
    other threads' writes). Never run a second statement in it."""
    if isinstance(db, Connection):
        yield db
        return
    if dialect_of(db) != "postgresql":
        with writing(db) as conn:
            yield conn
        return
    engine = db.engine if isinstance(db, Store) else db
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def reading(db: Db) -> Iterator[Connection]:
    """A connection for reads: the caller's, or a fresh one closed on exit."""
    if isinstance(db, Connection):
        yield db
        return
    engine = db.engine if isinstance(db, Store) else db
    with engine.connect() as conn:
        yield conn


def by_ids_only(column: ColumnElement[str]) -> ColumnElement[str]:
    """``column`` as an expression no index serves (``column || ''``), for the other terms
    of a statement that names its rows by primary key (``id IN (…)``): the planner then
    looks up those few ids, never the index of, say, a member's ``scheduled`` executions
    (SQLite, which keeps no statistics, preferred it, and scanned a member's whole backlog
    for every batch of five)."""
    return column.concat(literal_column("''"))

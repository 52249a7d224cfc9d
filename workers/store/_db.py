"""What every store function accepts: a ``Store``, an ``Engine`` or a ``Connection``.

A ``Connection`` runs the statement in the caller's transaction (the caller commits), so
several store functions can share one transaction; a ``Store`` or ``Engine`` gets a
transaction of its own for writes and a fresh connection for reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from workers.store.engine import Store

__all__ = ["Db", "reading", "writing"]

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


@contextmanager
def reading(db: Db) -> Iterator[Connection]:
    """A connection for reads: the caller's, or a fresh one closed on exit."""
    if isinstance(db, Connection):
        yield db
        return
    engine = db.engine if isinstance(db, Store) else db
    with engine.connect() as conn:
        yield conn

"""The manager's connections: one Redis client and one store per app, opened on first use.

Opening lazily lets ``qwc manager`` start while Redis or the database is down (calls
answer 503 until they answer) and lets in-process tests, whose transport runs no lifespan,
use the app as is. A client or store handed in is used and never closed (close only what
you opened).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis

from schemas.keys import Keys
from schemas.settings import Settings
from workers.bus.connect import connect
from workers.store import Store, open_store

__all__ = ["Resources"]

CLIENT_NAME = "qwc-manager"


@dataclass
class _Opened:
    client: redis.Redis | None
    store: Store | None


class Resources:
    """The settings, key names, Redis client and store every route uses (thread-safe)."""

    def __init__(
        self, settings: Settings, *, client: redis.Redis | None = None, store: Store | None = None
    ) -> None:
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self._client = client
        self._store = store
        self._opened = _Opened(None, None)  # what this object opened, hence closes
        self._client_lock = threading.Lock()
        self._store_lock = threading.Lock()

    def redis(self) -> redis.Redis:
        """The Redis client. Raises ``EmbeddedRedisError`` when the embedded server cannot
        be started; connecting itself is lazy (``redis.ConnectionError`` on first use)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._opened.client = connect(self.settings, client_name=CLIENT_NAME)
            return self._client

    def store(self) -> Store:
        """The store, opened (and, for SQLite, migrated) on first use. Raises ``StoreError``
        when it cannot be reached or is not migrated; the next call tries again."""
        with self._store_lock:
            if self._store is None:
                self._store = self._opened.store = open_store(self.settings)
            return self._store

    def close(self) -> None:
        """Close what this object opened (idempotent)."""
        with self._client_lock:
            if self._opened.client is not None:
                self._opened.client.close()
                self._client = self._opened.client = None
        with self._store_lock:
            if self._opened.store is not None:
                self._opened.store.close()
                self._store = self._opened.store = None

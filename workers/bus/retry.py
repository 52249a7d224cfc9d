"""Retrying transient Redis and SQL errors in the worker loops, with logged backoff.

Transient: the connection is lost, the server is not ready yet, or it lost what the loop
had prepared on it, so the same step may succeed later. Redis: ``ConnectionError`` (but not
authentication/authorization errors), ``TimeoutError``, ``BusyLoadingError`` and replies
starting ``LOADING``, ``TRYAGAIN``, ``MASTERDOWN``, ``CLUSTERDOWN`` or ``NOGROUP`` (a
consumer group is gone: Redis restarted empty, or failed over to a server without it).
SQL: SQLAlchemy's ``OperationalError`` (server gone, SQLite busy), pool timeouts, and any
DBAPI error that invalidated its connection. Everything else is a bug or a refusal and
propagates.

Every consumer-group reader (the liveness worker, the proposal workers, a member's command
reader) runs its pass through :class:`Prepared`: its ``prepare`` (create the groups, take
back what it held) runs before the first pass and again before the pass after any
transient error, so a restart without data, a failover or a deleted stream is repaired by
the same path as a lost connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import redis
import sqlalchemy.exc
from redis.exceptions import AuthenticationError, AuthorizationError
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

__all__ = ["MIN_BACKOFF_S", "Prepared", "is_group_missing", "is_transient", "run_forever"]

MIN_BACKOFF_S = 0.05
_GROUP_MISSING = "NOGROUP"
_TRANSIENT_REPLIES = ("LOADING", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", _GROUP_MISSING)

T = TypeVar("T")


def is_group_missing(exc: BaseException) -> bool:
    """True for Redis' ``NOGROUP`` reply: the stream or its consumer group does not exist."""
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(_GROUP_MISSING)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying after a pause (see the module docstring)."""
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return False
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return True  # includes BusyLoadingError
    if isinstance(exc, redis.ResponseError):
        return str(exc).startswith(_TRANSIENT_REPLIES)
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.TimeoutError):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated


class Prepared:
    """Runs ``prepare()`` before the first :meth:`run` and again before the next one after
    any :meth:`run` that failed with a transient error (see :func:`is_transient`).

    A reader's ``prepare`` creates its consumer groups (idempotently) and takes back what
    it held; after a lost connection, a Redis restarted with or without its data, or a
    failover, the next pass prepares again before it reads. Not thread-safe: one per loop.
    """

    def __init__(self, prepare: Callable[[], None]) -> None:
        self._prepare = prepare
        self._ready = False

    @property
    def ready(self) -> bool:
        """Whether ``prepare`` ran and no transient error came since."""
        return self._ready

    def run(self, step: Callable[[], T]) -> T:
        """``prepare()`` if needed, then ``step()``; errors propagate unchanged."""
        try:
            if not self._ready:
                self._prepare()
                self._ready = True
            return step()
        except Exception as exc:
            if is_transient(exc):
                self._ready = False
            raise


def _cause(exc: BaseException | None) -> str:
    if exc is not None and is_group_missing(exc):
        return "consumer group missing, Redis restarted empty or failed over?"
    return "connection lost"


def run_forever(
    step: Callable[[], None],
    *,
    stop: threading.Event,
    what: str,
    logger: logging.Logger,
    max_backoff_s: float = 5.0,
    min_backoff_s: float = MIN_BACKOFF_S,
) -> None:
    """Call ``step()`` repeatedly until ``stop`` is set.

    A transient error is logged as a warning (``"<what>: connection lost (<err>); retry in
    <s>s"``, or ``consumer group missing, …`` for ``NOGROUP``) and ``step`` is retried
    after a random exponential backoff: ``min_backoff_s`` first, then up to twice as long
    each time (full jitter), at most ``max_backoff_s``; a success resets the backoff.
    Setting ``stop`` interrupts the backoff, and ``run_forever`` returns without raising.
    Any other error propagates (after at most one ``step()`` started before ``stop`` was
    set).
    """

    def attempt() -> None:
        if not stop.is_set():
            step()

    def log_retry(state: RetryCallState) -> None:
        delay_s = state.next_action.sleep if state.next_action else 0.0
        exc = state.outcome.exception() if state.outcome else None
        err = f"{type(exc).__name__}: {exc}"
        logger.warning("%s: %s (%s); retry in %.2fs", what, _cause(exc), err, delay_s)

    def pause(delay_s: float) -> None:
        stop.wait(delay_s)

    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(
            multiplier=min_backoff_s, max=max_backoff_s, min=min_backoff_s
        ),
        stop=lambda _state: stop.is_set(),
        sleep=pause,
        before_sleep=log_retry,
        reraise=True,
    )
    while not stop.is_set():
        try:
            retrying(attempt)  # a fresh call: the backoff starts over after each success
        except Exception as exc:
            if stop.is_set() and is_transient(exc):
                return
            raise

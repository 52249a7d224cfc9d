"""The store engine against a PostgreSQL server that accepts connections but never answers
(a hung or blackholed database): a connect gives up after the connect timeout."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from schemas.errors import StoreError
from workers.bus.retry import is_transient
from workers.store import Store, create_store_engine, upgrade


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port whose listener completes TCP handshakes and then says nothing."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def _connect_in_thread(url: str, **kwargs: int) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def attempt() -> None:
        engine = create_store_engine(url, **kwargs)
        try:
            with engine.connect():
                pass
        except BaseException as exc:  # recorded for the test to inspect
            errors.append(exc)
        finally:
            engine.dispose()

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    return thread, errors


def test_a_silent_postgresql_server_fails_the_connect_instead_of_hanging(
    silent_server: int,
) -> None:
    url = f"postgresql+psycopg://qwc@127.0.0.1:{silent_server}/qwc"
    thread, errors = _connect_in_thread(url, connect_timeout_s=1)
    thread.join(15)  # generous: the point is that it ends at all
    assert not thread.is_alive(), "the connect hung"
    (error,) = errors
    assert isinstance(error, OperationalError)
    assert "timeout" in str(error).lower()


def test_a_connect_timeout_in_the_url_wins(silent_server: int) -> None:
    url = f"postgresql+psycopg://qwc@127.0.0.1:{silent_server}/qwc?connect_timeout=1"
    thread, errors = _connect_in_thread(url, connect_timeout_s=3600)
    thread.join(15)
    assert not thread.is_alive(), "the URL's connect_timeout was not used"
    assert isinstance(errors[0], OperationalError)


def test_a_migration_transaction_checks_foreign_keys_before_its_commit(store: Store) -> None:
    """``begin(foreign_keys=False)`` (SQLite's procedure for re-creating a referenced table)
    refuses to commit a dangling reference and leaves enforcement on afterwards; other
    databases ignore it (their foreign keys are always checked)."""
    dangling = (
        "INSERT INTO executions (id, job_id, member_uuid, status, attempt, trigger, fire_ms, "
        "created_ms) VALUES ('e', 'no-such-job', 'm', 'running', 1, 'schedule', 1, 1)"
    )
    refused = (StoreError, "foreign key violation: executions row 1 refers to no scheduled_jobs")
    expected = refused if store.dialect == "sqlite" else (IntegrityError, "foreign key")
    with pytest.raises(expected[0], match=expected[1]), store.begin(foreign_keys=False) as conn:
        conn.exec_driver_sql(dangling)
    with pytest.raises(IntegrityError), store.begin() as conn:
        conn.exec_driver_sql(dangling)


def test_a_session_idle_in_a_transaction_is_ended_and_its_row_locks_released(db_url: str) -> None:
    """A process frozen inside a transaction (SIGSTOP between two statements) holds its row
    locks on PostgreSQL until it wakes; with the idle timeout, the server ends its session
    and another writer gets the row (before: the UPDATE below waited for the lock)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's idle_in_transaction_session_timeout; SQLite has no row locks")
    engine = create_store_engine(db_url)
    upgrade(engine)
    engine.dispose()
    frozen = create_store_engine(db_url, idle_in_transaction_timeout_s=0.3)
    other = create_store_engine(db_url, connect_timeout_s=5)
    try:
        with frozen.connect() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t_lock (id int PRIMARY KEY, v int)"))
            conn.execute(text("INSERT INTO t_lock VALUES (1, 0) ON CONFLICT DO NOTHING"))
            conn.commit()
            conn.execute(text("SELECT v FROM t_lock WHERE id = 1 FOR UPDATE"))  # then frozen
            with other.connect() as writer:
                writer.execute(text("SET lock_timeout = '5s'"))  # before: fails after 5 s
                writer.execute(text("UPDATE t_lock SET v = 2 WHERE id = 1"))
                writer.commit()
            with pytest.raises(DBAPIError) as ended:  # its session was ended by the server
                conn.execute(text("SELECT 1"))
            assert is_transient(ended.value)  # a thawed member's loop carries on
    finally:
        frozen.dispose()
        other.dispose()

"""The store engine against a PostgreSQL server that accepts connections but never answers
(a hung or blackholed database): a connect gives up after the connect timeout."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from schemas.errors import StoreError
from workers.store import Store, create_store_engine


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

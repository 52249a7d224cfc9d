"""Transient errors and reconnection: CLIENT KILL against real Redis, run_forever's backoff."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable

import pytest
import redis
import sqlalchemy.exc

from workers.bus.connect import connect
from workers.bus.retry import MIN_BACKOFF_S, is_transient, run_forever
from workers.bus.streams import ensure_group, read_group

LOG = logging.getLogger("tests.bus.retry")


def _wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def _kill_clients(admin: redis.Redis, name: str, *, blocked_only: bool) -> int:
    """CLIENT KILL ID each connection named ``name`` (only those in a blocking command)."""
    killed = 0
    for client in admin.client_list():
        if client["name"] != name or (blocked_only and "b" not in client["flags"]):
            continue
        killed += admin.client_kill_filter(_id=client["id"])
    return killed


def _retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    found = (re.search(r"retry in ([0-9.]+)s", rec.getMessage()) for rec in caplog.records)
    return [float(m.group(1)) for m in found if m]


class _DBAPIDisconnect(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (redis.ConnectionError("closed"), True),
        (redis.TimeoutError("timed out"), True),
        (redis.exceptions.BusyLoadingError("loading"), True),
        (redis.ResponseError("LOADING Redis is loading the dataset in memory"), True),
        (redis.ResponseError("TRYAGAIN multi-key request during resharding"), True),
        (redis.ResponseError("NOGROUP No such key 's' or consumer group 'g'"), True),
        (redis.ResponseError("WRONGTYPE Operation against a key"), False),
        (redis.exceptions.AuthenticationError("invalid password"), False),
        (sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed")), True),
        (
            sqlalchemy.exc.DBAPIError(
                "SELECT 1", {}, _DBAPIDisconnect(), connection_invalidated=True
            ),
            True,
        ),
        (sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (ValueError("a bug"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_pool_reconnects_after_client_kill(redis_url: str, r: redis.Redis) -> None:
    name = f"qwc-test-{uuid.uuid4().hex[:8]}"
    client = connect(redis_url, client_name=name)
    try:
        assert client.ping() is True
        assert _kill_clients(r, name, blocked_only=False) == 1
        assert client.ping() is True  # an idle killed connection is replaced silently
        ensure_group(r, "s", "g")
        killer = threading.Thread(
            target=lambda: _wait_for(lambda: _kill_clients(r, name, blocked_only=True) > 0)
        )
        killer.start()
        with pytest.raises(redis.ConnectionError):  # killed in the middle of a command
            read_group(client, "s", "g", "c", count=1, block_ms=2000)
        killer.join()
        assert client.ping() is True  # the next command reconnects
        assert client.client_getname() == name  # set again on the new connection
    finally:
        client.close()


def test_run_forever_logs_and_carries_on_after_client_kill(
    redis_url: str, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"qwc-test-{uuid.uuid4().hex[:8]}"
    client = connect(redis_url, client_name=name)
    ensure_group(r, "s", "g")
    steps = [0]
    stop = threading.Event()

    def step() -> None:
        read_group(client, "s", "g", "c", count=10, block_ms=300)
        steps[0] += 1

    loop = threading.Thread(
        target=run_forever, args=(step,), kwargs={"stop": stop, "what": "test loop", "logger": LOG}
    )
    caplog.set_level(logging.WARNING, logger=LOG.name)
    loop.start()
    try:
        assert _wait_for(lambda: _kill_clients(r, name, blocked_only=True) > 0)
        assert _wait_for(lambda: "connection lost" in caplog.text)
        after_kill = steps[0]
        assert _wait_for(lambda: steps[0] >= after_kill + 2)
    finally:
        stop.set()
        loop.join(timeout=10)
        client.close()
    assert not loop.is_alive()
    [record] = [rec for rec in caplog.records if "connection lost" in rec.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("test loop: connection lost (ConnectionError: ")


def test_run_forever_backoff_grows_and_resets_after_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes = ["fail", "fail", "fail", "ok", "fail", "stop"]
    stop = threading.Event()

    def step() -> None:
        outcome = outcomes.pop(0)
        if outcome == "stop":
            stop.set()
        if outcome != "ok":
            raise redis.ConnectionError("gone")

    caplog.set_level(logging.WARNING, logger=LOG.name)
    run_forever(step, stop=stop, what="w", logger=LOG, max_backoff_s=0.15)
    assert outcomes == []
    delays = _retry_delays(caplog)
    assert len(delays) == 4  # the failure that coincides with stop is not retried
    assert delays[0] == MIN_BACKOFF_S  # first retry: exactly the minimum
    assert MIN_BACKOFF_S <= delays[1] <= 2 * MIN_BACKOFF_S
    assert MIN_BACKOFF_S <= delays[2] <= 0.15  # capped by max_backoff_s
    assert delays[3] == MIN_BACKOFF_S  # reset after the success


def test_run_forever_propagates_other_errors() -> None:
    stop = threading.Event()
    calls = [0]

    def step() -> None:
        calls[0] += 1
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_forever(step, stop=stop, what="w", logger=LOG)
    assert calls[0] == 1


def test_run_forever_stop_interrupts_the_backoff() -> None:
    stop = threading.Event()
    calls = [0]

    def step() -> None:
        calls[0] += 1
        threading.Timer(0.1, stop.set).start()
        raise redis.TimeoutError("slow")

    started = time.monotonic()
    run_forever(step, stop=stop, what="w", logger=LOG, min_backoff_s=60.0, max_backoff_s=60.0)
    assert time.monotonic() - started < 5.0  # not the 60 s backoff
    assert calls[0] == 1  # and no step once stop was set

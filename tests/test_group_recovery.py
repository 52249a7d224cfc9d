"""Consumer groups lost under running readers (Redis restarted empty, ``FLUSHDB``), in-process
against real Redis and a real store: each kind of reader, driven by the same
:func:`workers.bus.retry.run_forever` as its process, prepares again and carries on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from producers.heartbeat import HeartbeatProducer
from schemas.keys import GROUP_COMMANDS, GROUP_LIVENESS, Keys
from schemas.settings import Settings
from tests.cluster import new_uuid, wait_for
from tests.test_commands_processor import add_job, record
from tests.test_liveness_worker import settings as liveness_settings
from tests.test_recovery_worker import View
from workers.bus.retry import Prepared, is_group_missing, is_transient, run_forever
from workers.bus.streams import server_time_ms
from workers.liveness import view
from workers.liveness.worker import GROUP_MEMBERS_STORE, LivenessWorker
from workers.node.commands import CommandProcessor
from workers.proposals import ProposalWorker
from workers.recovery.worker import RecoveryWorker
from workers.store import Store, get_command, list_recoveries, list_takeovers
from workers.takeover.worker import TakeoverWorker

KEYS = Keys()
LOG = logging.getLogger("tests.group_recovery")


def settings(redis_url: str, tmp_path: Path) -> Settings:
    fast = liveness_settings(redis_url, tmp_path, 0.5, 1.0)
    proposals = {"enabled": True, "delay_s": 0.2, "sleep_s": 5}
    values = fast.model_dump()
    for kind in ("autotakeover", "recover"):
        values.update({f"{kind}_{k}": v for k, v in proposals.items()})
    return Settings(**values)


def run_until(step: Callable[[], object], done: Callable[[], bool], timeout_s: float = 15) -> None:
    """``step`` under run_forever (as the processes run it) until ``done()``; a
    non-transient error propagates, as it would end the process."""
    stop = threading.Event()
    timer = threading.Timer(timeout_s, stop.set)
    timer.start()

    def one() -> None:
        step()
        if done():
            stop.set()

    try:
        run_forever(one, stop=stop, what="test reader", logger=LOG, max_backoff_s=0.2)
    finally:
        timer.cancel()
    assert done(), f"not done after {timeout_s}s"


def group_names(r: redis.Redis, stream: str) -> set[str]:
    try:
        return {g["name"].decode() for g in r.xinfo_groups(stream)}
    except redis.ResponseError:
        return set()


def test_prepared_prepares_first_and_again_after_a_transient_error() -> None:
    prepared: list[int] = []
    p = Prepared(lambda: prepared.append(1))
    assert p.run(lambda: "a") == "a" and len(prepared) == 1 and p.ready
    assert p.run(lambda: "b") == "b" and len(prepared) == 1

    def fails(exc: Exception) -> Callable[[], None]:
        def step() -> None:
            raise exc

        return step

    nogroup = redis.ResponseError("NOGROUP No such key '{qwc}:takeover' or consumer group")
    for transient in (redis.ConnectionError("closed"), nogroup):
        with pytest.raises(type(transient)):
            p.run(fails(transient))
        assert not p.ready
        p.run(lambda: None)
        assert p.ready
    assert len(prepared) == 3
    with pytest.raises(ValueError):
        p.run(fails(ValueError("a bug")))
    assert p.ready and len(prepared) == 3  # a bug is not a lost server
    assert is_group_missing(nogroup) and is_transient(nogroup)


@pytest.mark.parametrize("kind", [TakeoverWorker, RecoveryWorker])
def test_a_proposal_worker_prepares_again_when_its_groups_are_gone(
    r: redis.Redis,
    store: Store,
    tmp_path: Path,
    redis_url: str,
    kind: type[ProposalWorker[Any]],
) -> None:
    """The NOGROUP of the read and of the reclaim that follows in the same pass (the
    periodic scan is due) make the next pass prepare; before, the reclaim's NOGROUP ended
    the worker (``qwc worker takeover`` exited 1 after Redis restarted empty)."""
    w = kind(r, store, settings(redis_url, tmp_path), consumer="w1")
    w.step()
    scanned_ms = server_time_ms(r)
    r.flushdb()  # what a Redis restarted without its data looks like
    wait_for(lambda: server_time_ms(r) > scanned_ms + w.scan_every_ms, what="the scan is due")
    v = View(r)
    dead, *live = (new_uuid() for _ in range(4))
    for u in (dead, *live):
        v.beat(u)
    v.die(dead)
    audit = list_takeovers if kind is TakeoverWorker else list_recoveries
    run_until(w.step, lambda: bool(audit(store, dead_uuid=dead)))
    assert w.group in group_names(r, w.stream) and w.group in group_names(r, KEYS.membership)


def test_the_liveness_worker_prepares_again_when_its_groups_are_gone(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    w = LivenessWorker(r, store, settings(redis_url, tmp_path), consumer="w1")
    member = new_uuid()
    beats = HeartbeatProducer(r, uuid=member, name="m", interval_s=1)
    beats.beat()
    w.step()
    r.flushdb()
    beats.beat()

    def active() -> bool:
        state = view.read_snapshot(r, KEYS).states.get(member)
        return state is not None and state.value == "active"

    run_until(w.step, active)
    assert GROUP_LIVENESS in group_names(r, KEYS.heartbeats)
    assert GROUP_MEMBERS_STORE in group_names(r, KEYS.membership)


def test_the_command_reader_prepares_again_when_its_group_is_gone(
    r: redis.Redis, store: Store
) -> None:
    member = new_uuid()
    View(r).beat(member)
    p = CommandProcessor(r, store, KEYS, member_uuid=member)
    assert p.process() == []
    r.flushdb()
    command = record(r, store, member, job_id=add_job(store, member))
    run_until(p.process, lambda: get_command(store, command.id).status == "done")
    assert GROUP_COMMANDS in group_names(r, KEYS.commands(member))

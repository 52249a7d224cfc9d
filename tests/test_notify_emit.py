"""The emitters of events, in-process against a real Redis and a real store: an id is appended
once; a member's state change and its event are one atomic step; a takeover's event is
emitted after its commit, also by a redelivered proposal whose worker died in between, and
never twice; the guard's hold and release; an execution's events, appended by a member's sender."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.codec import decode_as
from schemas.keys import GROUP_TAKEOVER, MESSAGE_FIELD, Keys
from schemas.messages import Event
from schemas.settings import Settings
from tests.cluster import new_uuid, wait_for
from tests.test_notify_pure import execution
from tests.test_recovery_worker import View, now_ms, settings
from workers.notify import emit as emit_module
from workers.notify.emit import emit
from workers.notify.events import execution_event
from workers.notify.sender import EventSender
from workers.store import Store, create_job, list_takeovers
from workers.takeover.guard import release_guard
from workers.takeover.worker import TakeoverWorker

KEYS = Keys()


def events(r: redis.Redis) -> list[Event]:
    return [decode_as(fields[MESSAGE_FIELD], Event) for _, fields in r.xrange(KEYS.events)]


def kinds(r: redis.Redis) -> list[str]:
    return [e.kind for e in events(r)]


def test_an_id_is_appended_once(r: redis.Redis) -> None:
    e = Event(id="takeover.committed:p1", kind="takeover.committed", at_ms=1)
    assert emit(r, KEYS, e) is True
    assert emit(r, KEYS, e) is False
    assert emit(r, KEYS, e.model_copy(update={"id": "takeover.committed:p2"})) is True
    assert [x.id for x in events(r)] == ["takeover.committed:p1", "takeover.committed:p2"]
    assert 0 < r.pttl(KEYS.event_once(e.id)) <= emit_module.ONCE_TTL_MS


def test_state_changes_and_their_events_are_appended_together(r: redis.Redis) -> None:
    member = new_uuid()
    v = View(r)
    v.beat(member)  # a newcomer: a membership change, no event
    v.die(member)
    v.beat(member)  # active again
    changes = [c for _, c in r.xrange(KEYS.membership)]
    assert len(changes) == 3
    dead, back = events(r)
    assert (dead.kind, back.kind) == ("member.dead", "member.active")
    assert dead.data["member"]["uuid"] == member and dead.data["from_state"] == "active"  # type: ignore[index,call-overload]
    assert back.data["from_state"] == "dead"
    assert dead.id == f"member.dead:{member}:{dead.at_ms}"


def takeover_settings(redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """The recovery worker tests' fast timings, with autotakeover on instead."""
    values = {"recover_enabled": False, "autotakeover_enabled": True}
    values |= {"autotakeover_delay_s": 0.1, "autotakeover_sleep_s": 5.0}
    return settings(redis_url, tmp_path, **(values | overrides))


def add_jobs(store: Store, owner: str, n: int) -> None:
    for i in range(n):
        create_job(
            store,
            project="p",
            group_name=owner[:8],
            name=f"j{i}",
            command=["true"],
            schedule=None,
            modified_by=owner,
            now_ms=now_ms(),
        )


def committed(r: redis.Redis) -> list[Event]:
    return [e for e in events(r) if e.kind == "takeover.committed"]


def test_a_takeover_is_told_after_its_commit_even_by_a_redelivered_proposal(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    add_jobs(store, dead, 4)
    s = takeover_settings(redis_url, tmp_path)
    first = TakeoverWorker(r, store, s, consumer="w1")
    real_emit = emit_module.emit

    def dies_before_emitting(*_args: Any, **_kwargs: Any) -> bool:
        raise redis.ConnectionError("the worker died between its commit and its event")

    monkeypatch.setattr(emit_module, "emit", dies_before_emitting)
    v.die(dead)
    with pytest.raises(redis.ConnectionError):
        wait_for(lambda: first.step() and False, what="the commit")  # type: ignore[func-returns-value]
    (row,) = list_takeovers(store)
    assert row.outcome == "committed" and row.jobs_moved == 4
    assert committed(r) == []  # committed, not told: the proposal is still pending
    assert r.xpending(KEYS.takeover, GROUP_TAKEOVER)["pending"] == 1

    monkeypatch.setattr(emit_module, "emit", real_emit)
    r.xgroup_setid(KEYS.takeover, GROUP_TAKEOVER, "0")  # another replica gets it again
    second = TakeoverWorker(r, store, s, consumer="w2")
    wait_for(lambda: second.step() or committed(r), what="the event")
    (event,) = committed(r)
    assert event.id == f"takeover.committed:{row.proposal_id}" and event.at_ms == row.decided_ms
    assert event.data["jobs_moved"] == 4
    assert event.data["destinations"] == [{"uuid": live, "name": live[:8], "jobs": 4}]
    assert event.data["member"] == {"uuid": dead, "name": dead[:8]}
    wait_for(
        lambda: second.step() or r.xpending(KEYS.takeover, GROUP_TAKEOVER)["pending"] == 0,
        what="acknowledged",
    )
    # redelivered once more (as after a crash after the event, before the ack): no second one
    r.xgroup_setid(KEYS.takeover, GROUP_TAKEOVER, "0")
    third = TakeoverWorker(r, store, s, consumer="w3")
    wait_for(
        lambda: third.step() or r.xpending(KEYS.takeover, GROUP_TAKEOVER)["pending"] == 0,
        what="handled again",
    )
    assert len(committed(r)) == 1
    assert kinds(r).index("member.dead") < kinds(r).index("takeover.committed")


def test_a_cancelled_takeover_is_told(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    add_jobs(store, dead, 1)
    w = TakeoverWorker(
        r, store, takeover_settings(redis_url, tmp_path, autotakeover_delay_s=0.3), consumer="w"
    )
    v.die(dead)
    wait_for(lambda: w.step() or r.xlen(KEYS.takeover) == 1, what="a proposal")
    v.beat(dead)  # back before the proposal is due
    wait_for(lambda: w.step() or "takeover.cancelled" in kinds(r), what="cancelled")
    (cancelled,) = [e for e in events(r) if e.kind == "takeover.cancelled"]
    assert cancelled.data["outcome"] == "cancelled" and cancelled.data["member"]["uuid"] == dead  # type: ignore[index,call-overload]


def test_the_guard_holding_and_its_release_are_told(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    a, b, c, live = (new_uuid() for _ in range(4))
    v = View(r)
    for member in (a, b, c, live):
        v.beat(member)
    for member in (a, b, c):
        add_jobs(store, member, 1)
    w = TakeoverWorker(r, store, takeover_settings(redis_url, tmp_path), consumer="w")
    for member in (a, b, c):  # 3 of 4 silent at once: held
        v.die(member)
    wait_for(lambda: w.step() or kinds(r).count("takeover.held") == 3, what="3 held")
    for _ in range(3):
        w.step()  # still held: told once
    held = [e for e in events(r) if e.kind == "takeover.held"]
    assert len(held) == 3 and {e.data["member"]["uuid"] for e in held} == {a, b, c}  # type: ignore[index,call-overload]
    done = release_guard(r, KEYS)
    (released,) = [e for e in events(r) if e.kind == "takeover.released"]
    assert released.id == f"takeover.released:{done.released_ms}" and released.data["held"] == 3
    wait_for(lambda: w.step() or kinds(r).count("takeover.committed") == 3, what="committed")


def test_the_sender_appends_an_executions_events_in_order(r: redis.Redis) -> None:
    sender = EventSender(r, KEYS)
    for row, urls in (
        (execution("running"), ()),
        (execution("timedout", "...killed"), ("https://h/job",)),
    ):
        event = execution_event(row, job=("ops", "", "backup"), member_name="n1",
                                retrying=False, at_ms=150, hook_urls=urls)  # fmt: skip
        assert event is not None
        sender.send(event)
    sender.close()
    assert [e.id for e in events(r)] == ["execution.started:e1", "execution.timed_out:e1"]
    assert events(r)[1].hook_urls == ("https://h/job",)
    assert events(r)[1].data["execution"]["output_tail"] == "...killed"  # type: ignore[index,call-overload]
    assert sender.dropped == 0

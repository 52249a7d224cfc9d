"""The takeover worker in-process, against real Redis and a real store.

The liveness view is set by hand through its own API (tests/inprocess.py ``View``), so
each test decides exactly who is active, passive or dead, and when; the worker runs in a
thread or is stepped in the test's thread, with a delay and a sleep of fractions of a
second. tests/test_takeover_live.py keeps the scenarios that need real processes (SIGKILL,
SIGSTOP, a database outage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from schemas.codec import decode_as
from schemas.keys import GROUP_TAKEOVER, MESSAGE_FIELD, Keys
from schemas.messages import TakeoverProposal
from schemas.settings import Settings, TakeoverPolicy
from tests.cluster import membership_changes, new_uuid, wait_for
from tests.inprocess import (
    Qwc,
    Threads,
    View,
    create_jobs,
    owners,
    redelivered_and_acked,
    step_until,
    worker_client,
    worker_settings,
)
from workers.bus.streams import server_time_ms
from workers.store import Store, TakeoverRow, list_takeovers
from workers.takeover.worker import TakeoverWorker

KEYS = Keys()
DELAY_S, SLEEP_S = 0.3, 1.5
TAKEOVER = (KEYS.takeover, GROUP_TAKEOVER)


def settings(redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values = {
        "autotakeover_enabled": True,
        "autotakeover_delay_s": DELAY_S,
        "autotakeover_sleep_s": SLEEP_S,
    }
    return worker_settings(redis_url, tmp_path, **(values | overrides))


def worker(
    threads: Threads, redis_url: str, store: Store, s: Settings, consumer: str
) -> TakeoverWorker:
    """A replica with a client of its own, stopped with the test's other threads."""
    return TakeoverWorker(worker_client(redis_url), store, s, consumer=consumer, stop=threads.stop)


def takeovers(store: Store, outcome: str | None = None) -> list[TakeoverRow]:
    rows = sorted(list_takeovers(store, limit=None), key=lambda t: t.proposed_ms)
    return [t for t in rows if outcome is None or t.outcome == outcome]


def test_a_dead_member_s_jobs_move_evenly_to_active_members_after_the_delay(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, a, b, passive, other_dead = (new_uuid() for _ in range(5))
    v = View(r)
    for m in (dead, a, b, other_dead):
        v.beat(m)
    v.beat(passive, passive=True)
    v.die(other_dead)  # owns nothing: its takeover is skipped
    taken = create_jobs(store, dead, 30)
    kept = create_jobs(store, a, 2, "a")
    threads.start(worker(threads, redis_url, store, settings(redis_url, tmp_path), "w1"))
    v.die(dead)
    wait_for(
        lambda: takeovers(store, "committed") and takeovers(store, "skipped"),
        what="takeover committed, and skipped for the member without jobs",
    )
    (row,) = takeovers(store, "committed")
    assert row.dead_uuid == dead and row.decided_ms is not None
    assert row.due_ms - row.proposed_ms == DELAY_S * 1000 and row.decided_ms >= row.due_ms
    final = owners(store)
    # even loads in the end: a had 2 jobs, so it gets 14 and b 16
    assert row.jobs_moved == 30 and row.destinations == {a: 14, b: 16}
    assert sorted(final[j] for j in taken) == sorted([a] * 14 + [b] * 16)
    assert all(final[j] == a for j in kept)
    (skip,) = takeovers(store, "skipped")
    assert skip.dead_uuid == other_dead and skip.detail == "the member owns no scheduled jobs"
    # acknowledged once decided (the audit row is written first)
    wait_for(lambda: r.xpending(*TAKEOVER)["pending"] == 0, what="acknowledged")


def test_member_back_before_the_delay_keeps_its_jobs(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    paused, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(paused)
    v.beat(live)
    owned = create_jobs(store, paused, 5)
    s = settings(redis_url, tmp_path, autotakeover_delay_s=0.6)
    threads.start(worker(threads, redis_url, store, s, "w1"))
    v.die(paused)
    wait_for(lambda: r.xlen(KEYS.takeover) == 1, what="proposed")
    v.beat(paused)
    (row,) = wait_for(lambda: takeovers(store, "cancelled"), what="cancelled")
    assert row.decided_ms is not None and row.decided_ms >= row.due_ms
    assert all(owners(store)[j] == paused for j in owned)
    assert takeovers(store, "committed") == []


def test_a_second_death_inside_sleep_gets_no_attempt_until_the_window_ends(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    flapper, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(flapper)
    v.beat(live)
    owned = create_jobs(store, flapper, 2)
    w = TakeoverWorker(r, store, settings(redis_url, tmp_path), consumer="w1")
    v.die(flapper)
    step_until(w, lambda: r.xlen(KEYS.takeover) == 1, "first proposal")
    v.beat(flapper)  # back before the delay: cancelled
    step_until(w, lambda: takeovers(store, "cancelled"), "first proposal cancelled")
    v.die(flapper)  # dead again, inside sleep: no second attempt yet
    (first,) = takeovers(store)
    while server_time_ms(r) < first.proposed_ms + SLEEP_S * 1000 - 300:
        w.step()
        assert r.xlen(KEYS.takeover) == 1
    # once the attempt window ends, the scan proposes again and the jobs move
    step_until(w, lambda: takeovers(store, "committed"), "second attempt committed")
    assert r.xlen(KEYS.takeover) == 2
    first, second = takeovers(store)
    assert second.proposed_ms - first.proposed_ms >= SLEEP_S * 1000
    assert all(owners(store)[j] == live for j in owned)


def test_static_policy_takes_over_only_allowed_members(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    allowed, keeper = new_uuid(), new_uuid()
    survivors = [new_uuid() for _ in range(3)]  # 2 of 5 dying is no mass failure
    v = View(r)
    for m in (allowed, keeper, *survivors):
        v.beat(m)
    kept, taken = create_jobs(store, keeper, 3, "k"), create_jobs(store, allowed, 3, "a")
    s = settings(
        redis_url,
        tmp_path,
        autotakeover_policy=TakeoverPolicy.STATIC,
        autotakeover_allowed=(allowed,),
    )
    threads.start(worker(threads, redis_url, store, s, "w1"))
    v.die(keeper)
    v.die(allowed)
    wait_for(lambda: takeovers(store, "committed"), what="allowed member taken over")
    (skip,) = wait_for(lambda: takeovers(store, "skipped"), what="skip recorded")
    assert skip.dead_uuid == keeper and "not in autotakeover.config.allowed" in skip.detail
    final = owners(store)
    assert all(final[j] in survivors for j in taken)
    assert all(final[j] == keeper for j in kept)
    assert r.xlen(KEYS.takeover) == 1  # only the allowed member was proposed


def test_a_proposal_held_by_a_dead_replica_is_reclaimed_and_committed_once(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    owned = create_jobs(store, dead, 6)
    # a sleep longer than delay + the reclaim margin: no second attempt meanwhile
    s = settings(redis_url, tmp_path, autotakeover_sleep_s=5.0)
    doomed = worker(threads, redis_url, store, s, "doomed")
    v.die(dead)
    step_until(doomed, lambda: doomed.held, "held by the doomed replica")
    # the doomed replica never steps again; another one reclaims after delay + margin
    threads.start(worker(threads, redis_url, store, s, "w2"))
    (row,) = wait_for(lambda: takeovers(store, "committed"), timeout_s=10, what="reclaimed")
    assert row.jobs_moved == 6 and all(owners(store)[j] == live for j in owned)
    # acknowledged once decided (the audit row is written first)
    wait_for(lambda: r.xpending(*TAKEOVER)["pending"] == 0, what="acknowledged")
    # the same proposal delivered again (as after a crash between commit and ack)
    r.xgroup_setid(*TAKEOVER, "0")
    again = worker(threads, redis_url, store, s, "w3")
    step_until(again, lambda: redelivered_and_acked(r, *TAKEOVER), "redelivery handled")
    assert takeovers(store) == [row]


def test_a_death_the_worker_missed_is_found_by_the_scan(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    owned = create_jobs(store, dead, 2)
    v.die(dead)
    r.delete(KEYS.membership)  # the change is gone (trimmed, or emitted before any worker)
    threads.start(worker(threads, redis_url, store, settings(redis_url, tmp_path), "w1"))
    (row,) = wait_for(lambda: takeovers(store, "committed"), what="taken over by the scan")
    assert row.dead_uuid == dead and all(owners(store)[j] == live for j in owned)


def test_a_scan_that_sees_a_death_before_its_change_is_read_counts_from_the_death(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    """The member turned dead between the worker's read of the stream and its scan: the
    proposal is due the delay after the death, as if the change had been read first."""
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    create_jobs(store, dead, 2)
    w = TakeoverWorker(r, store, settings(redis_url, tmp_path), consumer="w1")
    w.prepare()
    v.die(dead)
    (change,) = [c for c in membership_changes(r, KEYS, dead) if c.to_state.value == "dead"]
    w._scan(change.at_ms + 5)  # the scan's clock is 5 ms past the death
    (entry,) = r.xrange(KEYS.takeover)
    proposal = decode_as(entry[1][MESSAGE_FIELD], TakeoverProposal)
    assert proposal.proposed_at_ms == change.at_ms
    assert proposal.due_at_ms == change.at_ms + DELAY_S * 1000


def test_no_destination_is_recorded_and_retried_after_sleep(
    r: redis.Redis, store: Store, tmp_path: Path, threads: Threads, redis_url: str
) -> None:
    dead, passive, newcomer = new_uuid(), new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(passive, passive=True)
    owned = create_jobs(store, dead, 3)
    s = settings(redis_url, tmp_path, autotakeover_sleep_s=1.0)
    threads.start(worker(threads, redis_url, store, s, "w1"))
    v.die(dead)
    (first,) = wait_for(lambda: takeovers(store, "no_destination"), what="no destination")
    assert all(owners(store)[j] == dead for j in owned)  # nothing moved
    v.beat(newcomer)
    (row,) = wait_for(lambda: takeovers(store, "committed"), what="retried")
    assert row.proposed_ms - first.proposed_ms >= 1000  # autotakeover.sleep
    assert all(owners(store)[j] == newcomer for j in owned)  # never the passive member


def test_disabled_autotakeover_proposes_nothing(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    dead, live = new_uuid(), new_uuid()
    v = View(r)
    v.beat(dead)
    v.beat(live)
    owned = create_jobs(store, dead, 2)
    s = settings(redis_url, tmp_path, autotakeover_enabled=False)
    w = TakeoverWorker(r, store, s, consumer="w1")
    v.die(dead)
    for _ in range(5):  # reads the change, scans: nothing to do
        w.step()
    assert r.xlen(KEYS.takeover) == 0 and takeovers(store) == []
    assert all(owners(store)[j] == dead for j in owned)


def test_the_mass_failure_guard_holds_takeovers_until_qwc_takeover_release(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str, qwc: Qwc
) -> None:
    a, b, c, survivor = (new_uuid() for _ in range(4))
    v = View(r)
    for member in (a, b, c, survivor):
        v.beat(member)
    owned = {m: create_jobs(store, m, 2, m[:8]) for m in (a, b, c, survivor)}
    w = TakeoverWorker(r, store, settings(redis_url, tmp_path), consumer="w1")
    for member in (a, b, c):  # 3 of 4 silent within one considerDead: the observer is suspect
        v.die(member)
    step_until(w, lambda: len(takeovers(store, "held")) == 3, "three takeovers held")
    assert all(owners(store)[j] == m for m, js in owned.items() for j in js)
    assert len(r.hgetall(KEYS.takeover_held)) == 3
    members = qwc("members")
    assert members.exit_code == 0 and members.output.count("mass failure") == 3, members.output
    assert qwc("takeover", "release").exit_code == 0
    step_until(w, lambda: len(takeovers(store, "committed")) == 3, "committed once released")
    assert set(owners(store).values()) == {survivor}
    assert r.hgetall(KEYS.takeover_held) == {}

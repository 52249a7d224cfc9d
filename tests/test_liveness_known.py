"""What a liveness replica knows of the shared view, and what a batch therefore writes and
reads: the pure plan (no Redis), then the worker against real Redis and a real store —
a heartbeat that says nothing new writes only its time, a changed content is stored,
and another replica's changes and writes are noticed."""

from __future__ import annotations

from pathlib import Path

import redis

from producers.heartbeat import HeartbeatProducer
from schemas.codec import decode_as, encode
from schemas.keys import Keys
from schemas.messages import Heartbeat, MembershipChange, MemberState
from tests.cluster import membership_changes, new_uuid
from tests.test_liveness_worker import settings
from workers.bus.streams import entry_ms
from workers.liveness import view
from workers.liveness.beats import Heard
from workers.liveness.known import CHANGES_PAGE, KnownView, latest_beats
from workers.liveness.rules import MemberObservation, Thresholds, Transition
from workers.liveness.worker import LivenessWorker
from workers.store import Store

KEYS = Keys()
TH = Thresholds(600, 1200)
T0 = 1_700_000_000_000
A, INA, D = MemberState.ACTIVE, MemberState.INACTIVE, MemberState.DEAD
M1, M2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def beat(member: str, ms: int, *, running: tuple[str, ...] = ()) -> Heard:
    hb = Heartbeat(uuid=member, name=member[:4], seq=ms, started_at_ms=0, sent_at_ms=0)
    hb = hb.model_copy(update={"running": running})
    return (f"{ms}-0".encode(), hb, ms, encode(hb))


def known_view(*states: tuple[str, MemberState, int]) -> KnownView:
    """A replica caught up with the membership stream, knowing ``states`` and having
    stored and watched each member's heartbeat at its last seen time."""
    k = KnownView(TH)
    k.sync(T0)
    latest = latest_beats(beat(m, seen) for m, _, seen in states)
    plan = k.plan(latest, max(seen for _, _, seen in states))
    read = [MemberObservation(m, s, seen) for m, s, seen in states]
    k.learn(plan, latest, read, 0, [(b"1-0", None)])  # caught up, at entry 1-0
    k.wrote_info(latest, plan.info, 0, 0)  # checked: stored already, the count is 0
    return k


def change(member: str, to: MemberState, last_seen_ms: int) -> MembershipChange:
    return MembershipChange(
        uuid=member, from_state=A, to_state=to, at_ms=last_seen_ms, last_seen_ms=last_seen_ms
    )


def test_a_known_active_member_heard_again_writes_only_its_time() -> None:
    k = known_view((M1, A, T0), (M2, A, T0))
    plan = k.plan(latest_beats([beat(M1, T0 + 100), beat(M2, T0 + 200)]), T0 + 200)
    assert plan.seen == {M1.encode(): b"%d" % (T0 + 100), M2.encode(): b"%d" % (T0 + 200)}
    assert (plan.read, plan.info, plan.watch) == ([], [], {})
    assert plan.heard_deadline_ms == T0 + 100 + TH.inactive_ms


def test_members_that_may_change_are_read_and_watched() -> None:
    k = known_view((M1, INA, T0), (M2, A, T0))
    new = "33333333-3333-4333-8333-333333333333"
    # M2's heartbeat is older than considerInactive at this now (a worker far behind)
    now = T0 + 200 + TH.inactive_ms
    plan = k.plan(latest_beats([beat(M1, T0 + 100), beat(M2, T0 + 200), beat(new, now)]), now)
    assert plan.read == [M1, M2, new]
    assert plan.watch == {M1: T0 + 100, M2: T0 + 200, new: now}


def test_a_watch_score_moves_every_half_considerInactive() -> None:
    k = known_view((M1, A, T0))
    half = TH.inactive_ms // 2
    assert k.plan(latest_beats([beat(M1, T0 + half - 1)]), T0 + half - 1).watch == {}
    assert k.plan(latest_beats([beat(M1, T0 + half)]), T0 + half).watch == {M1: T0 + half}


def test_only_a_changed_content_is_stored() -> None:
    k = known_view((M1, A, T0), (M2, A, T0))
    plan = k.plan(latest_beats([beat(M1, T0 + 1), beat(M2, T0 + 1, running=("e1",))]), T0 + 1)
    assert plan.info == [M2]


def test_a_change_another_replica_made_to_a_skipped_member_is_read_back_at_once() -> None:
    k = known_view((M1, A, T0), (M2, A, T0))
    latest = latest_beats([beat(M1, T0 + 100), beat(M2, T0 + 100)])
    plan = k.plan(latest, T0 + 100)
    assert plan.read == []
    follow = k.learn(plan, latest, [], 0, [(b"2-0", change(M2, INA, T0))])
    assert follow.read == [M2] and follow.info == []
    assert k.plan(latest, T0 + 100).read == [M2]  # it knows M2 is inactive now


def test_the_echo_of_a_change_it_applied_is_no_news() -> None:
    k = known_view((M1, A, T0))
    k.applied([change(M1, INA, T0)])
    latest = latest_beats([beat(M1, T0 + 100)])
    plan = k.plan(latest, T0 + 100)
    assert plan.read == [M1]  # inactive: read back and decided
    assert k.learn(plan, latest, [], 0, [(b"2-0", change(M1, INA, T0))]).read == []


def test_nothing_is_skipped_until_the_membership_stream_is_read_to_its_end() -> None:
    k = known_view((M1, A, T0))
    latest = latest_beats([beat(M1, T0 + 100)])
    plan = k.plan(latest, T0 + 100)
    page = [(f"{n + 2}-0".encode(), None) for n in range(CHANGES_PAGE)]
    k.learn(plan, latest, [], 0, page)
    assert k.changes_after == f"{CHANGES_PAGE + 1}-0".encode()
    assert k.plan(latest, T0 + 100).read == [M1]
    k.learn(plan, latest, [], 0, [])  # the rest of the stream: nothing
    assert k.plan(latest, T0 + 100).read == []


def test_stored_contents_changed_by_someone_else_are_all_checked() -> None:
    k = known_view((M1, A, T0), (M2, A, T0))
    latest = latest_beats([beat(M1, T0 + 100), beat(M2, T0 + 100)])
    plan = k.plan(latest, T0 + 100)
    assert plan.info == []
    assert k.learn(plan, latest, [], 5, []).info == [M1, M2]  # the count moved: by whom?


def test_a_restarted_view_is_known_no_more() -> None:
    k = known_view((M1, A, T0))
    k.sync(T0 + 5000)
    plan = k.plan(latest_beats([beat(M1, T0 + 5000)]), T0 + 5000)
    assert (plan.read, plan.info) == ([M1], [M1])


def stored(r: redis.Redis, member: str) -> Heartbeat:
    raw = r.hget(KEYS.view_info, member)
    assert raw is not None
    return decode_as(raw, Heartbeat)


def test_a_heartbeat_that_says_nothing_new_is_not_stored_again(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    """Only its time moves; a changed running list is stored (takeover and recovery
    candidates read it), and so is the next unchanged one after another writer's."""
    w = LivenessWorker(r, store, settings(redis_url, tmp_path, 60, 120), consumer="w1")
    member = new_uuid()
    producer = HeartbeatProducer(r, uuid=member, name="steady", interval_s=1)
    producer.beat()
    w.step()
    writes = r.get(KEYS.view_info_writes)
    for _ in range(3):
        last = producer.beat()
        w.step()
    assert stored(r, member).seq == 1 and r.get(KEYS.view_info_writes) == writes
    assert last is not None
    assert view.read_observations(r, KEYS, [member])[0].last_seen_ms == entry_ms(last)
    producer.set_running(["e1"])
    producer.beat()
    w.step()
    assert stored(r, member).running == ("e1",) and stored(r, member).seq == 5


def test_a_stored_heartbeat_another_writer_changed_is_stored_again(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    w = LivenessWorker(r, store, settings(redis_url, tmp_path, 60, 120), consumer="w1")
    member = new_uuid()
    producer = HeartbeatProducer(r, uuid=member, name="steady", interval_s=1)
    producer.beat()
    w.step()
    other = stored(r, member).model_copy(update={"running": ("elsewhere",), "seq": 99})
    pipe = r.pipeline(transaction=False)
    view.queue_observe(pipe, KEYS, [(0, other, encode(other))])  # as a test helper writes
    pipe.execute()
    assert stored(r, member).running == ("elsewhere",)
    producer.beat()
    w.step()
    assert stored(r, member).running == () and stored(r, member).seq == 2


def test_a_member_another_replica_turned_inactive_is_active_on_its_next_heartbeat(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    """Replica w1 knows the member active; another replica's sweep turns it inactive
    before w1 records the member's next heartbeat: w1 reads it back and turns it active
    in that same pass, as a replica that knew nothing would."""
    w = LivenessWorker(r, store, settings(redis_url, tmp_path, 60, 120), consumer="w1")
    member = new_uuid()
    producer = HeartbeatProducer(r, uuid=member, name="back", interval_s=1)
    producer.beat()
    w.step()
    producer.beat()
    w.step()  # w1 knows the member active and caught up with the membership stream
    snap = view.read_snapshot(r, KEYS)
    swept = Transition(member, A, INA, snap.seen_ms[member])
    assert view.apply_transitions(r, KEYS, [swept], now_ms=snap.now_ms, names={}, reason="t")
    producer.beat()
    w.step()
    steps = [(c.from_state, c.to_state, c.reason) for c in membership_changes(r, KEYS, member)]
    assert steps == [(None, A, "heartbeat"), (A, INA, "t"), (INA, A, "heartbeat")]
    assert view.read_snapshot(r, KEYS).states[member] is A

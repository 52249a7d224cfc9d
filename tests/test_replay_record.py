"""``record`` against a real Redis and a real store: the window, its warm-up, every stream
in range (ids and raw payloads), the prior states, and the snapshot of the store."""

from __future__ import annotations

from pathlib import Path

import redis

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import (
    CommandAction,
    Heartbeat,
    MembershipChange,
    MemberState,
    RemoteCommand,
    TakeoverProposal,
)
from schemas.settings import Settings
from workers.replay.engine import replay
from workers.replay.fileformat import read_recording
from workers.replay.record import record, warmup_ms
from workers.replay.settings import recorded_settings, replay_settings
from workers.store import (
    Store,
    create_job,
    insert_execution,
    record_member_state,
    record_takeover_outcome,
)

T = 1_700_000_000_000
A, B, C = (f"0000000{i}-0000-4000-8000-000000000000" for i in (1, 2, 3))
KEYS = Keys()
SETTINGS = Settings(
    heartbeat_interval_s=0.2,
    heartbeat_consider_inactive_s=0.6,
    heartbeat_consider_dead_s=1.2,
    autotakeover_enabled=True,
    autotakeover_delay_s=0.5,
    autotakeover_sleep_s=4,
    recover_delay_s=0.5,
    recover_sleep_s=4,
)


def add(r: redis.Redis, stream: str, ms: int, payload: bytes) -> None:
    r.xadd(stream, {MESSAGE_FIELD: payload}, id=f"{ms}-0")


def change(uuid: str, f: MemberState | None, t: MemberState, at: int, seen: int) -> bytes:
    return encode(
        MembershipChange(uuid=uuid, from_state=f, to_state=t, at_ms=at, last_seen_ms=seen)
    )


def fill(r: redis.Redis, store: Store) -> str:
    """A heartbeats 0..20 s; B 0..10 s running one execution; C owns a job, never heard."""
    job_b = create_job(
        store,
        project="p",
        group_name="g",
        name="b1",
        command=["true"],
        schedule=None,
        modified_by=B,
        now_ms=T,
        retry_count=2,
    )
    running = insert_execution(
        store,
        job_id=job_b.id,
        member_uuid=B,
        trigger="manual",
        fire_ms=T,
        now_ms=T,
        status="running",
    )
    for name, owner in (("a1", A), ("a2", A)):
        create_job(
            store,
            project="p",
            group_name="g",
            name=name,
            command=["true"],
            schedule=None,
            modified_by=owner,
            now_ms=T,
        )
    create_job(
        store,
        project="p",
        group_name="g",
        name="c1",
        command=["true"],
        schedule=None,
        modified_by=C,
        now_ms=T + 5_000,
    )
    for uuid in (A, B):
        record_member_state(
            store, uuid=uuid, name=uuid[:8], state="active", last_seen_ms=T, changed_ms=T
        )
    for t in range(T, T + 20_000, 200):
        add(
            r,
            KEYS.heartbeats,
            t,
            encode(Heartbeat(uuid=A, name="a", seq=0, started_at_ms=0, sent_at_ms=t)),
        )
        if t < T + 10_000:
            hb = Heartbeat(
                uuid=B, name="b", seq=0, started_at_ms=0, sent_at_ms=t, running=(running,)
            )
            r.xadd(KEYS.heartbeats, {MESSAGE_FIELD: encode(hb)}, id=f"{t}-1")
    add(r, KEYS.membership, T + 10, change(A, None, MemberState.ACTIVE, T + 10, T))
    add(r, KEYS.membership, T + 20, change(B, None, MemberState.ACTIVE, T + 20, T))
    add(
        r,
        KEYS.membership,
        T + 10_900,
        change(B, MemberState.ACTIVE, MemberState.INACTIVE, T + 10_900, T + 9_800),
    )
    proposal = TakeoverProposal(
        id="p1",
        dead_uuid=B,
        policy="any",
        proposed_at_ms=T + 11_000,
        due_at_ms=T + 11_500,
        last_seen_ms=T + 9_800,
    )
    add(r, KEYS.takeover, T + 11_000, encode(proposal))
    command = RemoteCommand(
        id="c1",
        action=CommandAction.EXECUTE,
        target_uuid=A,
        job_id="j",
        issued_at_ms=T + 12_000,
        expires_at_ms=T + 99_000,
    )
    add(r, KEYS.commands(A), T + 12_000, encode(command))
    add(r, KEYS.commands(B), T + 30_000, encode(command))  # after the window
    r.set(KEYS.view_started, T - 1_000)
    r.set(KEYS.takeover_released, T + 15_000)
    for pid, at in (("p1", T + 11_000), ("old", T - 100_000)):
        record_takeover_outcome(
            store,
            proposal_id=pid,
            dead_uuid=B,
            policy="any",
            proposed_ms=at,
            due_ms=at + 500,
            now_ms=at + 500,
            outcome="cancelled",
        )
    return running


def test_a_window_with_its_warm_up_and_the_store_snapshot(
    r: redis.Redis, store: Store, tmp_path: Path
) -> None:
    running = fill(r, store)
    out = tmp_path / "rec.qwcrec"
    since, until = T + 8_000, T + 16_000
    result = record(r, store, SETTINGS, out, since_ms=since, until_ms=until)
    start = since - warmup_ms(SETTINGS)
    assert warmup_ms(SETTINGS) == 1_200 + 4_500 and result.warnings == []
    h = result.header
    assert (h.since_ms, h.until_ms, h.start_ms) == (since, until, start)
    assert (h.view_started_ms, h.released_ms, h.source) == (T - 1_000, T + 15_000, "redis")
    assert h.settings == recorded_settings(SETTINGS)
    beats_a = len([t for t in range(T, T + 20_000, 200) if start <= t <= until])
    beats_b = len([t for t in range(T, T + 10_000, 200) if start <= t <= until])
    first = min(t for t in range(T, T + 20_000, 200) if t >= start)
    assert result.entries == {
        "heartbeats": beats_a + beats_b,
        "membership": 1,
        "takeover": 1,
        f"commands:{A}": 1,
    }
    with read_recording(out) as rec:
        assert rec.header == h
        blocks = list(rec.heartbeat_blocks())
        ids = [(ms, seq) for b in blocks for ms, seq in zip(b.ms, b.seq, strict=True)]
        assert ids[0] == (first, 0) and ids[-1] == (until, 0) and ids == sorted(ids)
        (entry,) = r.xrange(KEYS.heartbeats, f"{first}-0", "+", 1)
        assert blocks[0].raw[0] == entry[1][MESSAGE_FIELD]
        (m,) = rec.streams["membership"]
        assert m.ms == [T + 10_900]
        snap = rec.snapshot
    assert [(p.uuid, p.state, p.last_seen_ms) for p in snap.prior] == [
        (A, MemberState.ACTIVE, T),
        (B, MemberState.ACTIVE, T),
    ]
    assert snap.owners == {A: 2, B: 1, C: 1} and len(snap.jobs) == 4
    assert snap.unheard == {C: T + 5_000}
    assert [(e.id, e.member_uuid, e.attempt) for e in snap.executions] == [(running, B, 1)]
    assert [t.proposal_id for t in snap.takeovers] == ["p1"]
    assert {m.uuid for m in snap.members} == {A, B}
    # and it replays: B silent from 9.8 s is dead at 11.0 s; C (known since 5 s, never
    # heard) died at 6.2 s, in the warm-up: not shown
    with read_recording(out) as rec:
        events = replay(rec, replay_settings(rec.header.settings)).events
    dead = {e.member: e.at_ms for e in events if e.kind == "state" and e.data["to"] == "dead"}
    assert dead[B] == T + 9_800 + 1_200
    assert set(dead) == {B}
    assert any(e.kind == "command" and e.member == A for e in events)


def test_a_window_older_than_the_stream_starts_at_the_oldest_heartbeat(
    r: redis.Redis, store: Store, tmp_path: Path
) -> None:
    fill(r, store)
    result = record(r, store, SETTINGS, tmp_path / "r.qwcrec", since_ms=T - 60_000)
    (warning,) = result.warnings
    assert "no longer in Redis" in warning
    assert (result.header.since_ms, result.header.start_ms) == (T, T)
    assert result.header.until_ms > T + 20_000  # now, on the server's clock


def test_by_default_the_whole_stream_until_now(
    r: redis.Redis, store: Store, tmp_path: Path
) -> None:
    fill(r, store)
    result = record(r, store, SETTINGS, tmp_path / "r.qwcrec")
    assert result.warnings == [] and result.header.since_ms == T
    assert result.entries["heartbeats"] == 100 + 50
    assert result.entries[f"commands:{B}"] == 1
    with read_recording(result.path) as rec:
        events = replay(rec, replay_settings(rec.header.settings)).events
    dead = {e.member: e.at_ms for e in events if e.kind == "state" and e.data["to"] == "dead"}
    assert dead == {A: T + 19_800 + 1_200, B: T + 9_800 + 1_200, C: T + 5_000 + 1_200}

"""Signed heartbeats (``qwcontrol.clusterMode.heartbeat.secret``), in-process against real
Redis and a real store: producers sign, liveness workers believe only valid signatures and
no copy of a heartbeat already heard; the secret is never shown or logged; recordings of
signed heartbeats replay."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from producers.heartbeat import HeartbeatProducer
from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, SIGNATURE_FIELD, Keys
from schemas.messages import Heartbeat
from schemas.settings import Settings
from schemas.signing import sign, signature_problem
from tests.cluster import membership_changes, new_uuid
from tests.test_liveness_worker import settings as liveness_settings
from workers.bus.streams import decode_entries, entry_ms
from workers.cli.main import cli
from workers.liveness import trust, view
from workers.liveness.worker import LivenessWorker
from workers.replay.engine import replay
from workers.replay.fileformat import read_recording
from workers.replay.record import record
from workers.replay.settings import replay_settings
from workers.store import Store

KEYS = Keys()
SECRET = "a-secret-of-32-characters-000000"
ENV = "QWC_CLUSTERMODE_HEARTBEAT_SECRET"


def settings(redis_url: str, tmp_path: Path) -> Settings:
    fast = liveness_settings(redis_url, tmp_path, 0.3, 0.6)
    return Settings(**{**fast.model_dump(), "heartbeat_secret": SECRET})


def producer(
    r: redis.Redis, uuid: str, secret: str | None = SECRET, **kw: object
) -> HeartbeatProducer:
    return HeartbeatProducer(r, uuid=uuid, name=uuid[:8], interval_s=1, secret=secret, **kw)  # type: ignore[arg-type]


def reasons(r: redis.Redis) -> dict[bytes, str]:
    """Original entry id -> dead-letter reason."""
    return {f[b"id"]: f[b"reason"].decode() for _, f in r.xrange(KEYS.dead_letters)}


def state(r: redis.Redis, member: str) -> str | None:
    s = view.read_snapshot(r, KEYS).states.get(member)
    return None if s is None else s.value


def test_sign_and_check_a_signature() -> None:
    payload = encode(Heartbeat(uuid=new_uuid(), name="m", seq=1, started_at_ms=1, sent_at_ms=1))
    good = {MESSAGE_FIELD: payload, SIGNATURE_FIELD: sign(SECRET.encode(), payload)}
    assert len(good[SIGNATURE_FIELD]) == 64
    assert signature_problem(SECRET.encode(), good) is None
    assert "unsigned" in (signature_problem(SECRET.encode(), {MESSAGE_FIELD: payload}) or "")
    altered = {**good, MESSAGE_FIELD: payload + b"x"}
    for fields, key in ((good, b"another-secret-0123456789"), (altered, SECRET.encode())):
        assert "does not match" in (signature_problem(key, fields) or "")


def test_only_validly_signed_heartbeats_move_the_view(
    r: redis.Redis,
    store: Store,
    tmp_path: Path,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = LivenessWorker(r, store, settings(redis_url, tmp_path), consumer="w1")
    real, unsigned, other, altered = (new_uuid() for _ in range(4))
    with caplog.at_level(logging.DEBUG):
        kept = producer(r, real).beat()
        refused = {
            producer(r, unsigned, secret=None).beat(): "unsigned heartbeat",
            producer(r, other, secret="another-secret-0123456789").beat(): "does not match",
        }
        (_, fields), *_ = r.xrange(KEYS.heartbeats, min=kept, max=kept)
        forged_hb = Heartbeat(uuid=altered, name="x", seq=9, started_at_ms=1, sent_at_ms=1)
        forged = {**fields, MESSAGE_FIELD: encode(forged_hb)}  # a real signature, moved
        refused[r.xadd(KEYS.heartbeats, forged)] = "does not match"  # type: ignore[index]
        w.step()
    assert set(view.read_snapshot(r, KEYS).states) == {real} and state(r, real) == "active"
    letters = reasons(r)
    assert set(letters) == set(refused)
    for entry_id, why in refused.items():
        assert why in letters[entry_id]  # type: ignore[index]
    assert [e for e, _ in r.xrange(KEYS.heartbeats)] == [kept]  # refused ones deleted
    assert r.xpending(KEYS.heartbeats, "liveness")["pending"] == 0
    assert (
        SECRET not in caplog.text
        and SECRET.encode() not in str(r.xrange(KEYS.dead_letters)).encode()
    )


def test_a_copy_of_a_signed_heartbeat_does_not_keep_a_dead_member_alive(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    """An attacker re-adds the member's last signed heartbeat, fields and all, after it
    went silent: each copy is dead-lettered as a replay, and the member dies on time."""
    w = LivenessWorker(r, store, settings(redis_url, tmp_path), consumer="w1")
    member = new_uuid()
    beats = producer(r, member)
    beats.beat()
    last = beats.beat()
    w.step()
    (_, captured), *_ = r.xrange(KEYS.heartbeats, min=last, max=last)
    copies = []
    while state(r, member) != "dead":
        copies.append(r.xadd(KEYS.heartbeats, captured))
        w.step()
    dead = membership_changes(r, KEYS, member)[-1]
    assert dead.last_seen_ms == entry_ms(last)  # type: ignore[arg-type]
    letters = reasons(r)
    assert set(letters) == set(copies)
    assert all("replayed heartbeat" in why and "up to seq 2" in why for why in letters.values())


def test_the_replay_rule_believes_redeliveries_and_new_incarnations(r: redis.Redis) -> None:
    """A heartbeat delivered again (the same, older entry) is believed; so is a new
    incarnation whose start is earlier than the last (the member's clock went back)."""
    member = new_uuid()
    first = producer(r, member, clock=lambda: 2_000_000.0)
    ids = [first.beat() for _ in range(3)]
    beats = decoded(r)
    assert trust.not_replayed(r, KEYS, beats)[1] == []
    kept, refused = trust.not_replayed(r, KEYS, beats)  # delivered again
    assert kept == beats and refused == []
    again = producer(r, member, clock=lambda: 1_000_000.0)  # restarted, clock behind
    again.beat()
    (_, captured), *_ = r.xrange(KEYS.heartbeats, min=ids[1], max=ids[1])
    copy = r.xadd(KEYS.heartbeats, captured)
    kept, refused = trust.not_replayed(r, KEYS, decoded(r, after=ids[2]))
    assert [k[1].started_at_ms for k in kept] == [1_000_000_000]
    assert [x.entry_id for x in refused] == [copy]


def test_the_incarnations_kept_per_member_are_bounded(r: redis.Redis) -> None:
    member = new_uuid()
    for i in range(trust.INCARNATIONS_KEPT + 4):
        producer(r, member, clock=lambda i=i: 1_000.0 + i).beat()
    trust.not_replayed(r, KEYS, decoded(r))
    raw = r.hget(KEYS.view_incarnations, member)
    import msgpack

    kept = msgpack.unpackb(raw)  # type: ignore[arg-type]
    assert len(kept) == trust.INCARNATIONS_KEPT
    assert min(int(s) for s in kept) == (1_000 + 4) * 1000  # the first heard went first


def decoded(r: redis.Redis, after: bytes | None = None) -> list[trust.Beat]:
    entries = r.xrange(KEYS.heartbeats, min=b"(" + after if after else "-")
    return [(d.entry_id, d.message, d.raw) for d in decode_entries(entries)]  # type: ignore[misc]


def test_recordings_of_signed_heartbeats_replay(
    r: redis.Redis, store: Store, tmp_path: Path, redis_url: str
) -> None:
    """The recording holds the believed heartbeats only (refused ones were deleted)."""
    s = settings(redis_url, tmp_path)
    w = LivenessWorker(r, store, s, consumer="w1")
    member = new_uuid()
    beats = producer(r, member)
    beats.beat()
    producer(r, new_uuid(), secret=None).beat()
    beats.beat()
    w.step()
    out = tmp_path / "rec.qwcr"
    record(r, store, s, out)
    with read_recording(out) as rec:
        assert "qwcontrol.clusterMode.heartbeat.secret" not in rec.header.settings
        result = replay(rec, replay_settings(rec.header.settings))
    assert result.heartbeats == 2 and result.bad_entries == 0


def _config_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, secret: str) -> tuple[int, str]:
    for name in list(os.environ):
        if name.startswith("QWC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["config", "check", "--json"], env={ENV: secret})
    return result.exit_code, result.output


def test_the_secret_comes_from_the_environment_and_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    code, out = _config_check(monkeypatch, tmp_path, SECRET)
    assert code == 0 and SECRET not in out
    row = json.loads(out)["settings"]["qwcontrol.clusterMode.heartbeat.secret"]
    assert row["value"] == "***" and row["env"] == ENV
    code, out = _config_check(monkeypatch, tmp_path, "short")
    assert code == 2 and "heartbeat.secret" in out and "short" not in out

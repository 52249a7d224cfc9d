"""Hostile heartbeats end to end: real ``qwc`` nodes, a liveness and a takeover worker.
A heartbeat of a phantom member is added with an entry id an hour in the future; a real
member, heard twice since, is then SIGKILLed. It still turns inactive and dead on time
and is taken over once; the phantom never shows up and gets no job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.codec import encode
from schemas.keys import MESSAGE_FIELD, Keys
from schemas.messages import Heartbeat
from tests.cluster import Cluster, membership_changes, new_uuid, wait_for
from tests.test_takeover_live import TAKEOVER_ENV, add_jobs, owners, start, takeovers
from workers.bus.streams import server_time_ms
from workers.liveness.view import read_snapshot

pytestmark = pytest.mark.processes

KEYS = Keys()
INACTIVE_MS, DEAD_MS = 600, 1200
LATE_MS = 500  # how late a state change may be applied on a loaded machine


@pytest.fixture
def tc(cluster: Cluster) -> Iterator[Cluster]:
    cluster.extra_env.update(TAKEOVER_ENV)
    yield cluster


def test_a_future_heartbeat_freezes_nothing_and_its_phantom_gets_no_job(tc: Cluster) -> None:
    nodes = start(tc, members=3)
    r = tc.client()
    victim, proc = nodes[0]
    jobs = add_jobs(tc, victim, 6)
    phantom = new_uuid()
    hb = Heartbeat(uuid=phantom, name="phantom", seq=1, started_at_ms=0, sent_at_ms=0)
    future_id = f"{server_time_ms(r) + 3_600_000}-0".encode()
    heard = {read_snapshot(r, KEYS).seen_ms[victim]}  # its last-seen times
    r.xadd(KEYS.heartbeats, {MESSAGE_FIELD: encode(hb)}, id=future_id)

    def heard_twice_more() -> bool:
        heard.add(read_snapshot(r, KEYS).seen_ms[victim])
        return len(heard) >= 3

    wait_for(heard_twice_more, what="the victim heard twice after the forged entry")
    proc.kill()
    wait_for(lambda: all(o != victim for o in owners(tc).values()), timeout_s=20, what="moved")

    changes = membership_changes(r, KEYS, victim)
    inactive, dead = (
        next(c for c in changes if c.to_state.value == s) for s in ("inactive", "dead")
    )
    assert 0 <= inactive.at_ms - inactive.last_seen_ms - INACTIVE_MS <= LATE_MS
    assert 0 <= dead.at_ms - dead.last_seen_ms - DEAD_MS <= LATE_MS
    assert dead.last_seen_ms <= server_time_ms(r)
    assert phantom not in read_snapshot(r, KEYS).states
    assert phantom not in set(owners(tc).values())
    (letter,) = [f for _, f in r.xrange(KEYS.dead_letters) if f[b"id"] == future_id]
    assert b"ahead of the Redis server clock" in letter[b"reason"]
    (taken,) = [t for t in takeovers(tc) if t.outcome == "committed"]
    assert taken.dead_uuid == victim and taken.jobs_moved == len(jobs)
    assert set(taken.destinations) == {u for u, _ in nodes[1:]}

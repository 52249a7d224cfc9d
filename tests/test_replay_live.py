"""Acceptance: a live run of real processes, recorded with ``qwc record`` and replayed with
``qwc replay``, reproduces what the workers did.

"Exactly" means: for every member the same state changes (from, to) in the same order,
each replayed at the time the rules give (the deadline, or the heartbeat) and recorded by
the liveness worker at most TOLERANCE_MS later (the bound of the liveness live tests; the
worker is never early), a change to inactive or dead after the same last heartbeat; the
same proposals per member, decided the same way (committed, cancelled, skipped, held),
moving the same number of jobs to the same members, and retrying executions on the same
members. A what-if with a considerDead longer than a member's pause removes its takeover.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas.keys import Keys
from tests.cluster import Cluster, membership_changes
from tests.data.make_recordings import SCENARIOS, run_scenario
from workers.store import Store, create_store_engine, list_recoveries, list_takeovers

pytestmark = pytest.mark.processes

KEYS = Keys()
TOLERANCE_MS = 300
CM = "qwcontrol.clusterMode."


def record_and_replay(c: Cluster, tmp_path: Path, *args: str) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "live.qwcrec"
    c.run("record", "--out", str(path))
    result = c.run("replay", str(path), "--json", *args, check=False)
    assert result.returncode in (0, 1), result.stderr
    return path, json.loads(result.stdout)


def audit(c: Cluster) -> dict[str, list[Any]]:
    store = Store(create_store_engine(c.database_url))
    try:
        return {
            "takeover": sorted(list_takeovers(store, limit=None), key=lambda t: t.proposed_ms),
            "recovery": sorted(list_recoveries(store, limit=None), key=lambda t: t.proposed_ms),
        }
    finally:
        store.close()


def final_decisions(events: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    """The last decision of each replayed proposal, in the order they were proposed."""
    last: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["event"] == "decided" and e["what"] == what:
            last[e["proposal"]] = e
    return sorted(last.values(), key=lambda e: (_proposed_at(events, e), e["member"]))


def _proposed_at(events: list[dict[str, Any]], decided: dict[str, Any]) -> int:
    pid = decided["proposal"]
    return next((e["at_ms"] for e in events if e.get("proposal") == pid), decided["at_ms"])


@pytest.mark.parametrize("scenario", ["killed", "returns_in_sleep"])
def test_a_live_run_replays_to_the_same_changes_and_decisions(
    cluster: Cluster, tmp_path: Path, scenario: str
) -> None:
    run_scenario(cluster, SCENARIOS[scenario])
    _, body = record_and_replay(cluster, tmp_path, "--diff", "--tolerance-ms", str(TOLERANCE_MS))
    events = body["events"]
    live = membership_changes(cluster.client(), KEYS)
    members = sorted({c.uuid for c in live})
    assert members == sorted({e["member"] for e in events if e["event"] == "state"})
    for uuid in members:
        recorded = [c for c in live if c.uuid == uuid]
        replayed = [e for e in events if e["event"] == "state" and e["member"] == uuid]
        assert [(c.from_state, c.to_state) for c in recorded] == [
            (e["from"], e["to"]) for e in replayed
        ]
        for c, e in zip(recorded, replayed, strict=True):
            assert 0 <= c.at_ms - e["at_ms"] <= TOLERANCE_MS, (c, e)
            if c.to_state.value != "active":
                assert c.last_seen_ms == e["last_seen_ms"]
    rows = audit(cluster)
    for what in ("takeover", "recovery"):
        decided = final_decisions(events, what)
        assert [(r.dead_uuid, r.outcome) for r in rows[what]] == [
            (e["member"], e["outcome"]) for e in decided
        ]
        for r, e in zip(rows[what], decided, strict=True):
            if r.outcome == "committed" and what == "takeover":
                assert (r.jobs_moved, r.destinations) == (len(e["jobs"]), e["destinations"])
            if r.outcome == "committed" and what == "recovery":
                assert r.executions_marked == len(e["marked"])
                assert sorted(x["to"] for x in r.retries) == sorted(x["to"] for x in e["retries"])
    assert body["diff"]["differences"] == []
    assert any(e["event"] == "decided" and e["outcome"] == "committed" for e in events)


def test_a_longer_considerDead_removes_the_takeover_of_a_shorter_pause(
    cluster: Cluster, tmp_path: Path
) -> None:
    run_scenario(cluster, SCENARIOS["paused"])
    paused = SCENARIOS["paused"]
    victim = f"{1:08x}-0000-4000-8000-{paused.number:012x}"
    path, recorded = record_and_replay(cluster, tmp_path)
    states = [e for e in recorded["events"] if e["event"] == "state" and e["member"] == victim]
    dead, back = states[-2], states[-1]
    assert (dead["to"], back["to"]) == ("dead", "active")
    silent_s = (back["at_ms"] - dead["last_seen_ms"]) / 1000
    taken = [e for e in recorded["events"] if e.get("outcome") == "committed"]
    assert [e["member"] for e in taken] == [victim]
    longer = f"{CM}heartbeat.considerDead={silent_s + 1:.3f}"
    result = cluster.run("replay", str(path), "--json", "--diff", "--set", longer, check=False)
    assert result.returncode == 1  # the decisions differ from the recorded ones
    what_if = json.loads(result.stdout)
    assert [e for e in what_if["events"] if e["event"] in ("proposed", "decided")] == []
    assert [e["to"] for e in what_if["events"] if e["member"] == victim] == [
        "active",
        "inactive",
        "active",
    ]
    gone = {(d["stream"], d["what"]) for d in what_if["diff"]["differences"]}
    assert ("takeover", "only recorded") in gone

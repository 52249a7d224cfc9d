"""Manual takeover from the CLI: the compatible answer, filters, history, bad input."""

from __future__ import annotations

import json

import pytest

from tests.cluster import Cluster, new_uuid
from tests.test_takeover_live import add_jobs, owners, start

pytestmark = pytest.mark.processes


def test_manual_takeover_moves_jobs_and_answers_like_the_api(cluster: Cluster) -> None:
    nodes = start(cluster, members=2, takeover_workers=0)
    gone = new_uuid()
    jobs = add_jobs(cluster, gone, 4)
    answer = json.loads(cluster.run("takeover", "--from", gone, "--json").stdout)
    assert answer["success"] is True
    assert answer["takeoverSchedule"]["server"] == {"uuid": gone}
    moved = answer["takeoverSchedule"]["jobs"]
    assert moved["total"] == 4 and moved["failed"] == []
    assert sorted(m["id"] for m in moved["successful"]) == sorted(jobs)
    assert {m["previous-owner"] for m in moved["successful"]} == {gone}
    after = owners(cluster)
    assert sorted(after[j] for j in jobs) == sorted([nodes[0][0]] * 2 + [nodes[1][0]] * 2)

    # --all --to one member, narrowed to one job
    target = nodes[0][0]
    one = next(j for j in jobs if after[j] != target)
    answer = json.loads(
        cluster.run("takeover", "--all", "--to", target, "--job", one, "--json").stdout
    )
    assert answer["takeoverSchedule"]["server"] == {"all": True}
    assert answer["self"]["server"]["uuid"] == target
    assert [m["id"] for m in answer["takeoverSchedule"]["jobs"]["successful"]] == [one]
    assert owners(cluster)[one] == target

    history = json.loads(cluster.run("takeovers", "--json").stdout)
    manual = [h for h in history if h["policy"] == "manual"]
    assert len(manual) == 2 and {h["outcome"] for h in manual} == {"manual"}
    assert {
        "proposal_id",
        "dead_uuid",
        "proposed_at",
        "due_at",
        "decided_at",
        "jobs_moved",
        "destinations",
    } <= set(manual[0])


def test_manual_takeover_needs_exactly_one_source(cluster: Cluster) -> None:
    neither = cluster.run("takeover", "--json", check=False)
    assert neither.returncode == 2 and "--from" in neither.stderr
    both = cluster.run("takeover", "--all", "--from", new_uuid(), check=False)
    assert both.returncode == 2
    bad = cluster.run("takeover", "--from", "not-a-uuid", check=False)
    assert bad.returncode == 2 and "not a UUID" in bad.stderr
    assert "Traceback" not in neither.stderr + both.stderr + bad.stderr


def test_manual_takeover_without_any_active_member_fails_cleanly(cluster: Cluster) -> None:
    gone = new_uuid()
    add_jobs(cluster, gone, 2)
    result = cluster.run("takeover", "--from", gone, "--json", check=False)
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["success"] is False and answer["takeoverSchedule"]["jobs"]["total"] == 2
    assert all(o == gone for o in owners(cluster).values())

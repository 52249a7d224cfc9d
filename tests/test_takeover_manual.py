"""Manual takeover from the CLI: the compatible answer, filters, history, bad input (the CLI
in-process on real Redis and SQL, members set in the liveness view by hand)."""

from __future__ import annotations

import json

import redis

from tests.cluster import new_uuid
from tests.inprocess import Qwc, View, create_jobs, owners
from workers.store import Store


def test_manual_takeover_moves_jobs_and_answers_like_the_api(
    r: redis.Redis, store: Store, qwc: Qwc
) -> None:
    members = [new_uuid(), new_uuid()]
    for m in members:
        View(r).beat(m)
    gone = new_uuid()
    jobs = create_jobs(store, gone, 4)
    answer = qwc.json("takeover", "--from", gone)
    assert answer["success"] is True
    assert answer["takeoverSchedule"]["server"] == {"uuid": gone}
    moved = answer["takeoverSchedule"]["jobs"]
    assert moved["total"] == 4 and moved["failed"] == []
    assert sorted(m["id"] for m in moved["successful"]) == sorted(jobs)
    assert {m["previous-owner"] for m in moved["successful"]} == {gone}
    after = owners(store)
    assert sorted(after[j] for j in jobs) == sorted([members[0]] * 2 + [members[1]] * 2)

    # --all --to one member, narrowed to one job
    target = members[0]
    one = next(j for j in jobs if after[j] != target)
    answer = qwc.json("takeover", "--all", "--to", target, "--job", one)
    assert answer["takeoverSchedule"]["server"] == {"all": True}
    assert answer["self"]["server"]["uuid"] == target
    assert [m["id"] for m in answer["takeoverSchedule"]["jobs"]["successful"]] == [one]
    assert owners(store)[one] == target

    history = qwc.json("takeovers")
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


def test_manual_takeover_needs_exactly_one_source(store: Store, qwc: Qwc) -> None:
    neither = qwc("takeover", "--json")
    assert neither.exit_code == 2 and "--from" in neither.stderr
    both = qwc("takeover", "--all", "--from", new_uuid())
    assert both.exit_code == 2
    bad = qwc("takeover", "--from", "not-a-uuid")
    assert bad.exit_code == 2 and "not a UUID" in bad.stderr
    assert "Traceback" not in neither.stderr + both.stderr + bad.stderr


def test_manual_takeover_without_any_active_member_fails_cleanly(
    r: redis.Redis, store: Store, qwc: Qwc
) -> None:
    gone = new_uuid()
    create_jobs(store, gone, 2)
    result = qwc("takeover", "--from", gone, "--json")
    assert result.exit_code == 1
    answer = json.loads(result.stdout)
    assert answer["success"] is False and answer["takeoverSchedule"]["jobs"]["total"] == 2
    assert all(o == gone for o in owners(store).values())

"""Cluster members: the liveness worker's upsert, jobs owned, orphaned owners."""

from __future__ import annotations

import pytest

from schemas.errors import NotFoundError
from workers.store import (
    MemberRow,
    Store,
    create_job,
    get_member,
    known_member_uuids,
    list_members,
    record_member_state,
)

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
GONE = "dddddddd-0000-4000-8000-000000000004"


def test_first_record_inserts_the_member(store: Store) -> None:
    assert record_member_state(
        store,
        uuid=A,
        name="node-a",
        state="active",
        last_seen_ms=1_000,
        changed_ms=1_000,
        tags=["eu", "db"],
        passive=True,
        version="2.1.0",
    )
    assert get_member(store, A) == MemberRow(
        uuid=A,
        name="node-a",
        tags=("eu", "db"),
        state="active",
        passive=True,
        version="2.1.0",
        first_seen_ms=1_000,
        last_seen_ms=1_000,
        state_changed_ms=1_000,
        jobs_owned=0,
    )


def test_state_change_updates_and_keeps_unset_fields(store: Store) -> None:
    record_member_state(
        store, uuid=A, name="node-a", state="active", last_seen_ms=1_000, changed_ms=1_000,
        tags=["eu"], passive=True, version="2.1.0",
    )  # fmt: skip
    assert record_member_state(
        store, uuid=A, name="", state="inactive", last_seen_ms=1_000, changed_ms=151_000
    )
    row = get_member(store, A)
    assert (row.state, row.state_changed_ms, row.last_seen_ms) == ("inactive", 151_000, 1_000)
    assert (row.name, row.tags, row.passive, row.version) == ("node-a", ("eu",), True, "2.1.0")
    assert row.first_seen_ms == 1_000


def test_same_state_keeps_the_change_time_and_last_seen_only_grows(store: Store) -> None:
    record_member_state(store, uuid=A, name="a", state="active", last_seen_ms=5_000, changed_ms=0)
    record_member_state(store, uuid=A, name="a", state="active", last_seen_ms=9_000, changed_ms=9)
    record_member_state(store, uuid=A, name="a", state="active", last_seen_ms=7_000, changed_ms=9)
    row = get_member(store, A)
    assert (row.state_changed_ms, row.last_seen_ms) == (0, 9_000)


def test_a_stale_state_change_is_ignored(store: Store) -> None:
    record_member_state(store, uuid=A, name="a", state="dead", last_seen_ms=1, changed_ms=300_000)
    assert not record_member_state(
        store, uuid=A, name="a", state="inactive", last_seen_ms=1, changed_ms=150_000
    )
    assert get_member(store, A).state == "dead"


def test_unknown_state_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="zombie"):
        record_member_state(store, uuid=A, name="a", state="zombie", last_seen_ms=1, changed_ms=1)
    with pytest.raises(NotFoundError):
        get_member(store, A)


def _job(store: Store, name: str, owner: str) -> None:
    create_job(
        store,
        project="p",
        group_name="",
        name=name,
        command=["true"],
        schedule=None,
        modified_by=owner,
        now_ms=1,
    )


def test_list_members_counts_owned_jobs(store: Store) -> None:
    record_member_state(store, uuid=B, name="b", state="active", last_seen_ms=1, changed_ms=1)
    record_member_state(store, uuid=A, name="a", state="dead", last_seen_ms=1, changed_ms=1)
    _job(store, "j1", A)
    _job(store, "j2", A)
    _job(store, "j3", GONE)
    assert [(m.uuid, m.jobs_owned) for m in list_members(store)] == [(A, 2), (B, 0)]
    assert get_member(store, A).jobs_owned == 2


def test_known_member_uuids_include_orphaned_owners(store: Store) -> None:
    assert known_member_uuids(store) == set()
    record_member_state(store, uuid=A, name="a", state="active", last_seen_ms=1, changed_ms=1)
    _job(store, "j1", A)
    _job(store, "j2", GONE)
    assert known_member_uuids(store) == {A, GONE}


def test_a_member_never_heard_has_no_last_seen(store: Store) -> None:
    assert record_member_state(
        store, uuid=GONE, name="", state="unknown", last_seen_ms=None, changed_ms=7_000
    )
    row = get_member(store, GONE)
    assert (row.state, row.last_seen_ms, row.first_seen_ms) == ("unknown", None, 7_000)
    record_member_state(store, uuid=GONE, name="", state="dead", last_seen_ms=None, changed_ms=9)
    assert get_member(store, GONE).state == "unknown"  # older than the recorded change
    record_member_state(
        store, uuid=GONE, name="", state="dead", last_seen_ms=None, changed_ms=307_000
    )
    row = get_member(store, GONE)
    assert (row.state, row.last_seen_ms, row.state_changed_ms) == ("dead", None, 307_000)
    record_member_state(
        store, uuid=GONE, name="back", state="active", last_seen_ms=400_000, changed_ms=400_000
    )
    row = get_member(store, GONE)
    assert (row.name, row.last_seen_ms, row.first_seen_ms) == ("back", 400_000, 7_000)

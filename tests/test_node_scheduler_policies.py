"""The node's scheduler with a job's time zone and misfire policy, driven by a moved clock:
the zone a schedule is read in (the job's, else the member's default) across real
daylight-saving changes; ``skip`` with a per-job grace; ``fire_once``: one catch-up for the
times missed (a paused member, a dead previous owner), none for times it saw come. Pure."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from schemas.errors import ScheduleError
from tests.test_node_scheduler import job as base_job
from workers.node.scheduler import MAX_MISSED_RECORDED, Fire, JobSchedule, Misfire
from workers.store import JobRow

EVERY_SECOND = "* * * * * *"


def utc_ms(text: str) -> int:
    """Epoch ms of an ISO time with its offset."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


T0 = utc_ms("2026-01-01T00:00:00.250+00:00")


def at(seconds: float) -> int:
    """T0's second boundary + ``seconds`` (T0 is 250 ms into a second)."""
    return T0 - 250 + round(seconds * 1000)


def job(
    schedule: str = EVERY_SECOND,
    *,
    zone: str | None = None,
    misfire: str = "skip",
    grace_s: float | None = None,
    epoch: int = 1,
    last_fire_ms: int | None = None,
    job_id: str = "job-1",
) -> JobRow:
    return base_job(
        job_id,
        schedule,
        epoch=epoch,
        last_fire_ms=last_fire_ms,
        time_zone=zone,
        misfire=misfire,
        misfire_grace_s=grace_s,
    )


def fire_all(schedule: JobSchedule, now_ms: int) -> list[Fire]:
    """Due fires at ``now_ms``, each reported claimed (a member whose fence agreed)."""
    fires = list(schedule.due(now_ms).fires)
    for f in fires:
        schedule.fired(f.job_id, f.fire_ms)
    return fires


def local(ms: int, zone: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(zone)).isoformat()


# ---- time zones ------------------------------------------------------------------------


def test_a_job_is_read_in_its_zone_else_in_the_members_default() -> None:
    s = JobSchedule(default_time_zone="America/New_York")
    s.reload(
        [job("0 0 2 * * *", zone="Europe/Paris", job_id="paris"), job("0 0 2 * * *", job_id="ny")],
        now_ms=T0,
    )
    plans = s.plans
    assert local(plans["paris"].next_fire_ms, "Europe/Paris") == "2026-01-01T02:00:00+01:00"
    assert local(plans["ny"].next_fire_ms, "America/New_York") == "2026-01-01T02:00:00-05:00"
    assert (plans["paris"].time_zone, plans["ny"].time_zone) == ("Europe/Paris", "America/New_York")


def test_the_default_zone_is_utc_and_an_unknown_one_is_refused() -> None:
    s = JobSchedule()
    s.reload([job("0 0 2 * * *")], now_ms=T0)
    assert s.next_due_ms() == utc_ms("2026-01-01T02:00:00+00:00")
    with pytest.raises(ScheduleError, match="did you mean 'Europe/Paris'"):
        JobSchedule(default_time_zone="europe/paris")


def test_a_changed_zone_plans_the_job_anew() -> None:
    s = JobSchedule()
    s.reload([job("0 0 2 * * *")], now_ms=T0)
    result = s.reload([job("0 0 2 * * *", zone="Asia/Tokyo")], now_ms=T0 + 1)
    (plan,) = result.added
    assert local(plan.next_fire_ms, "Asia/Tokyo") == "2026-01-02T02:00:00+09:00"


@pytest.mark.parametrize(
    ("schedule", "zone", "start", "expected"),
    [
        # spring forward: 02:30 does not exist, fired once when the clock jumps
        (
            "0 30 2 * * *",
            "Europe/Paris",
            "2025-03-29T12:00:00+01:00",
            ["2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"],
        ),
        # fall back: 02:30 exists twice, fired once (the first)
        (
            "0 30 2 * * *",
            "Europe/Paris",
            "2025-10-25T12:00:00+02:00",
            ["2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"],
        ),
        (
            "0 30 1 * * *",
            "America/New_York",
            "2025-11-01T12:00:00-04:00",
            ["2025-11-02T01:30:00-04:00", "2025-11-03T01:30:00-05:00"],
        ),
        (
            "0 30 2 ? * *",  # Quartz
            "America/New_York",
            "2025-03-08T12:00:00-05:00",
            ["2025-03-09T03:00:00-04:00", "2025-03-10T02:30:00-04:00"],
        ),
    ],
)
def test_daylight_saving_changes_fire_each_local_time_once(
    schedule: str, zone: str, start: str, expected: list[str]
) -> None:
    s = JobSchedule()
    s.reload([job(schedule, zone=zone)], now_ms=utc_ms(start))
    fired: list[str] = []
    for _ in expected:
        due_ms = s.next_due_ms()
        assert due_ms is not None
        fired += [local(f.fire_ms, zone) for f in fire_all(s, due_ms)]
    assert fired == expected


# ---- skip, with the job's grace --------------------------------------------------------


def test_skip_fires_each_late_time_within_the_jobs_grace_and_drops_older_ones() -> None:
    s = JobSchedule()  # default grace 60 s; the job's own is 3 s
    s.reload([job(grace_s=3)], now_ms=T0)
    due = s.due(at(10))  # paused from 1 s to 10 s
    assert [f.fire_ms for f in due.fires] == [at(7), at(8), at(9), at(10)]
    assert {f.trigger for f in due.fires} == {"schedule"}
    assert due.misfires == (Misfire("job-1", at(1), at(7), 6),)


def test_skip_does_not_fire_the_times_a_dead_owner_missed() -> None:
    s = JobSchedule()
    s.reload([job(epoch=2, last_fire_ms=at(1))], now_ms=at(5.5))  # taken over at 5.5 s
    assert s.due(at(5.9)).fires == ()
    assert [f.fire_ms for f in fire_all(s, at(6))] == [at(6)]


# ---- fire_once ---------------------------------------------------------------------------


def test_fire_once_fires_a_time_it_saw_come_as_usual() -> None:
    s = JobSchedule()
    s.reload([job(misfire="fire_once")], now_ms=T0)
    assert fire_all(s, at(1)) == [Fire("job-1", 1, at(1), ("true",))]
    assert fire_all(s, at(2) + 5) == [Fire("job-1", 1, at(2), ("true",))]


def test_fire_once_catches_up_a_paused_members_times_once() -> None:
    s = JobSchedule()
    s.reload([job(misfire="fire_once")], now_ms=T0)
    fire_all(s, at(1))
    (catchup,) = fire_all(s, at(6) + 300)  # paused from 1.2 s to 6.3 s
    missed = (at(2), at(3), at(4), at(5), at(6))
    assert catchup == Fire("job-1", 1, at(6), ("true",), trigger="catchup", missed_ms=missed)
    assert fire_all(s, at(6) + 400) == []
    assert [f.trigger for f in fire_all(s, at(7))] == ["schedule"]


def test_fire_once_catches_up_only_within_the_grace_and_reports_the_rest() -> None:
    s = JobSchedule()
    s.reload([job(misfire="fire_once", grace_s=2.5)], now_ms=T0)
    due = s.due(at(10))
    assert due.misfires == (Misfire("job-1", at(1), at(8), 7),)
    (catchup,) = due.fires
    assert (catchup.trigger, catchup.fire_ms, catchup.missed_ms) == (
        "catchup",
        at(10),
        (at(8), at(9), at(10)),
    )


def test_after_a_takeover_fire_once_catches_up_what_the_dead_owner_missed() -> None:
    s = JobSchedule()
    # the dead owner claimed 1 s last; the new owner sees the job (epoch 2) at 5.5 s
    s.reload([job(misfire="fire_once", epoch=2, last_fire_ms=at(1))], now_ms=at(5.5))
    (catchup,) = fire_all(s, at(5.5))
    assert (catchup.trigger, catchup.owner_epoch) == ("catchup", 2)
    assert catchup.missed_ms == (at(2), at(3), at(4), at(5))
    assert catchup.fire_ms == at(5)  # claiming it claims the older ones with it
    assert [(f.trigger, f.fire_ms) for f in fire_all(s, at(6))] == [("schedule", at(6))]


def test_one_time_a_previous_owner_missed_is_a_catchup_too() -> None:
    s = JobSchedule()
    daily = "0 0 2 * * *"
    last = utc_ms("2026-01-01T02:00:00+00:00")
    missed = utc_ms("2026-01-02T02:00:00+00:00")
    s.reload(
        [job(daily, misfire="fire_once", grace_s=3600, epoch=3, last_fire_ms=last)],
        now_ms=missed + 40_000,
    )
    (catchup,) = fire_all(s, missed + 40_000)
    assert (catchup.trigger, catchup.fire_ms, catchup.missed_ms) == ("catchup", missed, (missed,))


def test_fire_once_never_back_fills_a_new_job() -> None:
    s = JobSchedule()
    s.reload([job(misfire="fire_once")], now_ms=at(5.5))  # never fired: last_fire_ms None
    assert fire_all(s, at(5.9)) == []
    assert [f.trigger for f in fire_all(s, at(6))] == ["schedule"]


def test_a_long_backlog_is_one_catchup_at_the_newest_time() -> None:
    s = JobSchedule()
    s.reload([job(misfire="fire_once", grace_s=3600)], now_ms=T0)
    now = at(1800) + 500  # paused for half an hour: 1800 times due
    (catchup,) = fire_all(s, now)
    assert catchup.fire_ms == at(1800)
    assert len(catchup.missed_ms) == MAX_MISSED_RECORDED
    assert catchup.missed_ms[0] == at(1) and catchup.missed_ms[-1] == at(1800)
    assert s.next_due_ms() == at(1801)


def test_a_changed_misfire_setting_plans_the_job_anew() -> None:
    s = JobSchedule()
    s.reload([job()], now_ms=T0)
    assert s.reload([job()], now_ms=T0 + 1).added == ()
    (plan,) = s.reload([job(misfire="fire_once", grace_s=5)], now_ms=T0 + 2).added
    assert (plan.misfire, plan.misfire_grace_ms) == ("fire_once", 5000)

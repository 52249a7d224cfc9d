"""The node's scheduler, driven by a moved clock: due times, no backfill, resume after
``last_fire_ms``, lost jobs, misfires. Pure: no Redis, no SQL, the real cron library."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from workers.node import scheduler
from workers.node.scheduler import Fire, JobSchedule, Unplanned, count_times
from workers.store import JobRow

OWNER = "aaaaaaaa-0000-4000-8000-000000000001"


def ms(hh: int, mm: int, ss: int, milli: int = 0) -> int:
    """Epoch ms of 2026-01-01 hh:mm:ss.milli UTC."""
    at = datetime(2026, 1, 1, hh, mm, ss, milli * 1000, tzinfo=UTC)
    return int(at.timestamp() * 1000)


T0 = ms(0, 0, 0, 250)


def job(
    job_id: str = "job-1",
    schedule: str | None = "* * * * * *",
    *,
    epoch: int = 1,
    last_fire_ms: int | None = None,
    enabled: bool = True,
    command: tuple[str, ...] = ("true",),
    **settings: Any,
) -> JobRow:
    """A job row; ``settings`` are the other fields (time_zone, misfire, …)."""
    return JobRow(
        id=job_id,
        project="ops",
        group_name="",
        name=job_id,
        command=command,
        schedule=schedule,
        enabled=enabled,
        owner_uuid=OWNER,
        owner_epoch=epoch,
        retry_count=0,
        retry_delay_s=0.0,
        next_fire_ms=None,
        last_fire_ms=last_fire_ms,
        modified_by=OWNER,
        modified_ms=0,
        created_ms=0,
        **settings,
    )


def fire_times(schedule: JobSchedule, now_ms: int) -> list[tuple[str, int]]:
    """Due fires at ``now_ms``, each reported fired (as a member whose fence agreed)."""
    fires = schedule.due(now_ms).fires
    for f in fires:
        schedule.fired(f.job_id, f.fire_ms)
    return [(f.job_id, f.fire_ms) for f in fires]


def test_six_fields_every_second_fires_once_per_second() -> None:
    s = JobSchedule()
    result = s.reload([job()], now_ms=T0)
    assert [p.next_fire_ms for p in result.added] == [ms(0, 0, 1)]
    assert fire_times(s, ms(0, 0, 0, 999)) == []
    assert fire_times(s, ms(0, 0, 1)) == [("job-1", ms(0, 0, 1))]
    assert fire_times(s, ms(0, 0, 1, 500)) == []  # the same time never twice
    assert fire_times(s, ms(0, 0, 3, 10)) == [("job-1", ms(0, 0, 2)), ("job-1", ms(0, 0, 3))]
    assert s.next_due_ms() == ms(0, 0, 4)


def test_six_fields_have_seconds_first() -> None:
    s = JobSchedule()
    s.reload([job(schedule="30 * * * * *")], now_ms=T0)
    assert s.next_due_ms() == ms(0, 0, 30)
    assert fire_times(s, ms(0, 0, 30)) == [("job-1", ms(0, 0, 30))]
    assert s.next_due_ms() == ms(0, 1, 30)


def test_five_fields_are_minutes() -> None:
    s = JobSchedule()
    s.reload([job(schedule="*/5 * * * *")], now_ms=ms(0, 1, 30))
    assert s.next_due_ms() == ms(0, 5, 0)
    assert fire_times(s, ms(0, 4, 59, 999)) == []
    assert fire_times(s, ms(0, 5, 0, 1)) == [("job-1", ms(0, 5, 0))]
    assert s.next_due_ms() == ms(0, 10, 0)


def test_no_backfill_of_times_before_the_job_was_seen() -> None:
    s = JobSchedule()
    s.reload([job(last_fire_ms=ms(0, 0, 0) - 3_600_000)], now_ms=ms(0, 0, 10, 400))
    assert fire_times(s, ms(0, 0, 10, 900)) == []
    assert fire_times(s, ms(0, 0, 11)) == [("job-1", ms(0, 0, 11))]


def test_a_taken_over_job_resumes_after_the_previous_owners_last_fire() -> None:
    # the previous owner (clock slightly ahead) already claimed 00:00:03
    s = JobSchedule()
    s.reload([job(epoch=2, last_fire_ms=ms(0, 0, 3))], now_ms=ms(0, 0, 2, 500))
    assert s.next_due_ms() == ms(0, 0, 4)
    assert fire_times(s, ms(0, 0, 4)) == [("job-1", ms(0, 0, 4))]


def test_seen_time_survives_reloads_at_the_same_epoch() -> None:
    s = JobSchedule()
    s.reload([job()], now_ms=T0)
    second = s.reload([job()], now_ms=ms(0, 0, 5))
    assert second.added == () and second.removed == ()
    # not fired yet: 00:00:01 .. 00:00:05 are still due (the plan was not reset to now)
    assert [t for _, t in fire_times(s, ms(0, 0, 5))] == [ms(0, 0, k) for k in range(1, 6)]


def test_lost_job_is_unscheduled_once_and_readded_only_when_owned_again() -> None:
    s = JobSchedule()
    s.reload([job()], now_ms=T0)
    (fire,) = s.due(ms(0, 0, 1)).fires
    assert s.lost(fire.job_id) is not None  # the fence refused
    assert s.lost(fire.job_id) is None  # a second report is not a second loss
    assert not s.is_planned(fire)
    assert s.due(ms(0, 0, 9)).fires == ()
    gone = s.reload([], now_ms=ms(0, 0, 9, 100))
    assert gone.removed == ()  # already unscheduled: nothing to report again
    back = s.reload([job(epoch=3, last_fire_ms=ms(0, 0, 12))], now_ms=ms(0, 0, 10, 100))
    assert [(p.owner_epoch, p.next_fire_ms) for p in back.added] == [(3, ms(0, 0, 13))]


def test_job_missing_from_a_reload_is_reported_lost() -> None:
    s = JobSchedule()
    s.reload([job("a"), job("b")], now_ms=T0)
    result = s.reload([job("b")], now_ms=ms(0, 0, 0, 450))
    assert result.removed == (Unplanned("a", 1, "lost"),)
    assert set(s.plans) == {"b"}
    assert s.reload([job("b")], now_ms=ms(0, 0, 0, 650)).removed == ()


def test_a_new_epoch_is_planned_again_and_old_fires_are_stale() -> None:
    s = JobSchedule()
    s.reload([job()], now_ms=T0)
    (stale,) = s.due(ms(0, 0, 1)).fires
    result = s.reload([job(epoch=3)], now_ms=ms(0, 0, 1, 100))
    assert [p.owner_epoch for p in result.added] == [3]
    assert not s.is_planned(stale)
    assert s.is_planned(Fire("job-1", 3, ms(0, 0, 2), ("true",)))
    assert s.next_due_ms() == ms(0, 0, 2)  # seen again at 00:00:01.100


def test_a_time_claimed_elsewhere_at_the_same_epoch_moves_the_plan() -> None:
    s = JobSchedule()
    s.reload([job()], now_ms=T0)
    result = s.reload([job(last_fire_ms=ms(0, 0, 2))], now_ms=ms(0, 0, 0, 500))
    assert [p.next_fire_ms for p in result.added] == [ms(0, 0, 3)]


def test_disabled_and_unscheduled_jobs_are_not_planned_nor_lost() -> None:
    s = JobSchedule()
    s.reload([job("a"), job("b"), job("c", schedule=None)], now_ms=T0)
    assert set(s.plans) == {"a", "b"}
    result = s.reload(
        [job("a", enabled=False, epoch=2), job("b", schedule=None, epoch=2)], now_ms=T0
    )
    assert sorted(result.removed, key=lambda u: u.job_id) == [
        Unplanned("a", 2, "disabled"),
        Unplanned("b", 2, "no schedule"),
    ]
    assert s.plans == {}


def test_an_invalid_schedule_is_reported_once_per_epoch_and_schedule() -> None:
    s = JobSchedule()
    first = s.reload([job(schedule="61 * * * *")], now_ms=T0)
    assert [u.job_id for u in first.invalid] == ["job-1"]
    assert "invalid schedule '61 * * * *'" in first.invalid[0].reason
    assert s.plans == {}
    assert s.reload([job(schedule="61 * * * *")], now_ms=T0 + 200).invalid == ()
    assert len(s.reload([job(schedule="61 * * * *", epoch=2)], now_ms=T0 + 400).invalid) == 1
    fixed = s.reload([job(schedule="* * * * *", epoch=3)], now_ms=T0 + 600)
    assert [p.next_fire_ms for p in fixed.added] == [ms(0, 1, 0)]


def test_times_older_than_the_misfire_grace_are_skipped_not_fired() -> None:
    s = JobSchedule(misfire_grace_ms=3_000)
    s.reload([job()], now_ms=T0)
    due = s.due(ms(0, 2, 0, 500))  # the member was paused for two minutes
    assert [(m.first_ms, m.until_ms) for m in due.misfires] == [(ms(0, 0, 1), ms(0, 1, 58))]
    assert [f.fire_ms for f in due.fires] == [ms(0, 1, 58), ms(0, 1, 59), ms(0, 2, 0)]


def test_a_misfire_counts_its_times_and_the_next_claim_carries_them_once() -> None:
    s = JobSchedule(misfire_grace_ms=3_000)
    s.reload([job()], now_ms=T0)
    due = s.due(ms(0, 2, 0, 500))  # 00:00:01 .. 00:01:57 never fire
    assert [m.count for m in due.misfires] == [117]
    assert [f.missed for f in due.fires] == [117, 0, 0]  # the first claim counts them
    for f in due.fires:
        s.fired(f.job_id, f.fire_ms)
    assert [f.missed for f in s.due(ms(0, 2, 1)).fires] == [0]


def test_a_misfire_without_a_fire_in_its_pass_is_carried_to_the_next_claim() -> None:
    s = JobSchedule()  # grace 60 s; every 5 minutes
    s.reload([job(schedule="*/5 * * * *")], now_ms=ms(0, 1, 30))
    due = s.due(ms(1, 2, 30))  # paused an hour: 00:05 .. 01:00 missed, 01:05 not due yet
    assert ([m.count for m in due.misfires], due.fires) == ([12], ())
    assert s.plans["job-1"].missed == 12
    assert [(f.fire_ms, f.missed) for f in s.due(ms(1, 5, 0)).fires] == [(ms(1, 5, 0), 12)]
    s.lost("job-1")  # fenced out: the count goes with the plan, nothing is claimed
    assert s.plans == {}


def test_skip_counts_the_times_a_previous_owner_left_unclaimed() -> None:
    s = JobSchedule()
    s.reload([job(epoch=2, last_fire_ms=ms(0, 0, 3))], now_ms=ms(0, 0, 10, 500))
    assert s.plans["job-1"].missed == 7  # 00:00:04 .. 00:00:10: skipped, never fired
    assert [f.missed for f in s.due(ms(0, 0, 11)).fires] == [7]
    once = JobSchedule()  # fire_once catches them up instead: not missed
    once.reload([job(epoch=2, last_fire_ms=ms(0, 0, 3), misfire="fire_once")], now_ms=ms(0, 0, 10))
    assert once.plans["job-1"].missed == 0


def test_missed_times_are_counted_up_to_a_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    def every_second(t: int) -> int:
        return (t // 1000 + 1) * 1000

    assert count_times(every_second, 0, 10_000, limit=100) == 9  # 1 s .. 9 s
    assert count_times(every_second, 0, 10_000_000, limit=100) == 100
    monkeypatch.setattr(scheduler, "MAX_MISSED_COUNTED", 50)
    s = JobSchedule(misfire_grace_ms=1_000)
    s.reload([job()], now_ms=T0)
    assert [m.count for m in s.due(ms(1, 0, 0)).misfires] == [50]


def test_a_failed_fire_is_due_again_and_fired_never_goes_back() -> None:
    s = JobSchedule()
    s.reload([job()], now_ms=T0)
    assert [f.fire_ms for f in s.due(ms(0, 0, 1)).fires] == [ms(0, 0, 1)]
    # the store was down: not reported fired, so the same time is due again
    assert [f.fire_ms for f in s.due(ms(0, 0, 1, 300)).fires] == [ms(0, 0, 1)]
    plan = s.fired("job-1", ms(0, 0, 1))
    assert plan is not None and plan.next_fire_ms == ms(0, 0, 2)
    late = s.fired("job-1", ms(0, 0, 1))  # a stale report does not move it back
    assert late is not None and late.next_fire_ms == ms(0, 0, 2)
    assert s.fired("unknown", ms(0, 0, 1)) is None


def test_fires_of_several_jobs_come_oldest_first() -> None:
    s = JobSchedule()
    s.reload([job("b"), job("a", schedule="*/2 * * * * *")], now_ms=T0)
    fires = s.due(ms(0, 0, 2)).fires
    assert [(f.job_id, f.fire_ms) for f in fires] == [
        ("b", ms(0, 0, 1)),
        ("a", ms(0, 0, 2)),
        ("b", ms(0, 0, 2)),
    ]
    assert s.next_after(fires[0]) == ms(0, 0, 2)


LAST = int(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)
ENDS = "* * * * * ? 2026"  # Quartz's year field: every second of 2026, then never again


def test_the_last_time_of_a_schedule_is_fired_and_its_plan_ends() -> None:
    s = JobSchedule()
    s.reload([job(schedule=ENDS), job("job-2")], now_ms=LAST - 1_500)
    assert fire_times(s, LAST - 1_000) == [("job-1", LAST - 1_000), ("job-2", LAST - 1_000)]
    fires = s.due(LAST).fires
    (last,) = [f for f in fires if f.job_id == "job-1"]
    assert (last.fire_ms, last.next_fire_ms, s.next_after(last)) == (LAST, None, None)
    assert s.fired("job-1", LAST) is None  # nothing after it: the plan ends
    assert list(s.plans) == ["job-2"]
    assert {f.job_id for f in s.due(LAST + 5_000).fires} == {"job-2"}  # the rest fire on
    again = s.reload([job(schedule=ENDS, last_fire_ms=LAST), job("job-2")], now_ms=LAST + 5_000)
    assert [u.job_id for u in again.invalid] == ["job-1"]  # reported once, not "invalid"
    assert again.invalid[0].reason.startswith("schedule ended: ")
    assert "never fires after" in again.invalid[0].reason
    assert s.reload([job(schedule=ENDS, last_fire_ms=LAST)], now_ms=LAST + 6_000).invalid == ()


def test_a_schedule_that_ended_while_the_member_was_paused_is_a_misfire() -> None:
    s = JobSchedule(misfire_grace_ms=3_000)
    s.reload([job(schedule=ENDS)], now_ms=LAST - 10_500)
    due = s.due(LAST + 60_000)  # paused past the schedule's end: its last 11 times missed
    assert due.fires == ()
    assert [(m.first_ms, m.count) for m in due.misfires] == [(LAST - 10_000, 11)]
    assert s.plans == {}


def test_a_catch_up_of_a_schedules_last_times_has_no_next_time() -> None:
    s = JobSchedule()
    s.reload([job(schedule=ENDS, misfire="fire_once")], now_ms=LAST - 3_500)
    (fire,) = s.due(LAST + 2_000).fires
    assert (fire.trigger, fire.fire_ms, fire.next_fire_ms) == ("catchup", LAST, None)
    assert fire.missed_ms == (LAST - 3_000, LAST - 2_000, LAST - 1_000, LAST)


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError):
        JobSchedule(misfire_grace_ms=-1)


def test_upcoming_is_each_job_s_next_time_in_the_window_never_a_due_one() -> None:
    schedule = JobSchedule()
    every_s, every_min = job("job-s"), job("job-min", "0 * * * * *")
    schedule.reload([every_s, every_min], now_ms=T0)
    assert schedule.upcoming(T0, T0 + 749) == []  # the next second is at T0 + 750
    (soon,) = schedule.upcoming(T0, T0 + 750)
    assert (soon.job_id, soon.fire_ms, soon.next_fire_ms) == ("job-s", T0 + 750, T0 + 1750)
    assert soon.trigger == "schedule" and soon.missed == 0
    # once due it is due()'s, not upcoming's: no fire is returned by both
    assert schedule.upcoming(T0 + 750, T0 + 800) == []
    assert [f.fire_ms for f in schedule.due(T0 + 750).fires] == [T0 + 750]
    minute = [f.job_id for f in schedule.upcoming(T0, ms(0, 1, 0))]
    assert minute == ["job-s", "job-min"]  # each job's next time only, oldest first


def test_next_due_ms_leaves_out_the_jobs_asked() -> None:
    schedule = JobSchedule()
    schedule.reload([job("job-s"), job("job-min", "0 * * * * *")], now_ms=T0)
    assert schedule.next_due_ms() == T0 + 750
    assert schedule.next_due_ms(skip={"job-s"}) == ms(0, 1, 0)
    assert schedule.next_due_ms(skip={"job-s", "job-min"}) is None

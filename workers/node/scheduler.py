"""Which fire times of a member's jobs are due: pure decisions driven by ``now_ms``.

:class:`JobSchedule` holds one :class:`Plan` per job the member schedules and never reads a
clock or the store; the member's loop feeds it the jobs it owns and ``now_ms``:

* :meth:`JobSchedule.reload` takes the member's jobs from the store (all it owns). A job is
  planned when it is enabled and has a cron schedule. Its first fire time is the first cron
  time strictly after ``max(last_fire_ms, seen_ms)``, where ``seen_ms`` is when this member
  first saw the job at its current ``owner_epoch``: times from before it owned (or saw) the
  job are never back-filled, and after a takeover the times the previous owner already
  claimed (``last_fire_ms``) are not fired again. A job whose epoch changed is planned
  anew; a planned job absent from the list is reported ``lost``.
* :meth:`JobSchedule.due` returns every planned time ``<= now_ms``, oldest first. Times
  older than ``now_ms - misfire_grace_ms`` (the member was paused, or the store was down)
  are skipped and reported as a :class:`Misfire` instead of firing all at once.
* The caller fires each time through the store's fence, then reports the outcome with
  :meth:`JobSchedule.fired` (advance to the next cron time) or :meth:`JobSchedule.lost`
  (the fence refused: unschedule the job until a reload shows it owned again).

All times are epoch milliseconds (UTC).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from schemas.cron import next_fire_ms
from schemas.errors import QwcError

__all__ = [
    "DEFAULT_MISFIRE_GRACE_MS",
    "MAX_FIRES_PER_JOB",
    "Due",
    "Fire",
    "JobLike",
    "JobSchedule",
    "Misfire",
    "NextFireFn",
    "Plan",
    "ReloadResult",
    "Unplanned",
    "cached_next_fire_ms",
    "split_due",
]

DEFAULT_MISFIRE_GRACE_MS = 60_000
NEXT_FIRE_CACHE = 4096  # (schedule, time) answers kept: jobs sharing a schedule share them
MAX_FIRES_PER_JOB = 1_000  # per due() call: bounds the work of one loop step

NextFireFn = Callable[[str, int], int]
"""``(cron text, after_ms) -> first fire time > after_ms`` (epoch ms); raises ValueError."""

cached_next_fire_ms: NextFireFn = functools.lru_cache(maxsize=NEXT_FIRE_CACHE)(next_fire_ms)
""":func:`schemas.cron.next_fire_ms` with its answers kept (it is pure): a hundred jobs on
one schedule ask croniter once per fire time, not a hundred times."""


class JobLike(Protocol):
    """What the scheduler reads of a job (``workers.store.JobRow`` has it all)."""

    @property
    def id(self) -> str: ...

    @property
    def owner_epoch(self) -> int: ...

    @property
    def schedule(self) -> str | None: ...

    @property
    def enabled(self) -> bool: ...

    @property
    def command(self) -> tuple[str, ...]: ...

    @property
    def last_fire_ms(self) -> int | None: ...


@dataclass(frozen=True)
class Plan:
    """A scheduled job: the epoch it is owned at, and its next fire time (epoch ms)."""

    job_id: str
    owner_epoch: int
    schedule: str
    command: tuple[str, ...]
    seen_ms: int
    next_fire_ms: int


@dataclass(frozen=True)
class Fire:
    """One due fire time of a job, to claim through the fence at ``owner_epoch``;
    ``next_fire_ms`` is the schedule's time after it (epoch ms)."""

    job_id: str
    owner_epoch: int
    fire_ms: int
    command: tuple[str, ...]
    next_fire_ms: int | None = None


@dataclass(frozen=True)
class Misfire:
    """Fire times of ``job_id`` in ``[first_ms, until_ms)`` skipped: too late to fire."""

    job_id: str
    first_ms: int
    until_ms: int


@dataclass(frozen=True)
class Unplanned:
    """A job the member stopped scheduling, and why (``lost``, ``disabled``,
    ``no schedule``, or ``invalid schedule: ...``)."""

    job_id: str
    owner_epoch: int
    reason: str


@dataclass(frozen=True)
class ReloadResult:
    """What a reload changed: plans added (new job or new epoch), plans removed, and jobs
    whose schedule is invalid (each reported once per job, epoch and schedule)."""

    added: tuple[Plan, ...] = ()
    removed: tuple[Unplanned, ...] = ()
    invalid: tuple[Unplanned, ...] = ()


@dataclass(frozen=True)
class Due:
    """The result of :meth:`JobSchedule.due`: fires oldest first, and skipped times."""

    fires: tuple[Fire, ...] = ()
    misfires: tuple[Misfire, ...] = ()


class JobSchedule:
    """The plans of one member. Pure: no clock, no I/O; not thread-safe."""

    def __init__(
        self,
        *,
        next_fire: NextFireFn = cached_next_fire_ms,
        misfire_grace_ms: int = DEFAULT_MISFIRE_GRACE_MS,
    ) -> None:
        if misfire_grace_ms < 0:
            raise ValueError("misfire_grace_ms must be >= 0")
        self._next_fire = next_fire
        self._grace_ms = misfire_grace_ms
        self._plans: dict[str, Plan] = {}
        self._invalid: dict[str, tuple[int, str]] = {}  # job id -> (epoch, schedule) reported

    @property
    def plans(self) -> Mapping[str, Plan]:
        """A copy of the current plans, by job id."""
        return dict(self._plans)

    def is_planned(self, fire: Fire) -> bool:
        """True while ``fire``'s job is still planned at ``fire``'s epoch."""
        plan = self._plans.get(fire.job_id)
        return plan is not None and plan.owner_epoch == fire.owner_epoch

    def next_after(self, fire: Fire) -> int | None:
        """The fire time that follows ``fire`` in its job's schedule, None if not planned."""
        plan = self._plans.get(fire.job_id)
        if plan is None:
            return None
        if fire.next_fire_ms is not None:
            return fire.next_fire_ms
        return self._next_fire(plan.schedule, fire.fire_ms)

    def next_due_ms(self) -> int | None:
        """The earliest planned fire time (epoch ms), or None when nothing is planned."""
        return min((p.next_fire_ms for p in self._plans.values()), default=None)

    def reload(self, jobs: Iterable[JobLike], *, now_ms: int) -> ReloadResult:
        """Replace the plans by the member's ``jobs`` as read from the store at ``now_ms``."""
        plans: dict[str, Plan] = {}
        added: list[Plan] = []
        removed: dict[str, Unplanned] = {}
        invalid: list[Unplanned] = []
        reported: dict[str, tuple[int, str]] = {}
        for job in jobs:
            old = self._plans.get(job.id)
            outcome = self._replan(job, old, now_ms)
            if isinstance(outcome, Plan):
                plans[job.id] = outcome
                if outcome is not old:
                    added.append(outcome)
                continue
            if old is not None:
                removed[job.id] = outcome
            if outcome.reason.startswith("invalid"):
                reported[job.id] = (job.owner_epoch, job.schedule or "")
                if self._invalid.get(job.id) != reported[job.id]:
                    invalid.append(outcome)
        for job_id, plan in self._plans.items():
            if job_id not in plans and job_id not in removed:
                removed[job_id] = Unplanned(job_id, plan.owner_epoch, "lost")
        self._plans, self._invalid = plans, reported
        return ReloadResult(tuple(added), tuple(removed.values()), tuple(invalid))

    def due(self, now_ms: int) -> Due:
        """Every planned fire time ``<= now_ms``, oldest first (ties by job id).

        Times older than ``now_ms - misfire_grace_ms`` are skipped: the plan moves past them
        and they are reported as misfires. Plans only advance past fired times through
        :meth:`fired`, so a time whose fire failed (store down) is returned again.
        """
        fires: list[Fire] = []
        misfires: list[Misfire] = []
        cutoff_ms = now_ms - self._grace_ms
        for job_id, plan in list(self._plans.items()):
            if plan.next_fire_ms > now_ms:
                continue
            if plan.next_fire_ms < cutoff_ms:
                resume_ms = self._next_fire(plan.schedule, cutoff_ms - 1)
                misfires.append(Misfire(job_id, plan.next_fire_ms, resume_ms))
                plan = replace(plan, next_fire_ms=resume_ms)
                self._plans[job_id] = plan
            fires.extend(self._fires_until(plan, now_ms))
        fires.sort(key=lambda f: (f.fire_ms, f.job_id))
        return Due(tuple(fires), tuple(misfires))

    def fired(self, job_id: str, fire_ms: int, next_fire_ms: int | None = None) -> Plan | None:
        """``fire_ms`` of ``job_id`` was claimed: plan the next cron time after it
        (``next_fire_ms`` when the caller knows it already).

        Returns the new plan, or None when the job is not planned any more.
        """
        plan = self._plans.get(job_id)
        if plan is None:
            return None
        if fire_ms >= plan.next_fire_ms:
            next_ms = next_fire_ms or self._next_fire(plan.schedule, fire_ms)
            plan = replace(plan, next_fire_ms=next_ms)
            self._plans[job_id] = plan
        return plan

    def lost(self, job_id: str) -> Plan | None:
        """The fence refused a fire of ``job_id``: unschedule it. Returns the removed plan,
        or None when it was not planned (so a caller logs each loss once)."""
        return self._plans.pop(job_id, None)

    def _replan(self, job: JobLike, old: Plan | None, now_ms: int) -> Plan | Unplanned:
        """The job's plan: ``old`` when it still stands, else a new one, else why none."""
        if not job.enabled:
            return Unplanned(job.id, job.owner_epoch, "disabled")
        if not job.schedule:
            return Unplanned(job.id, job.owner_epoch, "no schedule")
        if old is not None and _still_valid(old, job):
            return old
        seen_ms = old.seen_ms if old is not None and old.owner_epoch == job.owner_epoch else now_ms
        after_ms = max(seen_ms, job.last_fire_ms if job.last_fire_ms is not None else seen_ms)
        try:
            next_ms = self._next_fire(job.schedule, after_ms)
        except (ValueError, QwcError) as exc:
            reason = f"invalid schedule {job.schedule!r}: {exc}"
            return Unplanned(job.id, job.owner_epoch, reason)
        return Plan(job.id, job.owner_epoch, job.schedule, tuple(job.command), seen_ms, next_ms)

    def _fires_until(self, plan: Plan, now_ms: int) -> list[Fire]:
        fires: list[Fire] = []
        fire_ms = plan.next_fire_ms
        while fire_ms <= now_ms and len(fires) < MAX_FIRES_PER_JOB:
            next_ms = self._next_fire(plan.schedule, fire_ms)
            fires.append(Fire(plan.job_id, plan.owner_epoch, fire_ms, plan.command, next_ms))
            fire_ms = next_ms
        return fires


def _still_valid(plan: Plan, job: JobLike) -> bool:
    """The plan stands while the epoch and schedule are unchanged and no time at or after
    its next fire time was claimed meanwhile (by another process of the same member)."""
    return (
        plan.owner_epoch == job.owner_epoch
        and plan.schedule == job.schedule
        and (job.last_fire_ms is None or job.last_fire_ms < plan.next_fire_ms)
    )


class _Timed(Protocol):
    @property
    def fire_ms(self) -> int: ...


_T = TypeVar("_T", bound=_Timed)


def split_due(pending: Iterable[_T], now_ms: int) -> tuple[list[_T], int | None]:
    """The executions of ``pending`` due at ``now_ms`` (``fire_ms <= now_ms``, in order),
    and the earliest ``fire_ms`` of the others (None when there is none)."""
    due: list[_T] = []
    later: list[_T] = []
    for item in pending:
        (due if item.fire_ms <= now_ms else later).append(item)
    return due, min((item.fire_ms for item in later), default=None)

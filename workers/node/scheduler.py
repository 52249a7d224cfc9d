"""Which fire times of a member's jobs are due: pure decisions driven by ``now_ms``.

:class:`JobSchedule` holds one :class:`Plan` per job the member schedules and never reads a
clock or the store; the member's loop feeds it the jobs it owns and ``now_ms``:

* :meth:`JobSchedule.reload` takes the member's jobs from the store (all it owns). A job is
  planned when it is enabled and has a cron schedule, read in the job's ``time_zone`` (None:
  the member's ``default_time_zone``, ``qwcontrol.scheduler.timeZone``). A job whose epoch,
  schedule, zone or misfire settings changed is planned anew; a planned job absent from the
  list is reported ``lost``. Its first fire time is the first cron time strictly after:

  - misfire policy ``skip`` (the default): ``max(last_fire_ms, seen_ms)``, where
    ``seen_ms`` is when this member first saw the job at its current ``owner_epoch``: times
    from before it owned (or saw) the job are never back-filled, and after a takeover the
    times the previous owner already claimed (``last_fire_ms``) are not fired again;
  - ``fire_once``: ``last_fire_ms`` (``seen_ms`` for a job never fired): after a takeover
    the times the dead owner did not claim are due at once — its missed times.
* :meth:`JobSchedule.upcoming` returns each job's next time in ``(now_ms, until_ms]``: the
  member claims those a little ahead of their time (:data:`workers.node.member.FIRE_AHEAD_MS`).
* :meth:`JobSchedule.due` returns every planned time ``<= now_ms``, oldest first. Each job
  has a misfire grace (``misfire_grace_s``; None: the schedule's ``misfire_grace_ms``,
  60 s). Times older than ``now_ms - grace`` (the member was paused, or the store was
  down, or the job's previous owner was dead) are never fired: they are reported as a
  :class:`Misfire`. Of the due times within the grace:

  - ``skip``: each is a :class:`Fire` of its own (trigger ``schedule``);
  - ``fire_once``: a single due time that this plan saw come is an ordinary fire; when
    several are due at once, or one from before the plan was made (missed by a previous
    owner), they make ONE :class:`Fire` with trigger ``catchup``, at the newest of them
    (claiming it through the fence claims every older one), carrying the missed times
    (``missed_ms``, at most :data:`MAX_MISSED_RECORDED`). A member fenced out of the job
    (taken over while it was cut off) is refused its catch-up like any fire.
* Missed fire times are counted (:func:`count_times`, exactly up to
  :data:`MAX_MISSED_COUNTED` per gap, that many beyond): each :class:`Misfire` carries how
  many times it skipped, and with ``skip`` a new plan counts the times a previous owner (or
  this member, down or restarting) left unclaimed between ``last_fire_ms`` and ``seen_ms``.
  The plan keeps the sum (``Plan.missed``) until its next fire is claimed: the first
  :class:`Fire` of the job carries it (``Fire.missed``), the store adds it to the job's
  ``missed_fires`` in the fenced claim, and :meth:`JobSchedule.fired` resets it. A misfire
  with no fire in the same pass is thus carried by the plan to the next one; a plan lost
  (fenced out) or made anew drops it, so only the owner at the current epoch counts, once.
* The caller fires each time through the store's fence, then reports the outcome with
  :meth:`JobSchedule.fired` (advance to the next cron time) or :meth:`JobSchedule.lost`
  (the fence refused: unschedule the job until a reload shows it owned again).
* A schedule may end (a Quartz year field): its last time is a fire with no next time
  (``next_fire_ms`` None); once it is fired, or skipped as a misfire, the plan ends, and a
  reload reports the job once (``invalid``, reason ``schedule ended: …``).

All times are epoch milliseconds (UTC); zones are IANA names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from schemas.cron import next_fire_ms, validate_cron
from schemas.errors import QwcError, ScheduleError
from schemas.timezones import DEFAULT_TIME_ZONE, validate_time_zone

__all__ = [
    "DEFAULT_MISFIRE_GRACE_MS",
    "ENDED",
    "MAX_FIRES_PER_JOB",
    "MAX_MISSED_COUNTED",
    "MAX_MISSED_RECORDED",
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
    "count_times",
    "split_due",
]

DEFAULT_MISFIRE_GRACE_MS = 60_000
ENDED = "schedule ended"  # the reason of a job whose valid schedule fires no more
NEXT_FIRE_CACHE = 4096  # (schedule, time, zone) answers kept: jobs sharing a schedule share them
MAX_FIRES_PER_JOB = 1_000  # per due() call: bounds the work of one loop step
MAX_MISSED_RECORDED = 1_000  # missed times a catch-up carries: the oldest 999 and the newest
# Missed times counted one by one per gap (about 20-30 us of cron arithmetic each: a second
# schedule missed for more than a day costs 2-3 s once); a longer gap counts as this many.
MAX_MISSED_COUNTED = 100_000

NextFireFn = Callable[[str, int, str], int]
"""``(cron text, after_ms, IANA zone) -> first fire time > after_ms`` (epoch ms); raises
ValueError (``ScheduleError``)."""

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

    @property
    def time_zone(self) -> str | None: ...

    @property
    def misfire(self) -> str: ...

    @property
    def misfire_grace_s(self) -> float | None: ...


@dataclass(frozen=True)
class Plan:
    """A scheduled job: the epoch it is owned at, and its next fire time (epoch ms); the
    zone its schedule is read in, its misfire policy and grace (None: the default);
    ``missed``: fire times missed since its last claimed fire, for the next claim to count."""

    job_id: str
    owner_epoch: int
    schedule: str
    command: tuple[str, ...]
    seen_ms: int
    next_fire_ms: int
    time_zone: str = DEFAULT_TIME_ZONE
    misfire: str = "skip"
    misfire_grace_ms: int | None = None
    missed: int = 0


@dataclass(frozen=True)
class Fire:
    """One due fire time of a job, to claim through the fence at ``owner_epoch``:
    ``trigger`` ``schedule``, or ``catchup`` standing for ``missed_ms`` (its ``fire_ms``
    is the newest of them). ``next_fire_ms``: the schedule's time after it (epoch ms),
    known when it was found (a hint, not part of the fire's identity). ``missed``: fire
    times of the job missed before this one, counted by its claim (the plan's ``missed``,
    on the job's first fire of a pass)."""

    job_id: str
    owner_epoch: int
    fire_ms: int
    command: tuple[str, ...]
    trigger: str = "schedule"
    missed_ms: tuple[int, ...] = ()
    next_fire_ms: int | None = field(default=None, compare=False)
    missed: int = 0


@dataclass(frozen=True)
class Misfire:
    """Fire times of ``job_id`` in ``[first_ms, until_ms)`` skipped: too late to fire;
    ``count`` of them (at most :data:`MAX_MISSED_COUNTED`)."""

    job_id: str
    first_ms: int
    until_ms: int
    count: int


@dataclass(frozen=True)
class Unplanned:
    """A job the member stopped scheduling, and why (``lost``, ``disabled``,
    ``no schedule``, ``invalid schedule: ...``, or ``schedule ended: ...``)."""

    job_id: str
    owner_epoch: int
    reason: str


@dataclass(frozen=True)
class ReloadResult:
    """What a reload changed: plans added (new job or new epoch), plans removed, and jobs
    whose schedule is invalid or ended (each reported once per job, epoch and schedule)."""

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
        default_time_zone: str = DEFAULT_TIME_ZONE,
    ) -> None:
        """``misfire_grace_ms``: the grace of jobs without one of their own;
        ``default_time_zone``: the zone of jobs without one (``qwcontrol.scheduler.timeZone``).
        Raises ``ValueError`` for a negative grace or an unknown zone."""
        if misfire_grace_ms < 0:
            raise ValueError("misfire_grace_ms must be >= 0")
        self._next_fire = next_fire
        self._grace_ms = misfire_grace_ms
        self._default_zone = validate_time_zone(default_time_zone)
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
        """The fire time that follows ``fire`` in its job's schedule; None if not planned,
        or if its schedule never fires after it (its last time: a Quartz year range ends)."""
        plan = self._plans.get(fire.job_id)
        if plan is None:
            return None
        if fire.next_fire_ms is not None:
            return fire.next_fire_ms
        return self._next(plan, fire.fire_ms)

    def next_due_ms(self, skip: Collection[str] = ()) -> int | None:
        """The earliest planned fire time (epoch ms) of the jobs not in ``skip``, or None
        when none is planned."""
        return min(
            (p.next_fire_ms for p in self._plans.values() if p.job_id not in skip), default=None
        )

    def upcoming(self, now_ms: int, until_ms: int) -> list[Fire]:
        """The jobs' next fire times after ``now_ms`` and up to ``until_ms``, as fires to
        claim ahead of their time (oldest first, ties by job id): each job's next time
        only, never a misfire or a catch-up (those are found by :meth:`due` once due)."""
        fires = [
            Fire(
                job_id,
                plan.owner_epoch,
                plan.next_fire_ms,
                plan.command,
                next_fire_ms=self._next(plan, plan.next_fire_ms),
                missed=plan.missed,
            )
            for job_id, plan in self._plans.items()
            if now_ms < plan.next_fire_ms <= until_ms
        ]
        fires.sort(key=lambda f: (f.fire_ms, f.job_id))
        return fires

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
            if outcome.reason.startswith(("invalid", ENDED)):
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

        Times older than ``now_ms`` minus the job's misfire grace are skipped: the plan
        moves past them and they are reported as misfires. A ``fire_once`` job's times
        missed within the grace come as one catch-up (see the module docstring). Plans only
        advance past fired times through :meth:`fired`, so a time whose fire failed (store
        down) is returned again.
        """
        fires: list[Fire] = []
        misfires: list[Misfire] = []
        for job_id, plan in list(self._plans.items()):
            if plan.next_fire_ms > now_ms:
                continue
            grace_ms = self._grace_ms if plan.misfire_grace_ms is None else plan.misfire_grace_ms
            cutoff_ms = now_ms - grace_ms
            if plan.next_fire_ms < cutoff_ms:
                resume_ms = self._next(plan, cutoff_ms - 1)
                until_ms = cutoff_ms if resume_ms is None else resume_ms
                count = self._count(plan, plan.next_fire_ms - 1, until_ms)
                misfires.append(Misfire(job_id, plan.next_fire_ms, until_ms, count))
                if resume_ms is None:  # its schedule ended meanwhile: nothing left to fire
                    del self._plans[job_id]
                    continue
                plan = replace(plan, next_fire_ms=resume_ms, missed=plan.missed + count)
                self._plans[job_id] = plan
            times, following = self._times_until(plan, now_ms)
            if not times:  # a misfire moved the plan past now_ms: its count waits in the plan
                continue
            if plan.misfire == "fire_once" and _missed(plan, times):
                mine = [self._catchup(plan, times, following, now_ms)]
            else:
                nexts = [*times[1:], following]
                mine = [
                    Fire(job_id, plan.owner_epoch, t, plan.command, next_fire_ms=n)
                    for t, n in zip(times, nexts, strict=True)
                ]
            if mine and plan.missed:  # the first claim counts the times missed before it
                mine[0] = replace(mine[0], missed=plan.missed)
            fires.extend(mine)
        fires.sort(key=lambda f: (f.fire_ms, f.job_id))
        return Due(tuple(fires), tuple(misfires))

    def fired(self, job_id: str, fire_ms: int, next_fire_ms: int | None = None) -> Plan | None:
        """``fire_ms`` of ``job_id`` was claimed: plan the next cron time after it
        (``next_fire_ms`` when the caller knows it already: the fire's own).

        Returns the new plan, or None when the job is not planned any more: it was not, or
        ``fire_ms`` was the last time of its schedule (the plan ends; a reload reports the
        job as never firing again).
        """
        plan = self._plans.get(job_id)
        if plan is None:
            return None
        if fire_ms >= plan.next_fire_ms:
            following = next_fire_ms if next_fire_ms is not None else self._next(plan, fire_ms)
            if following is None:
                del self._plans[job_id]
                return None
            plan = replace(plan, next_fire_ms=following, missed=0)
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
        wanted = self._settings(job)
        if old is not None and _still_valid(old, job, wanted):
            return old
        seen_ms = old.seen_ms if old is not None and old.owner_epoch == job.owner_epoch else now_ms
        last_ms = job.last_fire_ms
        if wanted.misfire == "fire_once":
            after_ms = seen_ms if last_ms is None else last_ms  # the times nobody claimed
        else:
            after_ms = seen_ms if last_ms is None else max(seen_ms, last_ms)
        plan = replace(wanted, seen_ms=seen_ms)
        try:
            plan = replace(plan, next_fire_ms=self._after(plan, after_ms))
            if wanted.misfire == "skip" and last_ms is not None and last_ms < seen_ms:
                # left unclaimed before this member saw the job at this epoch: never fired
                plan = replace(plan, missed=self._count(plan, last_ms, seen_ms + 1))
            return plan
        except (ValueError, QwcError) as exc:
            if _valid(plan.schedule, plan.time_zone):  # it fired once: it ran out of times
                return Unplanned(job.id, job.owner_epoch, f"{ENDED}: {exc}")
            reason = f"invalid schedule {job.schedule!r}: {exc}"
            return Unplanned(job.id, job.owner_epoch, reason)

    def _settings(self, job: JobLike) -> Plan:
        """``job``'s plan but for its times: its zone and misfire settings with the defaults
        applied (compared with a standing plan; completed by :meth:`_replan`)."""
        grace_s = job.misfire_grace_s
        return Plan(
            job.id,
            job.owner_epoch,
            job.schedule or "",
            tuple(job.command),
            0,
            0,
            time_zone=job.time_zone or self._default_zone,
            misfire=job.misfire,
            misfire_grace_ms=None if grace_s is None else round(grace_s * 1000),
        )

    def _after(self, plan: Plan, after_ms: int) -> int:
        """The first fire time of ``plan`` strictly after ``after_ms``."""
        return self._next_fire(plan.schedule, after_ms, plan.time_zone)

    def _next(self, plan: Plan, after_ms: int) -> int | None:
        """:meth:`_after`, or None when the (valid) schedule never fires after ``after_ms``."""
        try:
            return self._after(plan, after_ms)
        except ScheduleError:
            return None

    def _count(self, plan: Plan, after_ms: int, before_ms: int) -> int:
        """How many fire times of ``plan`` are in ``(after_ms, before_ms)``."""
        return count_times(
            lambda t: self._after(plan, t), after_ms, before_ms, limit=MAX_MISSED_COUNTED
        )

    def _times_until(self, plan: Plan, now_ms: int) -> tuple[list[int], int | None]:
        """The plan's fire times up to ``now_ms``, from its next one (at most
        MAX_FIRES_PER_JOB), and the time that follows the last of them (None: none, the
        schedule ended)."""
        times: list[int] = []
        fire_ms: int | None = plan.next_fire_ms
        while fire_ms is not None and fire_ms <= now_ms and len(times) < MAX_FIRES_PER_JOB:
            times.append(fire_ms)
            fire_ms = self._next(plan, fire_ms)
        return times, fire_ms

    def _catchup(self, plan: Plan, times: list[int], following: int | None, now_ms: int) -> Fire:
        """One catch-up for ``times`` (due, within the grace; ``following`` comes after the
        last of them, None: nothing does); when there were more than MAX_FIRES_PER_JOB, it
        stands for every time up to ``now_ms``: its fire time is the newest, found without
        walking every one."""
        newest = times[-1]
        if following is not None and following <= now_ms:
            newest = self._newest_until(plan, now_ms, times[-1])
            following = self._next(plan, newest)
        missed = [*times[: MAX_MISSED_RECORDED - 1], newest] if newest != times[-1] else times
        return Fire(
            plan.job_id,
            plan.owner_epoch,
            newest,
            plan.command,
            trigger="catchup",
            missed_ms=tuple(missed[:MAX_MISSED_RECORDED]),
            next_fire_ms=following,
        )

    def _newest_until(self, plan: Plan, now_ms: int, known_ms: int) -> int:
        """The newest fire time ``<= now_ms``, given ``known_ms``, a due one that is not the
        newest: look back from ``now_ms`` in doubling windows (never before ``known_ms``)
        for one, then walk forward from it."""
        window_ms = 1_000
        start_ms = max(known_ms, now_ms - window_ms)
        while (found := self._next(plan, start_ms)) is None or found > now_ms:
            window_ms *= 2  # none in (start, now]: look further back
            start_ms = max(known_ms, now_ms - window_ms)
        newest = found
        for _ in range(MAX_FIRES_PER_JOB):
            following = self._next(plan, newest)
            if following is None or following > now_ms:
                break
            newest = following
        return newest


def _valid(schedule: str, zone: str) -> bool:
    """Whether ``schedule`` is a valid cron text that fires at some time, read in a known
    ``zone`` (an invalid one never was; a valid one that raises has ended)."""
    try:
        validate_cron(schedule)
        validate_time_zone(zone)
    except (ValueError, QwcError):
        return False
    return True


def count_times(after: Callable[[int], int], after_ms: int, before_ms: int, *, limit: int) -> int:
    """How many fire times are in ``(after_ms, before_ms)`` (epoch ms), ``after`` giving the
    first one strictly after a time; ``limit`` when there are more (only that many are
    walked). A schedule that stops firing (``ValueError``) has none left."""
    count = 0
    fire_ms = after_ms
    while count < limit:
        try:
            fire_ms = after(fire_ms)
        except (ValueError, QwcError):
            break
        if fire_ms >= before_ms:
            break
        count += 1
    return count


def _missed(plan: Plan, times: list[int]) -> bool:
    """Whether a ``fire_once`` plan's due ``times`` make a catch-up: several at once (the
    member fell behind: paused, store down), or one from before the plan was made (missed
    by the job's previous owner, or while the plan was lost)."""
    return len(times) > 1 or (len(times) == 1 and times[0] < plan.seen_ms)


def _still_valid(plan: Plan, job: JobLike, wanted: Plan) -> bool:
    """The plan stands while the epoch, schedule, zone and misfire settings are unchanged
    and no time at or after its next fire time was claimed meanwhile (by another process
    of the same member)."""
    return (
        plan.owner_epoch == job.owner_epoch
        and plan.schedule == job.schedule
        and (plan.time_zone, plan.misfire, plan.misfire_grace_ms)
        == (wanted.time_zone, wanted.misfire, wanted.misfire_grace_ms)
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

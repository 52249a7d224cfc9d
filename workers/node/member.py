"""The member's scheduling loop: fires the jobs it owns through the fence — through SQL only.

:class:`Member` runs in the node's main thread. It never touches Redis: a slow, cut-off or
restarting Redis delays queueing, commands and heartbeats (each in a thread of its own,
see :mod:`workers.node.node`), never a fire. Each pass:

1. every heartbeat interval it reloads the jobs it owns and the ids of its running
   executions (sent with the heartbeats);
2. it claims every due fire time, and the next time of each job due within
   :data:`FIRE_AHEAD_MS` (fire-ahead, as Quartz's trigger acquisition window), in ONE
   transaction (:func:`workers.store.claim_fires`:
   one fenced UPDATE for the batch, which also records each job's next planned time, then
   each job's concurrency policy applied to its new execution: one SELECT of the jobs'
   active executions, one INSERT). A refused claim means the job was lost: it is
   unscheduled and logged once; a later reload schedules it again if the member owns it.
   A fire that ``forbid`` refused is recorded ``skipped`` (its time is claimed all the
   same); one that replaced running executions (``replace``) is handed to
   ``on_replaced``: the node ends those running in its own pool at once. A catch-up of a
   ``fire_once`` job (:mod:`workers.node.scheduler`) is claimed the same way, at the
   newest of its missed times, recorded with the trigger ``catchup`` and the missed times;
   the first claim of a job also adds the fire times it missed before (misfires, counted by
   :mod:`workers.node.scheduler`) to the job's ``missed_fires``, in the same fenced UPDATE;
3. it wakes the dispatcher (``on_fired``), which queues the new executions at their fire
   time.

Why fire ahead: claiming a burst of fires (100 jobs due the same second) takes the store
some milliseconds (about 10 on SQLite, 20 to 30 on PostgreSQL, on a 2-core machine); done
before the fire time, the first executions start that much sooner, and the claim's CPU is
spent before the burst, not during it. The concurrency policy is kept: a job with an
execution not ended yet (``scheduled`` or ``running``, read just before the claim) is not
claimed ahead but at its fire time, so ``forbid`` and ``replace`` decide on what runs then.
Only an execution admitted for the job in the few milliseconds between that read and the
claim (a remote run) is judged by the policy up to :data:`FIRE_AHEAD_MS` early. A fire
claimed ahead is an ordinary ``scheduled`` execution: a member stopped before its time
leaves it ``scheduled``, as what waits on its queue, for its next start or a recovery
should it be declared dead (:mod:`workers.node.node`).

Log lines start with ``member <uuid>:``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from producers.heartbeat import HeartbeatProducer
from workers.bus.retry import run_forever
from workers.node.scheduler import Fire, JobSchedule, ReloadResult
from workers.store import (
    Admitted,
    FireClaim,
    Store,
    claim_fires,
    jobs_with_active,
    list_executions,
    list_jobs,
)

__all__ = ["FIRE_AHEAD_MS", "Member", "MemberConfig", "wall_clock_ms"]

FIRE_AHEAD_MS = 50  # a job's next fire is claimed this long before its time (module docstring)

log = logging.getLogger(__name__)


def wall_clock_ms() -> int:
    """The member's wall clock, epoch ms (cron schedules follow the member's clock)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class MemberConfig:
    """Who the member is and how often it reloads its jobs (s)."""

    member_uuid: str
    interval_s: float


class Member:
    """The scheduling loop (one thread). ``step()`` does one pass and then waits until the
    next fire time or reload, or until ``stop`` is set.

    ``clock_ms`` (epoch ms) and ``sleep_s`` (how to wait that many seconds) are injectable:
    a test moves the clock and does not sleep. ``fire_ahead_ms``: how long before its time
    a fire is claimed (0: at its time). ``on_fired`` is called after a pass that
    claimed fires to run (the node wakes its dispatcher); ``on_replaced`` with each fire
    that replaced running executions (policy ``replace``: the node ends those it runs).
    """

    def __init__(
        self,
        config: MemberConfig,
        *,
        store: Store,
        producer: HeartbeatProducer,
        stop: threading.Event,
        schedule: JobSchedule | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        sleep_s: Callable[[float], object] | None = None,
        on_fired: Callable[[], object] = lambda: None,
        on_replaced: Callable[[Admitted], object] = lambda _admitted: None,
        fire_ahead_ms: int = FIRE_AHEAD_MS,
    ) -> None:
        self.config = config
        self.store = store
        self.producer = producer
        self.stop = stop
        self.schedule = schedule or JobSchedule()
        self._clock_ms = clock_ms
        self._sleep_s = sleep_s or stop.wait  # stop.wait: a stop ends the wait at once
        self._on_fired = on_fired
        self._on_replaced = on_replaced
        self._interval_ms = max(1, round(config.interval_s * 1000))
        self._next_reload_ms = 0
        self._fire_ahead_ms = max(0, fire_ahead_ms)
        self._held: dict[str, int] = {}  # job id -> fire time not claimed ahead (busy)

    def run(self) -> None:
        """Run until ``stop`` is set; transient errors are logged and retried."""
        what = f"member {self.config.member_uuid}"
        run_forever(self.step, stop=self.stop, what=what, logger=log)

    def step(self) -> None:
        """Reload if due, fire what is due, wait."""
        now_ms = self._clock_ms()
        if now_ms >= self._next_reload_ms:
            self.reload(now_ms)
            self._next_reload_ms = now_ms + self._interval_ms
        due = self.schedule.due(now_ms)
        for miss in due.misfires:
            log.warning(
                "member %s: job %s missed %s fire time(s) from %s to %s ms (too late)",
                self.config.member_uuid,
                miss.job_id,
                miss.count,
                miss.first_ms,
                miss.until_ms,
            )
        fires = [*due.fires, *self._ahead(now_ms)]
        if fires and not self.stop.is_set():
            self.fire(fires, now_ms)
        self._wait()

    def _ahead(self, now_ms: int) -> list[Fire]:
        """The fires to claim ahead at ``now_ms``: each job's next time within the fire-ahead
        window, but for the jobs with an execution not ended (held until their time)."""
        self._held = {j: t for j, t in self._held.items() if t > now_ms}
        if not self._fire_ahead_ms or self.stop.is_set():
            return []
        until_ms = now_ms + self._fire_ahead_ms
        soon = [f for f in self.schedule.upcoming(now_ms, until_ms) if f.job_id not in self._held]
        if not soon:
            return []
        busy = jobs_with_active(self.store, {f.job_id for f in soon})
        self._held.update((f.job_id, f.fire_ms) for f in soon if f.job_id in busy)
        return [f for f in soon if f.job_id not in busy]

    def reload(self, now_ms: int) -> ReloadResult:
        """Re-read the jobs this member owns and its running executions."""
        uuid = self.config.member_uuid
        jobs = list_jobs(self.store, owner_uuid=uuid)
        running = list_executions(self.store, member_uuid=uuid, statuses=("running",))
        self.producer.set_running(e.id for e in running)
        result = self.schedule.reload(jobs, now_ms=now_ms)
        self._log_reload(result)
        return result

    def _log_reload(self, result: ReloadResult) -> None:
        uuid = self.config.member_uuid
        for plan in result.added:
            log.info(
                "member %s: scheduling job %s (epoch %s), next fire %s, %s missed before",
                uuid,
                plan.job_id,
                plan.owner_epoch,
                plan.next_fire_ms,
                plan.missed,
            )
        for gone in result.removed:
            if gone.reason == "lost":
                self._log_lost(gone.job_id, gone.owner_epoch)
            else:
                log.info("member %s: unscheduled job %s (%s)", uuid, gone.job_id, gone.reason)
        for bad in result.invalid:
            log.warning("member %s: job %s not scheduled: %s", uuid, bad.job_id, bad.reason)

    def _log_lost(self, job_id: str, owner_epoch: int) -> None:
        log.warning(
            "member %s: lost job %s (epoch %s)", self.config.member_uuid, job_id, owner_epoch
        )

    def fire(self, fires: Sequence[Fire], now_ms: int) -> dict[Fire, Admitted]:
        """Claim ``fires`` (oldest first) through the fence in one transaction, each job's
        concurrency policy applied; returns how each fire claimed was admitted (its
        execution ``scheduled``, or ``skipped`` with the reason). A job whose fire was
        refused is unscheduled (logged once as lost) and its later fires in ``fires`` are
        not claimed."""
        uuid = self.config.member_uuid
        claims = {
            FireClaim(
                f.job_id,
                f.owner_epoch,
                f.fire_ms,
                self.schedule.next_after(f),
                f.trigger,
                f.missed_ms,
                f.missed,
            ): f
            for f in fires
            if self.schedule.is_planned(f)
        }
        claimed = claim_fires(self.store, list(claims), member_uuid=uuid, now_ms=now_ms)
        fired: dict[Fire, Admitted] = {}
        for claim, fire in claims.items():
            admitted = claimed.get(claim)
            if admitted is None:
                if self.schedule.lost(fire.job_id) is not None:
                    self._log_lost(fire.job_id, fire.owner_epoch)
                continue
            if self.schedule.is_planned(fire):
                if self.schedule.fired(fire.job_id, fire.fire_ms, claim.next_fire_ms) is None:
                    log.info(
                        "member %s: job %s fired the last time of its schedule (%s)",
                        uuid,
                        fire.job_id,
                        fire.fire_ms,
                    )
                fired[fire] = admitted
        for fire, admitted in fired.items():
            log.debug(
                "member %s: fired job %s at %s (%s): %s %s",
                uuid,
                fire.job_id,
                fire.fire_ms,
                fire.trigger,
                admitted.execution_id,
                admitted.status,
            )
            if admitted.aborted:
                self._on_replaced(admitted)
        if any(a.status == "scheduled" for a in fired.values()):
            self._on_fired()
        return fired

    def _wait(self) -> None:
        wake_ms = min([self._next_reload_ms, *self._held.values()])
        next_due_ms = self.schedule.next_due_ms(skip=self._held)
        if next_due_ms is not None:
            wake_ms = min(wake_ms, next_due_ms - self._fire_ahead_ms)
        delay_ms = wake_ms - self._clock_ms()
        if delay_ms > 0:
            self._sleep_s(delay_ms / 1000)

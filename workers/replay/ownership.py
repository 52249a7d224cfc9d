"""Who owns which job, and what runs where, at the replay's virtual time (pure).

The snapshot holds the jobs as they were at record time, after any takeover of the
window. A takeover does not change a job's ``modified_by`` (the last member that really
modified it) but sets ``modified_ms``; so a job whose owner is not its ``modified_by`` and
that changed after the replay's start was taken over during the window, from
``modified_by``: that is its owner at the start. The replay then moves jobs itself, with
its own takeovers. A job counts from its ``created_ms``.

Running executions come from a member's last heartbeat (``running``), with their attempt
and their job's retry settings from the snapshot; an execution the snapshot lacks counts
as a first attempt of a job without retries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from workers.replay.records import ExecutionRecord, JobRecord
from workers.store import RunningExecution

__all__ = ["Ownership", "assign_jobs", "running_executions"]


def assign_jobs(job_ids: Sequence[str], quotas: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
    """(job, new owner) for ``job_ids`` in order: the first ``q1`` to the first destination
    of ``quotas``, the next ``q2`` to the second, …, a surplus to the last — the order
    :func:`workers.store.commit_takeover` fills them in (it ranks by job id on PostgreSQL)."""
    slots = [member for member, n in quotas for _ in range(n)]
    if not slots:
        return []
    return [(job, slots[min(i, len(slots) - 1)]) for i, job in enumerate(job_ids)]


class Ownership:
    """Job owners at the virtual time, reconstructed at ``start_ms`` from the snapshot."""

    def __init__(self, jobs: Iterable[JobRecord], start_ms: int) -> None:
        self.jobs = {j.id: j for j in jobs}
        self.owner = {
            j.id: (
                j.modified_by
                if j.owner_uuid != j.modified_by and j.modified_ms >= start_ms
                else j.owner_uuid
            )
            for j in self.jobs.values()
        }

    def owned(self, uuid: str, now_ms: int) -> list[str]:
        """The jobs ``uuid`` owns at ``now_ms``, by id."""
        return sorted(
            j for j, o in self.owner.items() if o == uuid and self.jobs[j].created_ms <= now_ms
        )

    def counts(self, now_ms: int) -> dict[str, int]:
        """Jobs per owner at ``now_ms``."""
        out: dict[str, int] = {}
        for j, o in self.owner.items():
            if self.jobs[j].created_ms <= now_ms:
                out[o] = out.get(o, 0) + 1
        return out

    def move(
        self, dead_uuid: str, quotas: Sequence[tuple[str, int]], now_ms: int
    ) -> list[tuple[str, str]]:
        """Give ``dead_uuid``'s jobs to the destinations of ``quotas``; (job, new owner)."""
        moved = assign_jobs(self.owned(dead_uuid, now_ms), quotas)
        for job, to in moved:
            self.owner[job] = to
        return moved


def running_executions(
    member_uuid: str,
    running: Sequence[str],
    executions: dict[str, ExecutionRecord],
    jobs: dict[str, JobRecord],
) -> list[RunningExecution]:
    """The executions a member's last heartbeat listed as running, as a recovery plans
    them (attempt and retry settings from the snapshot), by id."""
    out = []
    for eid in sorted(set(running)):
        e = executions.get(eid)
        job = jobs.get(e.job_id) if e else None
        out.append(
            RunningExecution(
                id=eid,
                job_id=e.job_id if e else "",
                member_uuid=member_uuid,
                attempt=e.attempt if e else 1,
                retry_of=e.retry_of if e else None,
                retry_count=job.retry_count if job else 0,
                retry_delay_s=job.retry_delay_s if job else 0.0,
            )
        )
    return out

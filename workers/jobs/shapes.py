"""The JSON shapes of jobs and executions, one for the CLI (``--json``) and the API alike.

Times are given twice: epoch ms (``*_ms``) and ISO 8601 UTC. A job's ``executor`` is the
object of ``workers.jobs.executor`` with credentials masked; its ``command`` stays the argv
(``[]`` for the other executors). An execution's ``output`` (up to
``qwcontrol.executions.output.maxBytes`` of it, head and tail) is in
:func:`execution_detail_json` only: lists stay small.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from workers.jobs.executor import describe, executor_of, masked_executor
from workers.jobs.hooks import shown_hooks
from workers.liveness.listing import iso_utc
from workers.store import ExecutionRow, JobRow

__all__ = ["execution_detail_json", "execution_json", "executor_json", "job_json", "job_runs"]


def job_json(job: JobRow) -> dict[str, Any]:
    """A job as ``qwc jobs list --json`` prints it (and the API serves it). ``enabled``: fired
    by its schedule (both flags on); ``time_zone`` null: the cluster default
    (``qwcontrol.scheduler.timeZone``); ``misfire_grace_s`` null: 60 s; ``notify``: the
    job's webhooks per trigger, URLs redacted (they may hold a token)."""
    return {
        "id": job.id,
        "name": job.name,
        "project": job.project,
        "group": job.group_name,
        "command": list(job.command),
        "executor": executor_json(job),
        "timeout_s": job.timeout_s,
        "concurrency": job.concurrency,
        "schedule": job.schedule,
        "time_zone": job.time_zone,
        "enabled": job.enabled,
        "schedule_enabled": job.schedule_enabled,
        "execution_enabled": job.execution_enabled,
        "misfire": job.misfire,
        "misfire_grace_s": job.misfire_grace_s,
        "description": job.description,
        "notify": shown_hooks(job.notify),
        "owner_uuid": job.owner_uuid,
        "owner_epoch": job.owner_epoch,
        "retry_count": job.retry_count,
        "retry_delay_s": job.retry_delay_s,
        "next_fire_ms": job.next_fire_ms,
        "next_fire": iso_utc(job.next_fire_ms),
        "last_fire_ms": job.last_fire_ms,
        "last_fire": iso_utc(job.last_fire_ms),
        "missed_fires": job.missed_fires,
        "modified_by": job.modified_by,
        "modified_ms": job.modified_ms,
        "created_ms": job.created_ms,
    }


def executor_json(job: JobRow) -> dict[str, Any]:
    """The job's executor as listings show it (credentials masked). A row that holds no
    valid executor (written by hand, or a command job with an empty argv) shows its
    ``kind`` and why it is ``invalid`` instead of failing the whole listing."""
    try:
        return masked_executor(executor_of(job.executor, job.command, job.executor_spec))
    except ValidationError as exc:
        return {"kind": job.executor, "invalid": _first_error(exc)}


def job_runs(job: JobRow) -> str:
    """What the job runs, in one line for a table (``invalid: …`` for a bad row)."""
    try:
        return describe(executor_of(job.executor, job.command, job.executor_spec))
    except ValidationError as exc:
        return f"invalid {job.executor}: {_first_error(exc)}"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def execution_json(run: ExecutionRow) -> dict[str, Any]:
    """An execution as ``qwc executions --json`` lists it (without its output)."""
    return {
        "id": run.id,
        "job_id": run.job_id,
        "member_uuid": run.member_uuid,
        "status": run.status,
        "reason": run.reason,
        "trigger": run.trigger,
        "missed_ms": None if run.missed_ms is None else list(run.missed_ms),
        "attempt": run.attempt,
        "retry_of": run.retry_of,
        "fire_ms": run.fire_ms,
        "fire_time": iso_utc(run.fire_ms),
        "owner_epoch": run.owner_epoch,
        "created_ms": run.created_ms,
        "started_ms": run.started_ms,
        "started": iso_utc(run.started_ms),
        "ended_ms": run.ended_ms,
        "ended": iso_utc(run.ended_ms),
        "exit_code": run.exit_code,
        "rq_job_id": run.rq_job_id,
    }


def execution_detail_json(run: ExecutionRow) -> dict[str, Any]:
    """One execution with its ``output`` (``qwc executions show --json``, the API's
    ``GET /api/cluster/executions/{id}``)."""
    return {**execution_json(run), "output": run.output}

"""Specs and store columns, both ways: what a new job's row holds, and what an edit changes.

An edit (``qwc jobs edit``, ``PATCH``/``PUT /api/cluster/jobs/{id}``, an import with
``--update``) is validated as a whole job: the job's current fields (:func:`spec_fields`),
with the changes applied (:func:`merged_spec`; an executor given replaces the job's), go
through the same ``JobSpec`` as a new job, so an edit can never leave a job that could not
have been created. :func:`changed_columns` is what ``workers.store.update_job`` then writes.
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from workers.jobs.executor import (
    CommandExecutor,
    HttpExecutor,
    PythonExecutor,
    ShellExecutor,
    executor_columns,
    executor_of,
)
from workers.jobs.hooks import merged_hooks
from workers.jobs.spec import EXECUTOR_FIELDS, JobSpec, parse_spec
from workers.store import JobRow

__all__ = ["changed_columns", "job_columns", "merged_spec", "spec_fields"]

# The other names a spec field goes by (``JobSpec``'s aliases): a change given under one of
# them must replace the job's value, which spec_fields gives under the field's own name.
_ALIASES = {
    "schedule_enabled": "enabled",
    "timezone": "time_zone",
    "timeZone": "time_zone",
    "as": "owner",
    "notification": "notify",
}


def job_columns(spec: JobSpec) -> dict[str, Any]:
    """The store's columns of ``spec`` (the fields ``update_job`` takes; ``create_job``
    calls the schedule's flag ``enabled``). The owner and the id are not among them."""
    kind, command, executor_spec = executor_columns(spec.executor)
    return {
        "project": spec.project,
        "group_name": spec.group,
        "name": spec.name,
        "command": command,
        "executor": kind,
        "executor_spec": executor_spec,
        "schedule": spec.schedule,
        "time_zone": spec.time_zone,
        "schedule_enabled": spec.enabled,
        "execution_enabled": spec.execution_enabled,
        "retry_count": spec.retry,
        "retry_delay_s": spec.retry_delay,
        "timeout_s": spec.timeout,
        "concurrency": spec.concurrency,
        "misfire": spec.misfire,
        "misfire_grace_s": spec.misfire_grace,
        "description": spec.description,
        "notify": spec.notify.columns(),
    }


def spec_fields(job: JobRow) -> dict[str, Any]:
    """``job`` as the fields of a spec (without owner and id). A row without a valid
    executor gives none: an edit must then name one."""
    fields: dict[str, Any] = {
        "name": job.name,
        "project": job.project,
        "group": job.group_name,
        "schedule": job.schedule,
        "time_zone": job.time_zone,
        "enabled": job.schedule_enabled,
        "execution_enabled": job.execution_enabled,
        "retry": job.retry_count,
        "retry_delay": job.retry_delay_s,
        "timeout": job.timeout_s,
        "concurrency": job.concurrency,
        "misfire": job.misfire,
        "misfire_grace": job.misfire_grace_s,
        "description": job.description,
        "notify": {t: list(u) for t, u in job.notify.items()},
    }
    try:
        executor = executor_of(job.executor, job.command, job.executor_spec)
    except ValidationError:
        return fields
    if isinstance(executor, CommandExecutor):
        fields["command"] = list(executor.argv)
    elif isinstance(executor, ShellExecutor):
        fields["shell"] = executor.script
    elif isinstance(executor, HttpExecutor):
        fields["http"] = executor.model_dump(mode="json", exclude={"kind"}, by_alias=True)
    elif isinstance(executor, PythonExecutor):
        fields["python"] = {"callable": executor.callable, "kwargs": executor.kwargs}
    return fields


def merged_spec(job: JobRow, changes: Mapping[str, Any], where: str = "") -> JobSpec:
    """``job`` with ``changes`` (spec fields) applied, validated as a new job would be. An
    executor among the changes replaces the job's. Raises ``SpecError`` naming each bad
    field."""
    fields = spec_fields(job)
    changes = {_ALIASES.get(k, k): v for k, v in changes.items()}
    if any(changes.get(f) is not None for f in EXECUTOR_FIELDS):
        for f in EXECUTOR_FIELDS:
            fields.pop(f, None)
    if "notify" in changes:  # the triggers given replace the job's; null clears them all
        changes = {**changes, "notify": merged_hooks(fields["notify"], changes["notify"])}
    fields.update(changes)
    return parse_spec(fields, where)


def changed_columns(job: JobRow, spec: JobSpec) -> dict[str, Any]:
    """The columns of ``spec`` that differ from ``job``'s (what ``update_job`` writes)."""
    current = {
        "project": job.project,
        "group_name": job.group_name,
        "name": job.name,
        "command": list(job.command),
        "executor": job.executor,
        "executor_spec": dict(job.executor_spec),
        "schedule": job.schedule,
        "time_zone": job.time_zone,
        "schedule_enabled": job.schedule_enabled,
        "execution_enabled": job.execution_enabled,
        "retry_count": job.retry_count,
        "retry_delay_s": job.retry_delay_s,
        "timeout_s": job.timeout_s,
        "concurrency": job.concurrency,
        "misfire": job.misfire,
        "misfire_grace_s": job.misfire_grace_s,
        "description": job.description,
        "notify": {t: list(u) for t, u in job.notify.items()},
    }
    return {k: v for k, v in job_columns(spec).items() if current[k] != v}

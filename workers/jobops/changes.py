"""Creating, importing, editing, enabling and deleting jobs: what the CLI and the API share.

Each function takes the store (or a connection: then it runs in the caller's transaction),
the jobs as ``workers.jobs`` specs, and ``now_ms``; the owners come from
``workers.jobops.owners``. Rules (docs/jobs.md, "Managing jobs"):

* A modification through a member (``modifier``) makes it the owner; without one the owner
  is kept. Either way ``owner_epoch`` + 1: the fence refuses the previous plan, and the
  owner plans the job anew with its new settings at its next reload.
* An import is all or nothing, in one transaction. A job that exists (the entry's ``id``,
  else its project/group/name) is an error naming it, unless ``update``: then it is
  modified, only when something changed (an unchanged job keeps its epoch: its owner is
  not disturbed).
* Deleting a job lets its running executions finish (``abort`` aborts them afterwards
  through the abort path, by the caller: it needs Redis).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from schemas.errors import ConflictError, NotFoundError
from workers.jobops.owners import modifier, new_job_owners
from workers.jobs import JobSpec, changed_columns, job_columns, merged_spec
from workers.store import (
    Db,
    DeletedJob,
    JobRow,
    Store,
    create_job,
    delete_job,
    find_job,
    get_job,
    list_jobs,
    update_job,
)

__all__ = [
    "ImportResult",
    "create_from_spec",
    "delete_by_ref",
    "edit_by_ref",
    "existing_job",
    "import_specs",
    "set_enabled",
]


def create_from_spec(db: Db, spec: JobSpec, owner: str, now_ms: int) -> JobRow:
    """Create ``spec``'s job (with its ``id`` when it has one) owned by ``owner``. Raises
    ``ConflictError`` naming the job that has its path or id."""
    columns = job_columns(spec)
    return create_job(
        db,
        modified_by=owner,
        now_ms=now_ms,
        job_id=spec.id,
        enabled=columns.pop("schedule_enabled"),
        **columns,
    )


def edit_by_ref(
    db: Db, ref: str, changes: dict[str, object], *, modifier: str | None, now_ms: int
) -> tuple[JobRow, JobRow]:
    """Apply ``changes`` (spec fields) to the job ``ref`` names (id or path); returns the
    job before and after. Always a modification (epoch + 1), even when nothing but the
    owner changes. Raises ``NotFoundError``, ``SpecError`` (the merged job is invalid),
    ``ConflictError`` (the new path is taken)."""
    before = find_job(db, ref)
    spec = merged_spec(before, changes)
    columns = changed_columns(before, spec)
    return before, update_job(db, before.id, modified_by=modifier, now_ms=now_ms, **columns)


def set_enabled(
    db: Db,
    ref: str,
    *,
    schedule: bool | None,
    execution: bool | None,
    modifier: str | None,
    now_ms: int,
) -> JobRow:
    """Turn the schedule's and/or the execution's flag of job ``ref`` on or off (None:
    unchanged). Raises ``NotFoundError``."""
    flags: dict[str, bool] = {}
    if schedule is not None:
        flags["schedule_enabled"] = schedule
    if execution is not None:
        flags["execution_enabled"] = execution
    job = find_job(db, ref)
    return update_job(db, job.id, modified_by=modifier, now_ms=now_ms, **flags)


def delete_by_ref(db: Db, ref: str, *, modifier: str | None, now_ms: int) -> DeletedJob:
    """Delete the job ``ref`` names (``workers.store.delete_job``). Raises
    ``NotFoundError``."""
    return delete_job(db, find_job(db, ref).id, modified_by=modifier, now_ms=now_ms)


@dataclass(frozen=True)
class ImportResult:
    """What an import did to each entry, in order: ``created`` (with why that owner),
    ``updated`` or ``unchanged`` (``update`` only), with the job as it is now."""

    outcomes: list[tuple[str, JobRow, str]] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        """How many entries had ``outcome``."""
        return sum(1 for o, _, _ in self.outcomes if o == outcome)


def import_specs(
    store: Store,
    specs: Sequence[JobSpec],
    *,
    update: bool,
    server_uuid: str | None,
    now_ms: int,
) -> ImportResult:
    """Create (or, with ``update``, modify) the jobs of ``specs`` in one transaction; see
    the module docstring. A new job is owned by its entry's ``owner`` (a member's UUID or
    name), else ``server_uuid``, else the active member owning the fewest jobs; an existing
    one is modified through its entry's ``owner``, else ``server_uuid``, else keeps its
    owner. Raises ``ConflictError`` (a job exists and not ``update``), ``OwnerError``;
    nothing is written then."""
    result = ImportResult()
    with store.begin() as conn:
        existing = [existing_job(conn, spec) if update else None for spec in specs]
        new_refs = [spec.owner for spec, old in zip(specs, existing, strict=True) if old is None]
        owners = iter(new_job_owners(conn, new_refs, server_uuid))
        for index, (spec, old) in enumerate(zip(specs, existing, strict=True)):
            if old is None:
                owner = next(owners)
                job = _create_entry(conn, index, spec, owner.uuid, now_ms)
                result.outcomes.append(("created", job, owner.why))
                continue
            through = modifier(conn, spec.owner, server_uuid)
            result.outcomes.append(_update(conn, old, spec, through, now_ms))
    return result


def _create_entry(db: Db, index: int, spec: JobSpec, owner: str, now_ms: int) -> JobRow:
    """:func:`create_from_spec`; a conflict names the entry and its field (id or name)."""
    try:
        return create_from_spec(db, spec, owner, now_ms)
    except ConflictError as exc:
        field_name = "id" if spec.id is not None and exc.existing_id == spec.id else "name"
        where = f"entry [{index}] field {field_name!r}: {exc}"
        raise ConflictError(where, existing_id=exc.existing_id) from exc


def existing_job(db: Db, spec: JobSpec) -> JobRow | None:
    """The live job an import entry updates: by its id, else by its path."""
    if spec.id is not None:
        try:
            return get_job(db, spec.id)
        except NotFoundError:
            pass
    found = list_jobs(db, project=spec.project, group_name=spec.group, name=spec.name)
    return found[0] if found else None


def _update(
    db: Db, job: JobRow, spec: JobSpec, through: str | None, now_ms: int
) -> tuple[str, JobRow, str]:
    columns = changed_columns(job, spec)
    if not columns and (through is None or through == job.owner_uuid):
        return "unchanged", job, ""
    updated = update_job(db, job.id, modified_by=through, now_ms=now_ms, **columns)
    return "updated", updated, ", ".join(sorted(columns)) or "owner"

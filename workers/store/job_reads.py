"""Reading scheduled jobs: by id, by the name operators give them, by filters, counts.

Every reader sees live jobs only (``deleted_ms`` NULL), unless asked: a deleted job is
found by its id with ``include_deleted`` (its executions' history names it). Rows and
writes: ``workers.store.jobs``.
"""

from __future__ import annotations

from sqlalchemy import func, select

from schemas.errors import NotFoundError
from schemas.tables import scheduled_jobs
from workers.store._db import Db, reading
from workers.store.jobs import JobRow, live

__all__ = ["count_jobs_by_owner", "find_job", "get_job", "list_jobs"]

_t = scheduled_jobs


def get_job(db: Db, job_id: str, *, include_deleted: bool = False) -> JobRow:
    """The job ``job_id``. Raises ``NotFoundError`` when it does not exist (or was deleted,
    unless ``include_deleted``)."""
    stmt = select(_t).where(_t.c.id == job_id)
    if not include_deleted:
        stmt = stmt.where(live())
    with reading(db) as conn:
        row = conn.execute(stmt).mappings().one_or_none()
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return JobRow.from_mapping(row)


def find_job(db: Db, ref: str, *, include_deleted: bool = False) -> JobRow:
    """The job an operator names: its id, else its path ``PROJECT/NAME`` or
    ``PROJECT/GROUP/NAME`` (a group may hold ``/``). A deleted job is found by its id only,
    and only with ``include_deleted``. Raises ``NotFoundError`` saying what was looked for."""
    ref = ref.strip()
    try:
        return get_job(db, ref, include_deleted=include_deleted)
    except NotFoundError:
        parts = ref.split("/")
        if len(parts) < 2 or not all((parts[0], parts[-1])):
            raise NotFoundError(
                f"no job with id {ref!r} (name a job by its id or PROJECT/[GROUP/]NAME)"
            ) from None
    project, group, name = parts[0], "/".join(parts[1:-1]), parts[-1]
    found = list_jobs(db, project=project, group_name=group, name=name)
    if not found:
        raise NotFoundError(f"no job with id or path {ref!r}")
    return found[0]


def list_jobs(
    db: Db,
    *,
    owner_uuid: str | None = None,
    project: str | None = None,
    group_name: str | None = None,
    name: str | None = None,
    enabled: bool | None = None,
) -> list[JobRow]:
    """Live jobs matching every given filter (exact match; ``enabled``: fired by its
    schedule), by project, group and name."""
    filters = {
        "owner_uuid": owner_uuid,
        "project": project,
        "group_name": group_name,
        "name": name,
        "enabled": enabled,
    }
    stmt = select(_t).where(live()).order_by(_t.c.project, _t.c.group_name, _t.c.name, _t.c.id)
    for column, value in filters.items():
        if value is not None:
            stmt = stmt.where(_t.c[column] == value)
    with reading(db) as conn:
        return [JobRow.from_mapping(row) for row in conn.execute(stmt).mappings()]


def count_jobs_by_owner(db: Db) -> dict[str, int]:
    """Number of live jobs per owner uuid (owners with no job are absent)."""
    stmt = select(_t.c.owner_uuid, func.count()).where(live()).group_by(_t.c.owner_uuid)
    with reading(db) as conn:
        return {owner: count for owner, count in conn.execute(stmt)}

"""Job administration shared by the CLI and the manager's API: who owns a job an operator
creates or modifies (``owners``), and the modifications themselves (``changes``: create,
import with ``--update``, edit, enable / disable, delete). Both read and write the store;
the decisions they make (which member, which columns changed) are pure functions of
``workers.jobops.owners`` and ``workers.jobs``."""

from __future__ import annotations

from workers.jobops.changes import (
    ImportResult,
    create_from_spec,
    delete_by_ref,
    edit_by_ref,
    existing_job,
    import_specs,
    set_enabled,
)
from workers.jobops.owners import (
    Owner,
    OwnerError,
    match_member,
    modifier,
    new_job_owners,
    spread_new_jobs,
)

__all__ = [
    "ImportResult",
    "Owner",
    "OwnerError",
    "create_from_spec",
    "delete_by_ref",
    "edit_by_ref",
    "existing_job",
    "import_specs",
    "match_member",
    "modifier",
    "new_job_owners",
    "set_enabled",
    "spread_new_jobs",
]

"""``qwc jobs`` (add, list, import) and ``qwc executions``: the store's jobs and their runs.

A job is owned by the last member that modified it ("last modifier owns"): ``jobs add`` and
``jobs import`` create each job owned by ``--as`` / the entry's ``owner`` (or ``as``), else
by ``qwcontrol.server.uuid``. A command is an argv list (split with ``shlex`` when given as
text); no shell ever runs it. Schedules are cron texts of 5 fields, or 6 with seconds first
(``schemas.cron``); a job without one runs only on demand. Specs and JSON shapes:
``workers.cli.jobs_spec``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from schemas.errors import StoreError
from schemas.tables import EXECUTION_STATUSES
from workers.cli.common import CliContext, echo_json, fail, pass_cli
from workers.cli.jobs_next_cmd import next_command
from workers.cli.jobs_spec import (
    DEFAULT_PROJECT,
    JobSpec,
    SpecError,
    execution_json,
    job_json,
    load_specs,
    parse_spec,
)
from workers.liveness.listing import iso_utc
from workers.store import Db, JobRow, Store, create_job, list_executions, list_jobs, open_store

__all__ = ["COMMANDS", "executions", "jobs"]


@contextmanager
def _opened(cli: CliContext) -> Iterator[Store]:
    """The configured store, closed on exit; exits 1 when it cannot be opened."""
    settings = cli.settings()
    try:
        store = open_store(settings)
    except (StoreError, OSError) as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits
    try:
        yield store
    finally:
        store.close()


def _owners(cli: CliContext, specs: list[JobSpec], where: str) -> list[str]:
    """The member owning each new job: its own, else qwcontrol.server.uuid; exits 2 when a
    job has neither."""
    default = cli.settings().server_uuid
    missing = [i for i, spec in enumerate(specs) if not (spec.owner or default)]
    if missing:
        indexes = ", ".join(f"[{i}]" for i in missing)
        entries = f"{where}: entr{'y' if len(missing) == 1 else 'ies'} {indexes}: " if where else ""
        fail(
            f"{entries}no owner: pass --as UUID (`owner:` in a file) or set qwcontrol.server.uuid",
            2,
        )
    return [str(spec.owner or default) for spec in specs]


def _create(db: Db, spec: JobSpec, owner: str, now_ms: int) -> JobRow:
    return create_job(
        db,
        project=spec.project,
        group_name=spec.group,
        name=spec.name,
        command=spec.command,
        schedule=spec.schedule,
        modified_by=owner,
        now_ms=now_ms,
        enabled=spec.enabled,
        retry_count=spec.retry,
        retry_delay_s=spec.retry_delay,
    )


def _path(job: JobRow) -> str:
    parts = [job.project, job.group_name, job.name] if job.group_name else [job.project, job.name]
    return "/".join(parts)


@click.group()
def jobs() -> None:
    """Scheduled jobs: each is owned by one member, which alone fires it.

    The owner is the last member that modified the job; a takeover moves jobs of a dead
    member to live ones (and increments their owner epoch, which fences the old owner out).
    """


jobs.add_command(next_command)  # `qwc jobs next` (workers.cli.jobs_next_cmd)


@jobs.command("add")
@click.argument("name")
@click.option(
    "--command",
    required=True,
    help="The command, split like a shell would "
    "(quotes, escapes) into argv; it runs without a shell.",
)
@click.option(
    "--schedule",
    default=None,
    metavar="CRON",
    help="Cron text: 5 fields (minute "
    "hour day-of-month month day-of-week) or 6 with seconds first, in UTC. Without "
    "one the job runs only on demand.",
)
@click.option("--project", default=DEFAULT_PROJECT, show_default=True, help="Project.")
@click.option("--group", default="", help="Group within the project (default: none).")
@click.option(
    "--as",
    "owner",
    default=None,
    metavar="UUID",
    help="Member that creates, hence owns, the job (default: qwcontrol.server.uuid).",
)
@click.option(
    "--retry",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Retries after a failed or incomplete execution.",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="S",
    help="Seconds to wait before a retry.",
)
@click.option("--disabled", is_flag=True, help="Create the job disabled (never fired).")
@click.option("--json", "as_json", is_flag=True, help="Print the new job as a JSON object.")
@pass_cli
def add_command(cli: CliContext, /, as_json: bool, disabled: bool, **options: object) -> None:
    """Create job NAME, owned by the member given with --as.

    Exits 2 on a bad option (cron text, UUID, empty command) or when no owner is known,
    1 when the project already has a job of that group and name or the store is unreachable.
    """
    try:
        spec = parse_spec({**options, "enabled": not disabled})
    except SpecError as exc:
        fail("invalid job: " + "; ".join(exc.problems), 2)
        return
    (owner,) = _owners(cli, [spec], "")
    with _opened(cli) as store:
        try:
            job = _create(store, spec, owner, int(time.time() * 1000))
        except StoreError as exc:
            fail(str(exc))
            return
    if as_json:
        echo_json(job_json(job))
    else:
        click.echo(f"job {job.id} created: {_path(job)}, owner {job.owner_uuid}")


@jobs.command("list")
@click.option("--owner", default=None, metavar="UUID", help="Only jobs of this member.")
@click.option("--project", default=None, help="Only jobs of this project.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@pass_cli
def list_command(cli: CliContext, owner: str | None, project: str | None, as_json: bool) -> None:
    """List jobs by project, group and name: owner, owner epoch, schedule, retries.

    --json prints objects with id, name, project, group, command, schedule, enabled,
    owner_uuid, owner_epoch, retry_count, retry_delay_s, next/last fire times (epoch ms
    and ISO UTC), modified_by, modified_ms, created_ms.
    """
    with _opened(cli) as store:
        rows = list_jobs(store, owner_uuid=owner and owner.lower(), project=project)
    if as_json:
        echo_json([job_json(job) for job in rows])
        return
    table = Table(title=f"jobs ({len(rows)})")
    for column in ("id", "project/group/name", "schedule", "owner", "epoch", "enabled", "retry"):
        table.add_column(column, overflow="fold")
    for job in rows:
        retry = f"{job.retry_count} after {job.retry_delay_s:g}s" if job.retry_count else "-"
        schedule = job.schedule or "(on demand)"
        enabled = "yes" if job.enabled else "no"
        table.add_row(
            job.id, _path(job), schedule, job.owner_uuid, str(job.owner_epoch), enabled, retry
        )
    Console().print(table)


@jobs.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the created jobs as JSON.")
@pass_cli
def import_command(cli: CliContext, file: Path, as_json: bool) -> None:
    """Create the jobs listed in FILE (.yaml, .yml or .json), all or none.

    FILE holds a list of objects with: name (required), command (required; text or a list
    of strings), schedule, project, group, owner (or as), retry, retry_delay, enabled.
    Every entry is checked before anything is written, and the jobs are created in one
    transaction. Exits 2 naming the entry index and field of every invalid entry (nothing
    is imported), 1 when the store is unreachable.
    """
    try:
        specs = load_specs(file)
    except SpecError as exc:
        fail("\n".join([*exc.problems, "nothing imported"]), 2)
        return
    owners = _owners(cli, specs, str(file))
    created: list[JobRow] = []
    with _opened(cli) as store:
        now_ms = int(time.time() * 1000)
        try:
            with store.begin() as conn:
                for spec, owner in zip(specs, owners, strict=True):
                    created.append(_create(conn, spec, owner, now_ms))
        except StoreError as exc:
            where = f"{file}: entry [{len(created)}] field 'name'"
            fail(f"{where}: {exc}\nnothing imported", 2)
            return
    if as_json:
        echo_json([job_json(job) for job in created])
    else:
        click.echo(f"imported {len(created)} job(s) from {file}")


@click.command()
@click.option("--job", "job_id", default=None, metavar="ID", help="Only executions of this job.")
@click.option("--member", default=None, metavar="UUID", help="Only executions on this member.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(EXECUTION_STATUSES),
    help="Only executions in this status (repeatable).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="At most this many, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@pass_cli
def executions(
    cli: CliContext,
    job_id: str | None,
    member: str | None,
    statuses: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """List executions of jobs, newest first.

    --json prints objects with id, job_id, member_uuid, status (scheduled, running,
    succeeded, failed, aborted, incomplete), trigger (schedule, manual, retry, remote),
    attempt, retry_of, fire_ms and fire_time (the time it was scheduled for, ISO UTC),
    started and ended (ISO UTC or null; also *_ms), exit_code, rq_job_id, output_tail.
    """
    with _opened(cli) as store:
        rows = list_executions(
            store,
            job_id=job_id,
            member_uuid=member and member.lower(),
            statuses=statuses or None,
            limit=limit,
        )
    if as_json:
        echo_json([execution_json(run) for run in rows])
        return
    table = Table(title=f"executions ({len(rows)}, newest first)")
    columns = ("id", "job", "member", "status", "trigger", "attempt", "fire time", "ended", "exit")
    for column in columns:
        table.add_column(column, overflow="fold")
    for run in rows:
        exit_code = "-" if run.exit_code is None else str(run.exit_code)
        times = (iso_utc(run.fire_ms) or "-", iso_utc(run.ended_ms) or "-")
        table.add_row(
            run.id,
            run.job_id,
            run.member_uuid,
            run.status,
            run.trigger,
            str(run.attempt),
            *times,
            exit_code,
        )
    Console().print(table)


COMMANDS: list[click.Command] = [jobs, executions]

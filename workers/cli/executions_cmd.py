"""``qwc executions`` (list, newest first) and ``qwc executions show ID`` (one, with output).

JSON shapes: ``workers.jobs.shapes`` (the list leaves the output out; ``show`` has it).
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from schemas.errors import NotFoundError
from schemas.tables import EXECUTION_STATUSES
from workers.cli.common import (
    CliContext,
    echo_json,
    fail,
    listing_options,
    opened_store,
    pass_cli,
)
from workers.jobs import execution_detail_json, execution_json
from workers.liveness.listing import iso_utc
from workers.store import ExecutionRow, find_job, get_execution, get_job, list_executions

__all__ = ["COMMANDS", "executions", "show_lines"]


@click.group(invoke_without_command=True)
@click.option(
    "--job",
    "job_ref",
    default=None,
    metavar="JOB",
    help="Only executions of this job: its id (a deleted job's too) or PROJECT/[GROUP/]NAME.",
)
@click.option("--member", default=None, metavar="UUID", help="Only executions on this member.")
@listing_options("executions", EXECUTION_STATUSES)
@click.pass_context
def executions(
    ctx: click.Context,
    job_ref: str | None,
    member: str | None,
    statuses: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """List executions of jobs, newest first; `qwc executions show ID` shows one with its
    output.

    Status: scheduled, running, succeeded, failed, aborted (by `qwc abort`, or replaced by
    a newer run of a job with concurrency replace), incomplete (its member died or
    stopped), timedout (the job's timeout ended it), skipped (concurrency forbid: the job
    was still running); "reason" says why in words.

    --json prints objects with id, job_id, member_uuid, status, reason, trigger (schedule,
    manual, retry, remote), attempt, retry_of, fire_ms and fire_time (the time it was
    scheduled for, ISO UTC), started and ended (ISO UTC or null; also *_ms), exit_code,
    rq_job_id. The output is only in `qwc executions show`.
    """
    if ctx.invoked_subcommand is not None:
        return
    cli = ctx.ensure_object(CliContext)
    with opened_store(cli) as store:
        try:
            job_id = find_job(store, job_ref, include_deleted=True).id if job_ref else None
        except NotFoundError as exc:
            fail(str(exc), 2)
            return
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
    columns = ("id", "job", "member", "status", "trigger", "attempt", "fire time", "ended")
    for column in (*columns, "exit", "reason"):
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
            run.reason or "",
        )
    Console().print(table)


@executions.command("show")
@click.argument("execution_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, with output.")
@pass_cli
def show(cli: CliContext, execution_id: str, as_json: bool) -> None:
    """Show execution ID: job, member, status and why, times, and its output (up to
    qwcontrol.executions.output.maxBytes of it: when the command printed more, its head
    and its tail, with a line saying how many bytes were dropped between them).

    --json prints the object of `qwc executions --json` with "output" added. Exits 2 for
    an unknown execution, 1 when the store is unreachable.
    """
    with opened_store(cli) as store:
        try:
            run = get_execution(store, execution_id)
        except NotFoundError:
            fail(f"no execution {execution_id}", 2)
            return
        try:
            job = get_job(store, run.job_id, include_deleted=True)
            path = job.path + (" (job deleted)" if job.deleted_ms is not None else "")
        except NotFoundError:
            path = "(job deleted)"
    if as_json:
        echo_json(execution_detail_json(run))
        return
    click.echo("\n".join(show_lines(run, path)))
    if run.output:
        click.echo(run.output, nl=not run.output.endswith("\n"))


def show_lines(run: ExecutionRow, job_path: str) -> list[str]:
    """The header of ``qwc executions show``: one line per fact, then the output's title."""
    status = run.status if run.exit_code is None else f"{run.status} (exit {run.exit_code})"
    attempt = f"attempt {run.attempt}" + (f", retry of {run.retry_of}" if run.retry_of else "")
    took = (
        f" ({(run.ended_ms - run.started_ms) / 1000:.3f} s)"
        if run.started_ms is not None and run.ended_ms is not None
        else ""
    )
    lines = [
        f"execution {run.id}",
        f"  job        {run.job_id} {job_path}",
        f"  member     {run.member_uuid}",
        f"  status     {status}",
    ]
    if run.reason:
        lines.append(f"  reason     {run.reason}")
    lines += [
        f"  trigger    {run.trigger}, {attempt}",
        f"  fire time  {iso_utc(run.fire_ms)}",
        f"  started    {iso_utc(run.started_ms) or '-'}",
        f"  ended      {iso_utc(run.ended_ms) or '-'}{took}",
        "output:" if run.output else "output: (none)",
    ]
    return lines


COMMANDS: list[click.Command] = [executions]

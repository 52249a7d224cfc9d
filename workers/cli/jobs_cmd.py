"""``qwc jobs`` (add, list, import; edit, delete, enable, disable in ``jobs_edit_cmd``;
next in ``jobs_next_cmd``): the store's jobs.

A job is owned by the last member that modified it ("last modifier owns"): ``jobs add``
and ``jobs import`` create each job owned by ``--as`` / the entry's ``owner`` (a member's
UUID or name), else by ``qwcontrol.server.uuid``, else by the active member owning the
fewest jobs (``workers.jobops.owners``). It runs one executor: a command (an argv list,
split with ``shlex`` when given as text; no shell ever runs it), a shell script
(``/bin/sh -c``), an HTTP request or a Python callable; with a timeout, a concurrency policy
(``allow|forbid|replace``, default ``forbid``), a time zone and a misfire policy. Specs,
executors and JSON shapes: ``workers.jobs``; ``jobs import`` also reads Rundeck's job YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from schemas.errors import ConflictError, NotFoundError, StoreError
from workers.cli.common import CliContext, echo_json, fail, opened_store, pass_cli
from workers.cli.jobs_edit_cmd import EDIT_COMMANDS
from workers.cli.jobs_next_cmd import next_command
from workers.cli.jobs_options import job_options, now_ms, spec_fields_of_options
from workers.jobops import (
    OwnerError,
    create_from_spec,
    import_specs,
    match_member,
    new_job_owners,
)
from workers.jobs import SpecError, job_json, job_runs, load_import, parse_spec
from workers.store import JobRow, find_job, list_jobs, list_members

__all__ = ["COMMANDS", "jobs"]


@click.group()
def jobs() -> None:
    """Scheduled jobs: each is owned by one member, which alone fires it.

    The owner is the last member that modified the job; a takeover moves jobs of a dead
    member to live ones (and increments their owner epoch, which fences the old owner out).
    JOB, wherever a command takes one, is a job id or its path PROJECT/NAME or
    PROJECT/GROUP/NAME.
    """


jobs.add_command(next_command)  # `qwc jobs next` (workers.cli.jobs_next_cmd)
for _command in EDIT_COMMANDS:  # edit, delete, enable, disable (workers.cli.jobs_edit_cmd)
    jobs.add_command(_command)


@jobs.command("add")
@click.argument("name")
@job_options(edit=False)
@click.option("--disabled", is_flag=True, help="Create the job with its schedule disabled.")
@click.option(
    "--execution-disabled", is_flag=True, help="Create the job with its execution disabled."
)
@click.option("--json", "as_json", is_flag=True, help="Print the new job as a JSON object.")
@pass_cli
def add_command(
    cli: CliContext,
    /,
    name: str,
    as_json: bool,
    disabled: bool,
    execution_disabled: bool,
    **options: Any,
) -> None:
    """Create job NAME, owned by the member given with --as, running exactly one executor:
    --command, --shell, --http or --python.

    Exits 2 on a bad option (cron text, zone, empty command, not one executor, a bad
    executor field: the message names it), an unknown or ambiguous --as, or when no owner
    can be found; 1 when the project already has a job of that group and name (the message
    names its id) or the store is unreachable.
    """
    try:
        fields = spec_fields_of_options(options)
        flags = {"enabled": not disabled, "execution_enabled": not execution_disabled}
        spec = parse_spec({**fields, **flags, "name": name})
    except SpecError as exc:
        fail("invalid job: " + "; ".join(exc.problems), 2)
        return
    with opened_store(cli) as store:
        try:
            (owner,) = new_job_owners(store, [spec.owner], cli.settings().server_uuid)
            job = create_from_spec(store, spec, owner.uuid, now_ms())
        except OwnerError as exc:
            fail(str(exc), 2)
            return
        except StoreError as exc:
            fail(str(exc))
            return
    if as_json:
        echo_json(job_json(job))
        return
    why = "" if owner.why == "named" else f" ({owner.why})"
    click.echo(f"job {job.id} created: {job.path}, owner {job.owner_uuid}{why}")


def _flags(job: JobRow) -> str:
    if job.schedule_enabled and job.execution_enabled:
        return "yes"
    if not job.execution_enabled:
        return "no" if not job.schedule_enabled else "execution off"
    return "schedule off"


@jobs.command("list")
@click.option("--owner", default=None, metavar="MEMBER", help="Only jobs of this member.")
@click.option("--project", default=None, help="Only jobs of this project.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@pass_cli
def list_command(cli: CliContext, owner: str | None, project: str | None, as_json: bool) -> None:
    """List jobs by project, group and name: what runs, owner, owner epoch, schedule (and
    its zone), enabled (yes, schedule off, execution off, no), retries.

    --json prints objects with id, name, project, group, description, command (argv; [] for
    the other executors), executor (kind and parameters; credentials in HTTP headers and
    URLs shown as ***), timeout_s, concurrency, schedule, time_zone (null: the cluster
    default), enabled (fired by its schedule), schedule_enabled, execution_enabled,
    misfire, misfire_grace_s, notify (the job's webhooks per trigger, URLs shown as scheme,
    host and port), owner_uuid, owner_epoch, retry_count, retry_delay_s,
    next/last fire times (epoch ms and ISO UTC), missed_fires (fire times that never ran:
    misfires), modified_by, modified_ms, created_ms.
    """
    with opened_store(cli) as store:
        try:
            owner_uuid = match_member(list_members(store), owner) if owner else None
        except OwnerError as exc:
            fail(str(exc), 2)
            return
        rows = list_jobs(store, owner_uuid=owner_uuid, project=project)
    if as_json:
        echo_json([job_json(job) for job in rows])
        return
    table = Table(title=f"jobs ({len(rows)})")
    columns = ("id", "project/group/name", "runs", "schedule", "owner", "epoch", "enabled")
    for column in (*columns, "retry"):
        table.add_column(column, overflow="fold", no_wrap=column in ("schedule", "epoch"))
    for job in rows:
        retry = f"{job.retry_count} after {job.retry_delay_s:g}s" if job.retry_count else "-"
        schedule = job.schedule or "(on demand)"
        if job.schedule and job.time_zone:
            schedule += f" ({job.time_zone})"
        runs = (
            job_runs(job)
            + f" ({job.concurrency}"
            + (f", timeout {job.timeout_s:g} s)" if job.timeout_s is not None else ")")
        )
        table.add_row(
            job.id, job.path, runs, schedule, job.owner_uuid, str(job.owner_epoch), _flags(job),
            retry,
        )  # fmt: skip
    Console().print(table)


@jobs.command("show")
@click.argument("job_ref", metavar="JOB")
@click.option("--json", "as_json", is_flag=True, help="Print the job as a JSON object.")
@pass_cli
def show_command(cli: CliContext, job_ref: str, as_json: bool) -> None:
    """Show job JOB: every field of `jobs list --json`, one per line, and its webhooks
    per trigger (URLs shown as scheme, host and port: they may hold a token).

    Exits 2 for an unknown job, 1 when the store is unreachable.
    """
    with opened_store(cli) as store:
        try:
            job = find_job(store, job_ref)
        except NotFoundError as exc:
            fail(str(exc), 2)
            return
    shown = job_json(job)
    if as_json:
        echo_json(shown)
        return
    hooks = shown.pop("notify")
    for key, value in shown.items():
        click.echo(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
    click.echo("notify:" + ("" if hooks else " (none)"))
    for trigger, urls in hooks.items():
        click.echo(f"  {trigger}: {', '.join(urls)}")


@jobs.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--project", default=None, help="Project of the jobs that name none (Rundeck exports)."
)
@click.option(
    "--update",
    is_flag=True,
    help="Modify the jobs that exist (matched by id / Rundeck uuid, else project/group/name) "
    "instead of refusing the file; unchanged ones are left alone.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@pass_cli
def import_command(
    cli: CliContext, file: Path, project: str | None, update: bool, as_json: bool
) -> None:
    """Create the jobs listed in FILE (.yaml, .yml or .json), all or none, in one
    transaction.

    FILE holds a list of objects with: name (required); exactly one executor: command
    (text or a list of strings), shell (a script), http (an object: method, url,
    expect_status, timeout, headers, body) or python (pkg.module:function, or an object:
    callable, kwargs); timeout (seconds), concurrency (allow, forbid, replace; default
    forbid), schedule, time_zone, misfire (skip, fire_once), misfire_grace (seconds),
    project, group, description, id, owner (or as: a member's UUID or name), retry,
    retry_delay, enabled, execution_enabled, notify (webhooks: {onfailure: [URL, …], …}).
    Or Rundeck's job YAML (recognised by its sequence entries; docs/jobs.md lists what is
    read): fields that cannot be represented (node filters, options, notifications other
    than webhooks, …) are imported without, each reported on stderr with its job and field.

    Exits 2 naming the entry index and field of every invalid entry, a job that exists
    (its id) without --update, or an unknown owner (nothing is imported); 1 when the store
    is unreachable.
    """
    try:
        imported = load_import(file, project=project)
    except SpecError as exc:
        fail("\n".join([*exc.problems, "nothing imported"]), 2)
        return
    for line in imported.warnings:
        click.echo(f"warning: {line}", err=True)
    with opened_store(cli) as store:
        try:
            result = import_specs(
                store,
                imported.specs,
                update=update,
                server_uuid=cli.settings().server_uuid,
                now_ms=now_ms(),
            )
        except (ConflictError, OwnerError) as exc:
            again = "; pass --update to modify it" if isinstance(exc, ConflictError) else ""
            fail(f"{file}: {exc}{again}\nnothing imported", 2)
            return
    if as_json:
        echo_json([{**job_json(job), "outcome": o} for o, job, _ in result.outcomes])
        return
    for outcome, job, why in result.outcomes:  # what the operator could not foresee
        if (update and outcome != "unchanged") or why.startswith("the active member"):
            click.echo(f"{outcome} {job.id} {job.path}, owner {job.owner_uuid} ({why})")
    counts = ", ".join(f"{result.count(o)} {o}" for o in ("created", "updated", "unchanged"))
    click.echo(f"imported {len(result.outcomes)} job(s) from {file}" + (f": {counts}" * update))


COMMANDS: list[click.Command] = [jobs]

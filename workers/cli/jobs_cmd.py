"""``qwc jobs`` (add, list, import): the store's jobs.

A job is owned by the last member that modified it ("last modifier owns"): ``jobs add`` and
``jobs import`` create each job owned by ``--as`` / the entry's ``owner`` (or ``as``), else
by ``qwcontrol.server.uuid``. It runs one executor: a command (an argv list, split with
``shlex`` when given as text; no shell ever runs it), a shell script (``/bin/sh -c``), an
HTTP request or a Python callable; with a timeout and a concurrency policy
(``allow|forbid|replace``, default ``forbid``). Schedules are cron texts of 5 fields, or 6
with seconds first (``schemas.cron``); a job without one runs only on demand. Specs, executors
and JSON shapes: ``workers.jobs``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from schemas.errors import StoreError
from schemas.tables import CONCURRENCY_POLICIES
from workers.cli.common import CliContext, echo_json, fail, opened_store, pass_cli
from workers.cli.jobs_next_cmd import next_command
from workers.jobs import (
    DEFAULT_PROJECT,
    JobSpec,
    SpecError,
    executor_columns,
    job_json,
    job_runs,
    load_specs,
    parse_spec,
)
from workers.store import Db, JobRow, create_job, list_jobs

__all__ = ["COMMANDS", "add_fields", "jobs"]


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
    kind, command, executor_spec = executor_columns(spec.executor)
    return create_job(
        db,
        project=spec.project,
        group_name=spec.group,
        name=spec.name,
        command=command,
        schedule=spec.schedule,
        modified_by=owner,
        now_ms=now_ms,
        enabled=spec.enabled,
        retry_count=spec.retry,
        retry_delay_s=spec.retry_delay,
        executor=kind,
        executor_spec=executor_spec,
        timeout_s=spec.timeout,
        concurrency=spec.concurrency,
    )


def add_fields(options: dict[str, Any]) -> dict[str, Any]:
    """The spec fields of ``jobs add``'s options (pure): ``--http METHOD URL`` with
    ``--http-expect-status``/``--http-timeout`` make ``http``, ``--python`` with ``--kwargs``
    (a JSON object) make ``python``; options not given are left out. Raises ``SpecError``
    for an option that needs another, or ``--kwargs`` that is not JSON."""
    fields = {k: v for k, v in options.items() if v is not None and not k.startswith("http_")}
    fields.pop("kwargs", None)
    http, python = fields.pop("http", None), fields.pop("python_callable", None)
    problems = [
        f"{flag} needs {needs}"
        for flag, given, needs, present in (
            ("--http-expect-status", options.get("http_expect_status"), "--http", http),
            ("--http-timeout", options.get("http_timeout"), "--http", http),
            ("--kwargs", options.get("kwargs"), "--python", python),
        )
        if given is not None and present is None
    ]
    if problems:
        raise SpecError(problems)
    if http is not None:
        method, url = http
        fields["http"] = {"method": method, "url": url}
        for option, name in (("http_expect_status", "expect_status"), ("http_timeout", "timeout")):
            if options.get(option) is not None:
                fields["http"][name] = options[option]
    if python is not None:
        fields["python"] = {"callable": python, "kwargs": _json_object(options.get("kwargs"))}
    return fields


def _json_object(text: str | None) -> Any:
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SpecError([f"field 'python.kwargs': --kwargs is not JSON: {exc}"]) from None


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
    default=None,
    help="Executor: the command, split like a shell would "
    "(quotes, escapes) into argv; it runs without a shell.",
)
@click.option(
    "--shell",
    default=None,
    metavar="TEXT",
    help="Executor: a script run by /bin/sh -c (pipes, redirections, $VARS), as cron runs it.",
)
@click.option(
    "--http",
    nargs=2,
    default=None,
    metavar="METHOD URL",
    help="Executor: one HTTP request (GET, POST, …); succeeded on the expected status; the "
    "answer's status line and body (head and tail) are the output.",
)
@click.option(
    "--http-expect-status",
    type=int,
    default=None,
    metavar="N",
    help="The status --http expects (default: any 2xx).",
)
@click.option(
    "--http-timeout",
    type=float,
    default=None,
    metavar="S",
    help="Seconds --http waits for the answer (default 30); no answer in time: failed.",
)
@click.option(
    "--python",
    "python_callable",
    default=None,
    metavar="pkg.module:function",
    help="Executor: a Python callable, imported and called in a child process of the member.",
)
@click.option(
    "--kwargs",
    default=None,
    metavar="JSON",
    help="Keyword arguments of --python: a JSON object.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="End a run after S seconds (its whole process group; status timedout, retried "
    "like a failure). Default: no timeout.",
)
@click.option(
    "--concurrency",
    type=click.Choice(CONCURRENCY_POLICIES, case_sensitive=False),
    default=None,
    help="When a run is due while one is still running (on any member): forbid records the "
    "new one skipped (default), replace aborts the running one, allow overlaps.",
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
def add_command(cli: CliContext, /, as_json: bool, disabled: bool, **options: Any) -> None:
    """Create job NAME, owned by the member given with --as, running exactly one executor:
    --command, --shell, --http or --python.

    Exits 2 on a bad option (cron text, UUID, empty command, not one executor, a bad
    executor field: the message names it) or when no owner is known, 1 when the project
    already has a job of that group and name or the store is unreachable.
    """
    try:
        spec = parse_spec({**add_fields(options), "enabled": not disabled})
    except SpecError as exc:
        fail("invalid job: " + "; ".join(exc.problems), 2)
        return
    (owner,) = _owners(cli, [spec], "")
    with opened_store(cli) as store:
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
    """List jobs by project, group and name: what runs, owner, owner epoch, schedule, retries.

    --json prints objects with id, name, project, group, command (argv; [] for the other
    executors), executor (kind and parameters; credentials in HTTP headers and URLs shown
    as ***), timeout_s, concurrency, schedule, enabled, owner_uuid, owner_epoch,
    retry_count, retry_delay_s, next/last fire times (epoch ms and ISO UTC), modified_by,
    modified_ms, created_ms.
    """
    with opened_store(cli) as store:
        rows = list_jobs(store, owner_uuid=owner and owner.lower(), project=project)
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
        enabled = "yes" if job.enabled else "no"
        runs = (
            job_runs(job)
            + f" ({job.concurrency}"
            + (f", timeout {job.timeout_s:g} s)" if job.timeout_s is not None else ")")
        )
        table.add_row(
            job.id, _path(job), runs, schedule, job.owner_uuid, str(job.owner_epoch), enabled,
            retry,
        )  # fmt: skip
    Console().print(table)


@jobs.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the created jobs as JSON.")
@pass_cli
def import_command(cli: CliContext, file: Path, as_json: bool) -> None:
    """Create the jobs listed in FILE (.yaml, .yml or .json), all or none.

    FILE holds a list of objects with: name (required); exactly one executor: command
    (text or a list of strings), shell (a script), http (an object: method, url,
    expect_status, timeout, headers, body) or python (pkg.module:function, or an object:
    callable, kwargs); timeout (seconds), concurrency (allow, forbid, replace; default
    forbid), schedule, project, group, owner (or as), retry, retry_delay, enabled. Every
    entry is checked before anything is written, and the jobs are created in one
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
    with opened_store(cli) as store:
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


COMMANDS: list[click.Command] = [jobs]

"""``qwc jobs edit|delete|enable|disable JOB``: modify a job (``workers.jobops``).

Every modification goes through a member — ``--as MEMBER`` (UUID or name), else
``qwcontrol.server.uuid`` — which becomes the job's owner; without one the owner is kept.
Either way the job's ``owner_epoch`` + 1: the fence refuses the previous plan at once, and
the owner plans the job anew, with its new settings, at its next reload (within one
heartbeat interval). JOB is a job id or its path PROJECT/[GROUP/]NAME.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from schemas.errors import NotFoundError, StoreError
from workers.cli.common import CliContext, echo_json, fail, opened_store, pass_cli
from workers.cli.jobs_options import job_options, now_ms, spec_fields_of_options
from workers.jobops import OwnerError, delete_by_ref, edit_by_ref, modifier, set_enabled
from workers.jobs import SpecError, job_json
from workers.jobs.hooks import HOOK_TRIGGERS
from workers.store import DeletedJob, JobRow, Store

__all__ = ["EDIT_COMMANDS"]

_REFUSED = (NotFoundError, OwnerError, SpecError)  # exit 2: what the operator typed
_T = TypeVar("_T")


def _through(cli: CliContext, ref: str | None, change: Callable[[Store, str | None], _T]) -> _T:
    """``change(store, modifier)`` on the opened store, through the member ``ref`` names
    (else qwcontrol.server.uuid; None: the owner is kept); exits on a refusal."""
    with opened_store(cli) as store:
        try:
            return change(store, modifier(store, ref, cli.settings().server_uuid))
        except (*_REFUSED, StoreError) as exc:
            _refuse(exc)
            raise  # unreachable: _refuse exits


def _owner_line(job: JobRow) -> str:
    return f"owner {job.owner_uuid} (epoch {job.owner_epoch})"


def _refuse(exc: Exception) -> None:
    """Exit 2 for what the operator typed, 1 for what the store refused."""
    if isinstance(exc, SpecError):
        fail("invalid job: " + "; ".join(exc.problems), 2)
    fail(str(exc), 2 if isinstance(exc, _REFUSED) else 1)


@click.command("edit")
@click.argument("job_ref", metavar="JOB")
@job_options(edit=True)
@click.option("--name", default=None, help="Rename the job.")
@click.option("--no-timeout", is_flag=True, help="Remove the job's timeout.")
@click.option("--no-hooks", is_flag=True, help="Remove all the job's webhooks (--on-*).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as a JSON object.")
@pass_cli
def edit_command(
    cli: CliContext,
    /,
    job_ref: str,
    no_timeout: bool,
    no_hooks: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Change job JOB: the options given replace its values (an executor option replaces
    its executor); the result is checked as a new job would be.

    Without a change, --as only moves the job to that member. Exits 2 for an unknown job or
    member, a bad option (the message names the field) or nothing to change; 1 when
    another job has the new project/group/name (the message names it) or the store is
    unreachable.
    """
    try:
        fields = spec_fields_of_options(options)
    except SpecError as exc:
        _refuse(exc)
        return
    ref = fields.pop("owner", None)
    if no_timeout:
        fields["timeout"] = None
    if no_hooks:  # the --on-* given still apply: the others are cleared
        fields["notify"] = {**dict.fromkeys(HOOK_TRIGGERS), **fields.get("notify", {})}
    if not fields and ref is None:
        fail("nothing to change: give an option (see --help), or --as MEMBER to move it", 2)
    before, job = _through(
        cli, ref, lambda store, m: edit_by_ref(store, job_ref, fields, modifier=m, now_ms=now_ms())
    )
    if as_json:
        echo_json(job_json(job))
        return
    changed = [k for k, v in job_json(job).items() if job_json(before).get(k) != v]
    shown = [k for k in changed if k not in ("owner_epoch", "modified_ms", "modified_by")]
    click.echo(f"job {job.id} modified: {job.path}: {', '.join(shown)}; {_owner_line(job)}")


def _delete_lines(deleted: DeletedJob, aborts: list[str]) -> list[str]:
    job = deleted.job
    lines = [f"job {job.id} deleted: {job.path}"]
    if deleted.aborted:
        lines.append(f"  {len(deleted.aborted)} waiting execution(s) aborted (job deleted)")
    if deleted.running and not aborts:
        lines.append(
            f"  {len(deleted.running)} running execution(s) go on until they end "
            f"(--abort aborts them): {', '.join(deleted.running)}"
        )
    lines += [f"  {line}" for line in aborts]
    lines.append("  its executions stay listed until retention removes them")
    return lines


@click.command("delete")
@click.argument("job_ref", metavar="JOB")
@click.option("--abort", "abort_running", is_flag=True, help="Abort its running executions too.")
@click.option(
    "--as", "owner", default=None, metavar="MEMBER", help="The member the deletion goes through."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@pass_cli
def delete_command(
    cli: CliContext, job_ref: str, abort_running: bool, owner: str | None, as_json: bool
) -> None:
    """Delete job JOB: it is fired, run and retried no more (its owner's fence refuses it at
    once), its executions waiting to start are aborted, its running ones finish (or are
    aborted with --abort, as `qwc abort` does), and its executions' history stays until
    retention removes it. Its name is free at once.

    Exits 2 for an unknown job or member, 1 when the store (or, with --abort, Redis) is
    unreachable.
    """

    def delete(store: Store, through: str | None) -> tuple[DeletedJob, list[str]]:
        deleted = delete_by_ref(store, job_ref, modifier=through, now_ms=now_ms())
        return deleted, _abort(cli, store, deleted.running) if abort_running else []

    deleted, aborts = _through(cli, owner, delete)
    if as_json:
        echo_json(
            {
                "job": job_json(deleted.job),
                "aborted_waiting": list(deleted.aborted),
                "running": list(deleted.running),
                "aborts": aborts,
            }
        )
        return
    click.echo("\n".join(_delete_lines(deleted, aborts)))


def _abort(cli: CliContext, store: Store, running: tuple[str, ...]) -> list[str]:
    """Abort ``running`` through the abort path (``qwc abort``); one line each."""
    import redis

    from workers.bus.connect import connect
    from workers.commands.issue import default_issuer, request_abort

    if not running:
        return []
    settings = cli.settings()
    client = connect(settings)
    try:
        return [
            f"abort {r.outcome}: {r.detail}"
            for r in (
                request_abort(client, store, settings, execution_id=e, issued_by=default_issuer())
                for e in running
            )
        ]
    except redis.RedisError as exc:
        fail(f"job deleted, but its running executions were not aborted: Redis: {exc}")
        raise  # unreachable
    finally:
        client.close()


def _toggle(on: bool) -> click.Command:
    word = "enable" if on else "disable"

    @click.command(word)
    @click.argument("job_ref", metavar="JOB")
    @click.option("--schedule-only", is_flag=True, help=f"{word.title()} its schedule only.")
    @click.option(
        "--execution-only",
        is_flag=True,
        help=f"{word.title()} its execution only (all runs: fired, `qwc run`, retries).",
    )
    @click.option(
        "--as", "owner", default=None, metavar="MEMBER", help="The member it goes through."
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the job as a JSON object.")
    @pass_cli
    def command(
        cli: CliContext,
        job_ref: str,
        schedule_only: bool,
        execution_only: bool,
        owner: str | None,
        as_json: bool,
    ) -> None:
        if schedule_only and execution_only:
            fail("give at most one of --schedule-only and --execution-only", 2)
        job = _through(
            cli,
            owner,
            lambda store, m: set_enabled(
                store,
                job_ref,
                schedule=None if execution_only else on,
                execution=None if schedule_only else on,
                modifier=m,
                now_ms=now_ms(),
            ),
        )
        if as_json:
            echo_json(job_json(job))
            return
        flags = (
            f"schedule {'enabled' if job.schedule_enabled else 'disabled'}, "
            f"execution {'enabled' if job.execution_enabled else 'disabled'}"
        )
        click.echo(f"job {job.id} ({job.path}): {flags}; {_owner_line(job)}")

    command.help = (
        f"{word.title()} job JOB: its schedule (fired at its times) and its execution (runs "
        "at all: fired, `qwc run`, retries), or only one of them — Rundeck's scheduleEnabled "
        "and executionEnabled. The owner's fence applies it at once.\n\nExits 2 for an "
        "unknown job or member, 1 when the store is unreachable."
    )
    return command


EDIT_COMMANDS: list[click.Command] = [edit_command, delete_command, _toggle(True), _toggle(False)]

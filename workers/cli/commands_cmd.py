"""``qwc run``, ``qwc abort`` and ``qwc commands``: remote execute / abort, and their record.

A command is recorded in the store, then published on its member's stream
``{qwc}:commands:<uuid>``; the member carries it out at its next pass (every
``remoteExec.process.interval`` seconds). How commands flow: docs/commands.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import redis
from rich.console import Console
from rich.table import Table

from schemas.errors import NotFoundError, StoreError
from schemas.messages import canonical_uuid
from schemas.settings import Settings
from schemas.tables import COMMAND_STATUSES
from workers.bus.connect import connect
from workers.cli.common import CliContext, echo_json, fail, listing_options, pass_cli
from workers.commands.issue import (
    DEFAULT_EXPIRES_S,
    BadTarget,
    ExecutionDisabled,
    NoReceiver,
    abort_json,
    default_issuer,
    issued_json,
    request_abort,
    request_execute,
)
from workers.liveness.listing import iso_utc
from workers.store import CommandRow, Store, list_commands, open_store

__all__ = ["COMMANDS"]

EXIT_ENDED = 1  # `qwc abort` of an execution that had already ended


def _uuid(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return canonical_uuid(value)
    except ValueError:
        raise click.BadParameter(f"not a UUID: {value!r}") from None


@contextmanager
def _opened(cli: CliContext) -> Iterator[tuple[Settings, redis.Redis, Store]]:
    """Settings, a Redis client and the store, closed on exit; exits 1 when the store
    cannot be opened or Redis does not answer."""
    settings = cli.settings()
    try:
        store = open_store(settings)
    except (StoreError, OSError) as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits
    client = connect(settings)
    try:
        yield settings, client, store
    except redis.RedisError as exc:
        fail(f"Redis: {exc}")
    finally:
        client.close()
        store.close()


def _interval(settings: Settings) -> str:
    return f"remoteExec.process.interval, {settings.remote_exec_process_interval_s:g} s"


@click.command()
@click.argument("job")
@click.option(
    "--on",
    "on_uuid",
    callback=_uuid,
    metavar="UUID",
    help="Run it on this member (it must not be dead or unknown). Default: the member "
    "remoteExecution.policy picks.",
)
@click.option(
    "--expires",
    "expires_s",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_EXPIRES_S,
    show_default=True,
    metavar="S",
    help="Seconds the member has to process the command; later it is recorded expired "
    "and the job does not run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the command as a JSON object.")
@pass_cli
def run(cli: CliContext, job: str, on_uuid: str | None, expires_s: float, as_json: bool) -> None:
    """Run JOB now on a member (a remote execute command).

    JOB is a job id, or its path project/name or project/group/name. The command is
    recorded, then sent to the member's command stream; the member processes it within
    remoteExec.process.interval seconds: it schedules the execution (trigger "remote")
    and runs it on its RQ worker. The execution id is printed at once: `qwc executions`
    shows its outcome, and `qwc abort` stops it (or cancels it while the command is
    pending). Without --on, remoteExecution.policy picks the member: None the job's owner
    (or, when it is not active, the least loaded member); Random; RoundRobin; Preset the
    first of remoteExecution.config.allowed; Load the fewest running executions.

    Exits 2 for an unknown job, a job whose execution is disabled (`qwc jobs disable
    --execution-only`), or an --on member that is dead or unknown; 1 when no member may
    receive it (or Redis / the store does not answer).
    """
    with _opened(cli) as (settings, client, store):
        try:
            issued = request_execute(
                client,
                store,
                settings,
                job_ref=job,
                on_uuid=on_uuid,
                expires_s=expires_s,
                issued_by=default_issuer(),
            )
        except (NotFoundError, BadTarget, ExecutionDisabled) as exc:
            fail(str(exc), 2)
            return
        except NoReceiver as exc:
            fail(f"no member may run job {job}: {exc}", 1)
            return
    if as_json:
        echo_json(issued_json(issued))
        return
    c = issued.command
    click.echo(
        f"execute command {c.id} sent to member {c.target_uuid} ({issued.reason})\n"
        f"execution {c.execution_id} of job {issued.job.id}: processed within "
        f"{_interval(settings)}; expires {iso_utc(c.expires_at_ms)}"
    )


@click.command()
@click.argument("execution")
@click.option(
    "--expires",
    "expires_s",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_EXPIRES_S,
    show_default=True,
    metavar="S",
    help="Seconds the member has to process the abort command.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as a JSON object.")
@pass_cli
def abort(cli: CliContext, execution: str, expires_s: float, as_json: bool) -> None:
    """Abort EXECUTION (an execution id).

    Running or scheduled on a live member: an abort command goes to that member, which
    within remoteExec.process.interval records the execution "aborted" and stops its RQ
    job (the job's command is killed; no retry follows, whatever the job's retry
    settings); a scheduled execution never starts. On a dead (or unknown) member: aborted
    in the store at once, no command. Created by a `qwc run` not processed yet: that
    command is cancelled and the execution never exists.

    The outcome (also "outcome" in --json): sent, applied, cancelled, or ended. Exits 0
    for the first three, 1 when the execution had already ended (nothing done), 2 for an
    unknown execution.
    """
    with _opened(cli) as (settings, client, store):
        try:
            result = request_abort(
                client,
                store,
                settings,
                execution_id=execution,
                expires_s=expires_s,
                issued_by=default_issuer(),
            )
        except NotFoundError:
            fail(f"no execution {execution} (and no execute command that would create it)", 2)
            return
    if as_json:
        echo_json(abort_json(result))
    elif result.outcome == "sent":
        click.echo(f"{result.detail}: command {result.command_id}, within {_interval(settings)}")
    else:
        click.echo(f"{result.outcome}: {result.detail}")
    if result.outcome == "ended":
        raise SystemExit(EXIT_ENDED)


COLUMNS = ("issued UTC", "command", "action", "target", "execution", "status", "detail")


def _short(value: str | None) -> str:
    return "-" if value is None else value[:8]


def _command_json(c: CommandRow) -> dict[str, Any]:
    return {
        "id": c.id,
        "action": c.action,
        "target_uuid": c.target_uuid,
        "job_id": c.job_id,
        "execution_id": c.execution_id,
        "status": c.status,
        "routed": c.routed,
        "issued_at": iso_utc(c.issued_ms),
        "issued_ms": c.issued_ms,
        "expires_at": iso_utc(c.expires_ms),
        "expires_ms": c.expires_ms,
        "issued_by": c.issued_by,
        "processed_at": iso_utc(c.processed_ms),
        "processed_ms": c.processed_ms,
        "processed_by": c.processed_by,
        "detail": c.detail,
    }


@click.command()
@click.option("--member", callback=_uuid, metavar="UUID", help="Only commands for this member.")
@listing_options("commands", COMMAND_STATUSES)
@pass_cli
def commands(
    cli: CliContext, member: str | None, statuses: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """The remote commands (execute, abort), newest first, and what became of them.

    Status: pending (not processed yet), done, expired (not processed before its expiry:
    nothing was done), failed (could not be carried out; detail says why: unknown job, no
    member to re-route to), cancelled (an execute aborted before it was processed).
    "routed" counts re-routes away from dead members; detail says from whom and why.
    --json objects: id, action, target_uuid, job_id, execution_id, status, routed, issued_at,
    expires_at, issued_by, processed_at, processed_by, detail (times also as *_ms).
    """
    settings = cli.settings()
    try:
        store = open_store(settings)
    except (StoreError, OSError) as exc:
        fail(str(exc))
        return
    try:
        rows = list_commands(store, target_uuid=member, statuses=statuses or None, limit=limit)
    finally:
        store.close()
    if as_json:
        echo_json([_command_json(c) for c in rows])
        return
    table = Table(title=f"commands ({len(rows)}, newest first; --json for full ids and times)")
    for column in COLUMNS:
        table.add_column(column, no_wrap=column in ("issued UTC", "action"), overflow="fold")
    for c in rows:
        issued = (iso_utc(c.issued_ms) or "-")[5:19].replace("T", " ")
        status = c.status if c.routed == 0 else f"{c.status} (re-routed)"
        table.add_row(
            issued,
            _short(c.id),
            c.action,
            _short(c.target_uuid),
            c.execution_id or "-",
            status,
            c.detail,
        )
    Console().print(table)


COMMANDS: list[click.Command] = [run, abort, commands]

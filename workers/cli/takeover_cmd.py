"""``qwc takeover``, ``qwc takeover release`` and ``qwc takeovers``."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from schemas.errors import NotFoundError
from schemas.keys import Keys
from schemas.messages import canonical_uuid
from workers.bus.connect import connect
from workers.bus.streams import server_time_ms
from workers.cli.common import CliContext, echo_json, fail, pass_cli
from workers.liveness.listing import iso_utc
from workers.store import find_job, open_store
from workers.takeover.guard import release_guard
from workers.takeover.history import takeover_history
from workers.takeover.manual import TakeoverRefused, manual_takeover

__all__ = ["COMMANDS"]

COLUMNS = ("decided_at", "dead_uuid", "policy", "outcome", "jobs_moved", "detail")


def _uuid(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return canonical_uuid(value)
    except ValueError:
        raise click.BadParameter(f"not a UUID: {value!r}") from None


@click.group(invoke_without_command=True)
@click.option("--from", "from_uuid", callback=_uuid, help="Take over this member's jobs.")
@click.option("--all", "all_", is_flag=True, help="Take over the jobs of every member.")
@click.option(
    "--to",
    "to_uuid",
    callback=_uuid,
    help="Give them to this member (default: "
    "spread over the active, non-passive members, fewest-owned first).",
)
@click.option("--project", default=None, help="Only jobs of this project.")
@click.option(
    "--job",
    "job_refs",
    multiple=True,
    metavar="JOB",
    help="Only this job: its id or PROJECT/[GROUP/]NAME (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API-compatible JSON answer.")
@click.pass_context
def takeover(
    ctx: click.Context,
    from_uuid: str | None,
    all_: bool,
    to_uuid: str | None,
    project: str | None,
    job_refs: tuple[str, ...],
    as_json: bool,
) -> None:
    """Take over scheduled jobs by hand (the Cluster Manager's takeover).

    Moves the jobs in one transaction, each job's owner_epoch + 1, so the previous owner
    can never fire them again. The JSON answer has the shape of PUT /api/14/scheduler/takeover.
    Exits 2 for an unknown member or job, a dead --to member, or --to equal to --from; 1
    when no member could receive the jobs.
    """
    if ctx.invoked_subcommand is not None:
        return
    if bool(from_uuid) == all_:
        fail("give exactly one of --from UUID or --all", 2)
    cli: CliContext = ctx.ensure_object(CliContext)
    settings = cli.settings()
    client, store = connect(settings), open_store(settings)
    try:
        job_ids = tuple(find_job(store, ref).id for ref in job_refs)
        answer = manual_takeover(
            client,
            store,
            settings,
            from_uuid=from_uuid,
            to_uuid=to_uuid,
            project=project,
            job_ids=job_ids,
            now_ms=server_time_ms(client),
        )
    except (NotFoundError, TakeoverRefused) as exc:
        fail(str(exc), 2)
        return
    finally:
        client.close()
        store.close()
    if as_json:
        echo_json(answer)
    else:
        jobs = answer["takeoverSchedule"]["jobs"]
        click.echo(
            f"{answer['message']} {len(jobs['successful'])} of {jobs['total']} job(s) moved."
        )
    raise SystemExit(0 if answer["success"] else 1)


@takeover.command()
@pass_cli
def release(cli: CliContext) -> None:
    """Let takeovers held by the mass-failure guard proceed.

    Proposals made before this moment are committed at the workers' next check; a later
    mass failure is held again.
    """
    settings = cli.settings()
    client = connect(settings)
    try:
        done = release_guard(client, Keys(settings.redis_prefix))
    finally:
        client.close()
    click.echo(
        f"released at {iso_utc(done.released_ms)}: {done.held} held proposal(s) will proceed"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@click.option("--limit", default=100, show_default=True, help="Most recent first.")
@pass_cli
def takeovers(cli: CliContext, as_json: bool, limit: int) -> None:
    """The takeover history: proposals and what became of them."""
    settings = cli.settings()
    store = open_store(settings)
    try:
        rows = takeover_history(store, limit=limit)
    finally:
        store.close()
    if as_json:
        echo_json(rows)
        return
    table = Table(title="takeovers")
    for col in COLUMNS:
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c] if r[c] is not None else "-") for c in COLUMNS))
    Console().print(table)


COMMANDS: list[click.Command] = [takeover, takeovers]

"""``qwc members``: the cluster view, as the liveness workers see it."""

from __future__ import annotations

import click
from rich import box
from rich.console import Console
from rich.table import Table

from schemas.keys import Keys
from workers.bus.connect import connect
from workers.cli.common import CliContext, echo_json, pass_cli
from workers.liveness.listing import collect_member_rows
from workers.store import open_store
from workers.takeover.guard import held_takeovers

__all__ = ["COMMANDS", "STATE_STYLES", "members_table"]

STATE_STYLES = {"active": "green", "inactive": "yellow", "dead": "bold red", "unknown": "dim"}


UUID_WIDTH = 36


def members_table(
    rows: list[dict[str, object]], title: str = "members", *, wide: bool = False
) -> Table:
    """A rich table of member rows (as returned by ``member_rows``). A UUID is never cut:
    its column does not wrap or shrink, and the default layout (name, uuid, state, age_s,
    jobs, without borders between columns) fits 80 columns with names of up to 17
    characters (longer names wrap); ``wide`` adds last_seen and tags."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", overflow="fold", min_width=4)
    table.add_column("uuid", no_wrap=True, min_width=UUID_WIDTH, overflow="ignore")
    table.add_column("state", no_wrap=True)
    table.add_column("age_s", justify="right", no_wrap=True)
    if wide:
        table.add_column("last_seen", no_wrap=True)
    table.add_column("jobs", justify="right", no_wrap=True)
    if wide:
        table.add_column("tags", overflow="fold")
    for r in rows:
        state = str(r["state"])
        cells = [
            str(r["name"]),
            str(r["uuid"]),
            f"[{STATE_STYLES.get(state, '')}]{state}[/]",
            "-" if r["age_s"] is None else f"{r['age_s']:.1f}",
        ]
        if wide:
            cells.append(str(r["last_seen"] or "-"))
        cells.append(str(r["jobs_owned"]))
        if wide:
            cells.append(", ".join(str(t) for t in r.get("tags") or []))  # type: ignore[attr-defined]
        table.add_row(*cells)
    return table


@click.command()
@click.option("--wide", is_flag=True, help="Also last_seen (ISO UTC) and tags.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@pass_cli
def members(cli: CliContext, wide: bool, as_json: bool) -> None:
    """Show every member: name, uuid (never cut), state, age_s and jobs owned (--wide:
    last_seen and tags too; --json: everything).

    State and age come from the liveness view in Redis (ages on the Redis server clock);
    members only the store knows (for example owners of jobs that never heartbeat since the
    view began) are listed with the state the store last recorded.
    """
    settings = cli.settings()
    client = connect(settings)
    store = open_store(settings)
    keys = Keys(settings.redis_prefix)
    try:
        rows = collect_member_rows(client, store, keys)
        held = held_takeovers(client, keys)
    finally:
        client.close()
        store.close()
    if as_json:
        echo_json(rows)
    else:
        Console().print(members_table(rows, wide=wide))
    for proposal_id, reason in sorted(held.items()):  # on stderr with --json: stdout stays JSON
        click.echo(f"takeover {proposal_id} held: {reason}", err=as_json)


COMMANDS: list[click.Command] = [members]

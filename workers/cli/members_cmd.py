"""``qwc members``: the cluster view, as the liveness workers see it."""

from __future__ import annotations

from typing import cast

import click
from rich.console import Console
from rich.table import Table

from schemas.keys import Keys
from workers.bus.connect import connect
from workers.cli.common import CliContext, echo_json, pass_cli
from workers.liveness import view
from workers.liveness.listing import member_rows
from workers.store import count_jobs_by_owner, list_members, open_store

__all__ = ["COMMANDS", "STATE_STYLES", "members_table"]

STATE_STYLES = {"active": "green", "inactive": "yellow", "dead": "bold red", "unknown": "dim"}


def members_table(rows: list[dict[str, object]], title: str = "members") -> Table:
    """A rich table of member rows (as returned by ``member_rows``)."""
    table = Table(title=title)
    for col in ("name", "uuid", "state", "age_s", "last_seen", "jobs"):
        table.add_column(col, justify="right" if col in ("age_s", "jobs") else "left")
    for r in rows:
        state = str(r["state"])
        table.add_row(
            str(r["name"]),
            str(r["uuid"]),
            f"[{STATE_STYLES.get(state, '')}]{state}[/]",
            "-" if r["age_s"] is None else f"{r['age_s']:.1f}",
            str(r["last_seen"] or "-"),
            str(r["jobs_owned"]),
        )
    return table


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@pass_cli
def members(cli: CliContext, as_json: bool) -> None:
    """Show every member: uuid, name, state, age_s, last_seen and jobs owned.

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
        raw_held = cast(dict[bytes, bytes], client.hgetall(keys.takeover_held))
        held = {k.decode(): v.decode() for k, v in raw_held.items()}
    finally:
        client.close()
        store.close()
    if as_json:
        echo_json(rows)
    else:
        Console().print(members_table(rows))
    for proposal_id, reason in sorted(held.items()):  # on stderr with --json: stdout stays JSON
        click.echo(f"takeover {proposal_id} held: {reason}", err=as_json)


def collect_member_rows(client, store, keys: Keys) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """Read the view and the store and merge them (see ``member_rows``)."""
    snap = view.read_snapshot(client, keys)
    return member_rows(
        now_ms=snap.now_ms,
        seen_ms=snap.seen_ms,
        states={u: s.value for u, s in snap.states.items()},
        heartbeats=view.decode_heartbeats(snap.info),
        store_members=list_members(store),
        jobs_owned=count_jobs_by_owner(store),
    )


COMMANDS: list[click.Command] = [members]

"""Tables of members shown in a terminal (rich), shared by ``qwc members`` and ``qwc demo``.

The JSON of members, jobs and executions is shaped where the data is read
(:mod:`workers.liveness.listing`, :mod:`workers.jobs.shapes`), for the CLI and the manager
alike; this module only draws.
"""

from __future__ import annotations

from rich import box
from rich.table import Table

__all__ = ["STATE_STYLES", "UUID_WIDTH", "members_table", "state_cell"]

STATE_STYLES = {"active": "green", "inactive": "yellow", "dead": "bold red", "unknown": "dim"}


UUID_WIDTH = 36


def state_cell(state: str) -> str:
    """A member state in its colour (rich markup)."""
    return f"[{STATE_STYLES.get(state, '')}]{state}[/]"


def members_table(
    rows: list[dict[str, object]], title: str = "members", *, wide: bool = False
) -> Table:
    """A rich table of member rows (as returned by ``member_rows``). A UUID is never cut:
    its column does not wrap or shrink, and the default layout (name, uuid, state, age_s,
    jobs, executions running and waiting, without borders between columns) fits 80 columns
    (long names wrap); ``wide`` adds last_seen and tags."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", overflow="fold", min_width=4)
    table.add_column("uuid", no_wrap=True, min_width=UUID_WIDTH, overflow="ignore")
    table.add_column("state", no_wrap=True)
    table.add_column("age_s", justify="right", no_wrap=True)
    if wide:
        table.add_column("last_seen", no_wrap=True)
    table.add_column("jobs", justify="right", no_wrap=True)
    table.add_column("run", justify="right", no_wrap=True)
    table.add_column("wait", justify="right", no_wrap=True)
    if wide:
        table.add_column("tags", overflow="fold")
    for r in rows:
        state = str(r["state"])
        cells = [
            str(r["name"]),
            str(r["uuid"]),
            state_cell(state),
            "-" if r["age_s"] is None else f"{r['age_s']:.1f}",
        ]
        if wide:
            cells.append(str(r["last_seen"] or "-"))
        cells.append(str(r["jobs_owned"]))
        cells.append(str(r.get("executions_running", 0)))
        cells.append(str(r.get("executions_waiting", 0)))
        if wide:
            cells.append(", ".join(str(t) for t in r.get("tags") or []))  # type: ignore[attr-defined]
        table.add_row(*cells)
    return table

"""The demo's live screen: members (state, jobs owned, fires) and the event lines (rich)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from workers.demo.observe import Observation
from workers.tables import state_cell

__all__ = ["MAX_EVENT_LINES", "render"]

MAX_EVENT_LINES = 14


def render(
    obs: Observation,
    names: Mapping[str, str],
    events: Sequence[str],
    *,
    title: str,
    jobs_total: int,
) -> RenderableType:
    """The members table of the demo's ``names`` (uuid -> name), a totals line, and the
    last :data:`MAX_EVENT_LINES` events."""
    table = Table(title=title, title_justify="left")
    for col, justify in (
        ("member", "left"),
        ("uuid", "left"),
        ("state", "left"),
        ("age_s", "right"),
        ("jobs owned", "right"),
        ("fires", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in obs.rows:
        if row["uuid"] not in names:
            continue
        state = str(row["state"])
        table.add_row(
            names[row["uuid"]],
            str(row["uuid"])[:8],
            state_cell(state),
            "-" if row["age_s"] is None else f"{row['age_s']:.1f}",
            str(row["jobs_owned"]),
            str(obs.fires_by_member.get(row["uuid"], 0)),
        )
    fires = sum(obs.fires_by_member.values())
    doubles = obs.double_fires
    totals = Text.from_markup(
        f"jobs {jobs_total} (every second, `true`) · fired so far {fires} · "
        f"double fires [{'bold red' if doubles else 'green'}]{doubles}[/]"
    )
    return Group(table, totals, Text(""), Text("\n".join(events[-MAX_EVENT_LINES:])))

"""What a local cluster consists of, and what to do when one of its processes exits (pure).

:func:`topology` lists the ``qwc`` processes of one cluster — the same set compose.yaml
runs: liveness x2, takeover x2, recovery, the manager and N reference nodes; a notify
worker (``qwc cluster up`` asks for one) — as labelled
argument lists; ``qwc cluster up`` and ``qwc demo`` start them with
:class:`workers.localcluster.local.LocalProcesses`. :func:`on_exit` is the supervisor's
decision when a process ends unasked: restart it, or stop the cluster (a configuration
error, or a crash loop).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "CRASH_LOOP_EXITS",
    "MIN_UPTIME_S",
    "USAGE_EXIT",
    "Action",
    "ProcessSpec",
    "member_identities",
    "on_exit",
    "topology",
]

MIN_UPTIME_S = 5.0  # a process that exits sooner after its start counts as a quick exit
CRASH_LOOP_EXITS = 3  # this many quick exits in a row: give up instead of restarting
USAGE_EXIT = 2  # qwc's exit status for invalid settings or usage: restarting cannot help
_NAMESPACE = uuidlib.UUID("0f6b8a52-3f0e-4a49-9d7c-2c1de0c0a7b1")


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the cluster: a unique ``label`` and its ``qwc`` arguments."""

    label: str
    args: tuple[str, ...]


def member_identities(count: int, *, prefix: str) -> dict[str, str]:
    """``count`` members, uuid -> name ``node-<i>`` (from 1). The uuids derive from the
    Redis prefix and the name, so a cluster started again has the same members (their jobs
    stay theirs) instead of new ones and a takeover of the old ones."""
    return {
        str(uuidlib.uuid5(_NAMESPACE, f"{prefix}/node-{i}")): f"node-{i}"
        for i in range(1, count + 1)
    }


def topology(
    members: Mapping[str, str],
    *,
    liveness: int = 2,
    takeover: int = 2,
    recovery: int = 1,
    notify: int = 0,
    manager: tuple[str, int] | None = None,
) -> list[ProcessSpec]:
    """The workers (each replica with a stable consumer name ``<kind>-<i>``), the manager
    when ``manager`` gives its (host, port), then one node per member (uuid -> name)."""
    counts = (("liveness", liveness), ("takeover", takeover), ("recovery", recovery))
    specs = [
        ProcessSpec(f"{kind}-{i}", ("worker", kind, "--consumer", f"{kind}-{i}"))
        for i in range(1, max(liveness, takeover, recovery, notify) + 1)
        for kind, count in (*counts, ("notify", notify))
        if i <= count
    ]
    if manager is not None:
        host, port = manager
        specs.append(ProcessSpec("manager", ("manager", "--host", host, "--port", str(port))))
    specs += [
        ProcessSpec(name, ("node", "--uuid", member_uuid, "--name", name))
        for member_uuid, name in members.items()
    ]
    return specs


class Action(Enum):
    """What the supervisor does when a process exits while the cluster runs."""

    RESTART = "restart"
    GIVE_UP = "give up"


def on_exit(exit_code: int, uptime_s: float, quick_exits_before: int) -> tuple[Action, int]:
    """The decision for a process that exited with ``exit_code`` after ``uptime_s``,
    having exited quickly ``quick_exits_before`` times in a row; returns the action and
    the new count of quick exits in a row. Invalid settings or usage (exit 2) and a crash
    loop (CRASH_LOOP_EXITS quick exits in a row) give up; anything else restarts."""
    if exit_code == USAGE_EXIT:
        return Action.GIVE_UP, quick_exits_before
    quick = quick_exits_before + 1 if uptime_s < MIN_UPTIME_S else 0
    return (Action.GIVE_UP if quick >= CRASH_LOOP_EXITS else Action.RESTART), quick

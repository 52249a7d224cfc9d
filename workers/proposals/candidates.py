"""Members as candidates to receive a dead member's jobs, retries or commands.

:func:`candidates` is pure (the view's maps in, candidates out); :func:`candidates_from_view`
reads them from a view snapshot, :func:`candidates_from_members` from the store's member
rows (for a process that cannot read the view).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.messages import Heartbeat, MemberState
from workers.liveness import view
from workers.store import MemberRow

__all__ = ["Candidate", "candidates", "candidates_from_members", "candidates_from_view"]


@dataclass(frozen=True)
class Candidate:
    """A member as the view and the store see it, as a possible destination of jobs."""

    uuid: str
    state: MemberState | None
    last_seen_ms: int | None
    passive: bool = False
    tags: tuple[str, ...] = ()
    running: int = 0  # executions running on it, from its last heartbeat
    jobs_owned: int = 0


def candidates(
    states: Mapping[str, MemberState],
    seen_ms: Mapping[str, int],
    heartbeats: Mapping[str, Heartbeat],
    jobs_owned: Mapping[str, int],
) -> list[Candidate]:
    """Every member the view knows (a state or a last-seen time), by uuid, as candidates to
    receive a dead member's jobs or retries: state, last seen, and from its last heartbeat
    passive, tags, running."""
    out = []
    for uuid in sorted(set(states) | set(seen_ms)):
        hb = heartbeats.get(uuid)
        out.append(
            Candidate(
                uuid=uuid,
                state=states.get(uuid),
                last_seen_ms=seen_ms.get(uuid),
                passive=hb.passive if hb else False,
                tags=hb.tags if hb else (),
                running=len(hb.running) if hb else 0,
                jobs_owned=jobs_owned.get(uuid, 0),
            )
        )
    return out


def candidates_from_view(snap: view.ViewSnapshot, jobs_owned: dict[str, int]) -> list[Candidate]:
    """Every member the view knows, as candidates (see :func:`candidates`)."""
    return candidates(snap.states, snap.seen_ms, view.decode_heartbeats(snap.info), jobs_owned)


def candidates_from_members(rows: Sequence[MemberRow]) -> list[Candidate]:
    """Members as the store recorded them (their state at its last change, passive and tags
    from the heartbeat of that change) as candidates, for a process that cannot read the
    liveness view (Redis down, or a member's Redis user, which may not read it). A state
    the view does not have (``unknown``) counts as none."""
    states = {s.value: s for s in MemberState}
    return [
        Candidate(
            uuid=r.uuid,
            state=states.get(r.state),
            last_seen_ms=r.last_seen_ms,
            passive=r.passive,
            tags=r.tags,
            jobs_owned=r.jobs_owned,
        )
        for r in rows
    ]

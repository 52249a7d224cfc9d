"""Who owns a job an operator creates or modifies: a member named by UUID or by name.

The rule of the product is "a job is owned by the last member that modified it". Here:

* ``--as MEMBER`` (a file's ``owner:``, the API's ``as``) names that member, by UUID or by
  name. A UUID is taken as given, known or not (a member that has not started yet may own
  jobs). A name must be the name of exactly one recorded member: an unknown name is refused
  listing the members, an ambiguous one listing the candidates (name, UUID, state).
* Without it, the member this process is (``qwcontrol.server.uuid``).
* Without either, a new job goes to the **active**, non-passive member owning the fewest
  jobs (ties by UUID; several new jobs are spread as a takeover spreads them:
  ``workers.takeover.decide.spread_fewest_first``), and the output says so. No active
  member: refused. A modification keeps the job's owner (and still increments its epoch).

The members and their states are the store's (``cluster_members``, written by the liveness
workers): no Redis needed. :func:`match_member` and :func:`spread_new_jobs` are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.errors import QwcError
from schemas.messages import canonical_uuid
from workers.store import Db, MemberRow, list_members
from workers.takeover.decide import spread_fewest_first

__all__ = ["Owner", "OwnerError", "match_member", "modifier", "new_job_owners", "spread_new_jobs"]

SERVER_UUID_KEY = "qwcontrol.server.uuid"


class OwnerError(QwcError, ValueError):
    """No member can be the owner: an unknown or ambiguous name, or no active member."""


@dataclass(frozen=True)
class Owner:
    """The member that owns a new job, and why it (``named``, ``qwcontrol.server.uuid``,
    or the fewest-jobs rule: ``fewest`` with the member's name and job count)."""

    uuid: str
    why: str


def _label(member: MemberRow) -> str:
    return f"{member.name or '(no name)'} ({member.uuid}, {member.state})"


def match_member(members: Sequence[MemberRow], ref: str) -> str:
    """The UUID of the member ``ref`` names: a UUID (taken as given), else the name of
    exactly one member (exactly as written, else ignoring case). Raises ``OwnerError``
    listing the candidates (ambiguous) or the members (unknown)."""
    ref = ref.strip()
    try:
        return canonical_uuid(ref)
    except ValueError:
        pass
    found = [m for m in members if m.name == ref] or [
        m for m in members if m.name.lower() == ref.lower()
    ]
    if len(found) == 1:
        return found[0].uuid
    if found:
        listed = "; ".join(_label(m) for m in found)
        raise OwnerError(f"member name {ref!r} is ambiguous: {listed}; pass its UUID")
    known = "; ".join(_label(m) for m in members) or "no member is recorded yet"
    raise OwnerError(f"no member is named {ref!r} (members: {known}); pass a name or a UUID")


def spread_new_jobs(members: Sequence[MemberRow], count: int) -> list[MemberRow]:
    """Owners for ``count`` new jobs: the active, non-passive members owning the fewest jobs
    (the takeover's spread), in order. Raises ``OwnerError`` when no member is active."""
    pool = {m.uuid: m for m in members if m.state == "active" and not m.passive}
    if not pool:
        raise OwnerError(
            "no owner: no active member to give the job to; pass --as MEMBER (a UUID or a "
            f"member's name) or set {SERVER_UUID_KEY}"
        )
    quotas = spread_fewest_first({u: m.jobs_owned for u, m in pool.items()}, count)
    return [pool[uuid] for uuid, n in quotas for _ in range(n)]


def new_job_owners(db: Db, refs: Sequence[str | None], server_uuid: str | None) -> list[Owner]:
    """The owner of each new job whose ``--as`` is ``refs[i]`` (None: not given): see the
    module docstring. Raises ``OwnerError``."""
    members: list[MemberRow] = []
    if any(refs) or (server_uuid is None and refs):
        members = list_members(db)
    owners: list[Owner | None] = [
        Owner(match_member(members, ref), "named") if ref else None for ref in refs
    ]
    if server_uuid is not None:
        return [o or Owner(server_uuid, SERVER_UUID_KEY) for o in owners]
    spread = iter(
        spread_new_jobs(members, sum(o is None for o in owners)) if None in owners else []
    )
    return [o or _fewest(next(spread)) for o in owners]


def _fewest(member: MemberRow) -> Owner:
    who = member.name or member.uuid
    why = f"the active member owning the fewest jobs: {who}, {member.jobs_owned} before"
    return Owner(member.uuid, why)


def modifier(db: Db, ref: str | None, server_uuid: str | None) -> str | None:
    """The member a modification goes through: ``ref`` (``--as``, resolved), else
    ``server_uuid``, else None (the owner is kept). Raises ``OwnerError``."""
    if ref:
        return match_member(list_members(db), ref)
    return server_uuid

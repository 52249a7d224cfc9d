"""The lifecycle of a proposal about a dead member, written once: events in, actions out.

A :class:`Lifecycle` holds one replica's proposals of one kind (takeover or recovery) and
the attempt windows it knows of. Its drivers tell it what happened and carry out what it
answers: :class:`workers.proposals.worker.ProposalWorker` with Redis and SQL,
:class:`workers.replay.proposals.VirtualProposals` on the replay's virtual clock. Nothing
here reads a clock, Redis or SQL: times are Redis server milliseconds passed in.

Events, in the order a proposal meets them::

    dead(uuid)      a member turned dead (or the scan found it still needing one)
                    -> Record(skipped) | NotProposed | Publish
    published(p)    the proposal went out: the member's attempt window opens for ``sleep``
    claimed(t, p)   this replica holds the proposal (token ``t``: its stream entry)
    due(t, view)    its due time (or next check) came: the member is back -> Record
                    (cancelled), Done; still dead -> CheckGuard
    guard(t, why)   the mass-failure guard's reason (None: none) and the last release
                    -> Hold (+ Record held, the first time) | Decide
    decided(t, o)   instead of the guard: its final outcome ``o`` is recorded already (it
                    was delivered again after its decision) -> Done
    committed(t)    the kind's commit was made (or found made) -> Done
    failed(t, …)    the kind decided nothing changes (no destination, …) -> Record, Done

``Done`` ends the proposal: acknowledge it, and its member's attempt window ends
``sleep`` after this decision (a proposal in flight keeps the window open).
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypedDict, TypeVar

from schemas.messages import MemberState, RecoveryProposal, TakeoverProposal
from workers.proposals.decide import HELD_RECHECK_MS, cancel_reason, check_at_ms, guard_holds

__all__ = [
    "Action",
    "AuditKey",
    "CheckGuard",
    "Decide",
    "Done",
    "Hold",
    "Lifecycle",
    "NotProposed",
    "Proposal",
    "Publish",
    "Record",
    "Rules",
    "Tracked",
    "audit_key",
    "new_proposal",
    "random_id",
]

Proposal = TypeVar("Proposal", TakeoverProposal, RecoveryProposal)
Token = TypeVar("Token", bound=Hashable)


def new_proposal(
    kind: type[Proposal],
    *,
    dead_uuid: str,
    policy: str,
    proposed_at_ms: int,
    delay_ms: int,
    last_seen_ms: int,
    proposal_id: str | None = None,
) -> Proposal:
    """A proposal of type ``kind`` due ``delay_ms`` after ``proposed_at_ms`` (Redis server ms).

    Its id is ``proposal_id``, else a random one (the replay passes ids derived from the
    member and the time, so that its seeded choices are reproducible)."""
    return kind(
        id=proposal_id or random_id(),
        dead_uuid=dead_uuid,
        policy=policy,
        proposed_at_ms=proposed_at_ms,
        due_at_ms=proposed_at_ms + delay_ms,
        last_seen_ms=last_seen_ms,
    )


def random_id(what: str = "", member_uuid: str = "", at_ms: int = 0) -> str:
    """A new proposal id (the workers'; the replay derives its ids from the arguments)."""
    return uuidlib.uuid4().hex


class AuditKey(TypedDict):
    """What names a proposal's audit row, in the store's words (``**audit_key(p)``)."""

    proposal_id: str
    dead_uuid: str
    policy: str
    proposed_ms: int
    due_ms: int


def audit_key(p: TakeoverProposal | RecoveryProposal) -> AuditKey:
    """The audit row's key fields of proposal ``p``."""
    return AuditKey(
        proposal_id=p.id,
        dead_uuid=p.dead_uuid,
        policy=p.policy,
        proposed_ms=p.proposed_at_ms,
        due_ms=p.due_at_ms,
    )


@dataclass(frozen=True)
class Rules(Generic[Proposal]):
    """What one kind of proposal is (pure; see ``workers.takeover.decide.takeover_rules``,
    ``workers.recovery.decide.recovery_rules``): its name and message, where it travels
    (stream, consumer group, the members' attempt keys), and its settings."""

    what: str  # "takeover" or "recovery"
    message: type[Proposal]
    stream: str
    group: str
    attempt_key: Callable[[str], str]  # member uuid -> its attempt key
    enabled: bool
    policy: str
    delay_ms: int
    sleep_ms: int
    eligible: Callable[[str], tuple[bool, str]]  # dead uuid -> (may it get one, why)


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publish(Generic[Proposal]):
    """Append ``proposal`` to the kind's stream unless its member had an attempt within
    ``sleep``; answer :meth:`Lifecycle.published` when it went out."""

    proposal: Proposal
    by: str  # "death" or "scan"


@dataclass(frozen=True)
class NotProposed:
    """No proposal for ``uuid``: one of this replica's is in flight, or its window is open."""

    uuid: str
    at_ms: int
    reason: str
    window_end_ms: int | None = None  # when the open window ends (None: one is in flight)


@dataclass(frozen=True)
class Record(Generic[Proposal]):
    """The audit row of a decision that changed nothing (yet): skipped, cancelled, held, …"""

    proposal: Proposal
    at_ms: int
    outcome: str
    detail: str


@dataclass(frozen=True)
class CheckGuard(Generic[Token, Proposal]):
    """The member is still dead: read the members and answer :meth:`Lifecycle.guard`."""

    token: Token
    proposal: Proposal


@dataclass(frozen=True)
class Hold(Generic[Token, Proposal]):
    """The guard holds the proposal: keep it, look again at ``recheck_ms``; ``first``: list
    it as held and tell of it (a :class:`Record` ``held`` follows)."""

    token: Token
    proposal: Proposal
    at_ms: int
    reason: str
    first: bool
    recheck_ms: int


@dataclass(frozen=True)
class Decide(Generic[Token, Proposal]):
    """The guard lets it through: the kind plans and commits; answer
    :meth:`Lifecycle.committed` or :meth:`Lifecycle.failed`."""

    token: Token
    proposal: Proposal


@dataclass(frozen=True)
class Done(Generic[Token, Proposal]):
    """The proposal is decided: acknowledge it and stop holding it; its member's attempt
    window now ends at ``window_end_ms``."""

    token: Token
    proposal: Proposal
    at_ms: int
    outcome: str
    detail: str
    window_end_ms: int


Action = (
    Publish[Any]
    | NotProposed
    | Record[Any]
    | CheckGuard[Any, Any]
    | Hold[Any, Any]
    | Decide[Any, Any]
    | Done[Any, Any]
)


@dataclass
class Tracked(Generic[Proposal]):
    """A proposal this replica holds until it is due and decided."""

    proposal: Proposal
    next_check_ms: int = 0
    held_logged: bool = False

    @property
    def check_ms(self) -> int:
        """When it is looked at next: once due, and not before its next check."""
        return check_at_ms(self.proposal.due_at_ms, self.next_check_ms)


@dataclass
class Lifecycle(Generic[Token, Proposal]):
    """One replica's proposals of one kind, and the attempt windows it knows of."""

    rules: Rules[Proposal]
    ids: Callable[[str, str, int], str] = random_id  # (what, member, at ms) -> proposal id
    tracked: dict[Token, Tracked[Proposal]] = field(default_factory=dict)
    busy: dict[str, Token] = field(default_factory=dict)  # member -> its proposal in flight
    windows: dict[str, int] = field(default_factory=dict)  # member -> its window's end

    # -- events ------------------------------------------------------------------------------

    def dead(self, uuid: str, at_ms: int, last_seen_ms: int, *, by: str = "death") -> list[Action]:
        """``uuid`` turned dead at ``at_ms`` (last heard ``last_seen_ms``), or the periodic
        ``scan`` found it dead and still needing a proposal."""
        r = self.rules
        ok, why = r.eligible(uuid)
        if not ok:  # a policy skip is worth recording while the feature is on
            skip = self._new(uuid, at_ms, last_seen_ms, f"skip-{uuid}-{at_ms}", delay_ms=0)
            return [Record(skip, at_ms, "skipped", why)] if r.enabled else []
        if uuid in self.busy:
            pid = self.tracked[self.busy[uuid]].proposal.id
            return [NotProposed(uuid, at_ms, f"{r.what} proposal {pid[:8]} is in flight")]
        window_end_ms = self.windows.get(uuid, -1)
        if window_end_ms > at_ms:
            return [NotProposed(uuid, at_ms, f"an attempt within {r.what} sleep", window_end_ms)]
        self.windows.pop(uuid, None)
        p = self._new(uuid, at_ms, last_seen_ms, self.ids(r.what, uuid, at_ms), r.delay_ms)
        return [Publish(p, by)]

    def published(self, p: Proposal) -> None:
        """``p`` went out: no other attempt for its member within ``sleep``."""
        self.windows[p.dead_uuid] = max(
            self.windows.get(p.dead_uuid, 0), p.proposed_at_ms + self.rules.sleep_ms
        )

    def claimed(self, token: Token, p: Proposal) -> bool:
        """This replica holds ``p`` (read, or reclaimed from a dead replica); False when it
        held it already."""
        if token in self.tracked:
            return False
        self.tracked[token] = Tracked(p)
        self.busy[p.dead_uuid] = token
        return True

    def due(
        self, token: Token, now_ms: int, state: MemberState | None, seen_ms: int
    ) -> list[Action]:
        """The proposal's check came; its member is in ``state``, last heard ``seen_ms``."""
        p = self.tracked[token].proposal
        reason = cancel_reason(state, seen_ms, p.last_seen_ms)
        if reason is not None:  # the member is back
            return self.failed(token, now_ms, "cancelled", reason)
        return [CheckGuard(token, p)]

    def guard(
        self, token: Token, now_ms: int, reason: str | None, released_ms: int
    ) -> list[Action]:
        """The mass-failure guard's ``reason`` now (None: none), and the last ``qwc takeover
        release`` (``released_ms``, 0: never)."""
        t = self.tracked[token]
        p = t.proposal
        if reason is None or not guard_holds(reason, released_ms, p.proposed_at_ms):
            return [Decide(token, p)]
        t.next_check_ms = now_ms + HELD_RECHECK_MS
        hold: list[Action] = [Hold(token, p, now_ms, reason, not t.held_logged, t.next_check_ms)]
        if not t.held_logged:
            t.held_logged = True
            hold.append(Record(p, now_ms, "held", reason))
        return hold

    def decided(self, token: Token, now_ms: int, outcome: str) -> list[Action]:
        """The proposal's final ``outcome`` is recorded already: it was delivered again after
        its decision (a replica died between the decision and the acknowledgement). Done,
        before the guard: a decided proposal is never held, nor recorded twice."""
        return [self._done(token, now_ms, outcome, "decided before; delivered again")]

    def committed(self, token: Token, now_ms: int, detail: str = "") -> list[Action]:
        """The kind's commit was made (or had been made by another replica)."""
        return [self._done(token, now_ms, "committed", detail)]

    def failed(self, token: Token, now_ms: int, outcome: str, detail: str) -> list[Action]:
        """Decided ``outcome`` that changes nothing (cancelled, skipped, no_destination, …)."""
        p = self.tracked[token].proposal
        return [Record(p, now_ms, outcome, detail), self._done(token, now_ms, outcome, detail)]

    # -- reading -----------------------------------------------------------------------------

    def due_now(self, now_ms: int) -> Iterator[Token]:
        """The tokens whose check came by ``now_ms``, earliest due first."""
        items = sorted(self.tracked.items(), key=lambda kv: kv[1].proposal.due_at_ms)
        for token, t in items:
            if t.check_ms <= now_ms:
                yield token

    def next_check_ms(self) -> int | None:
        """The earliest check of a proposal held (None: none)."""
        return min((t.check_ms for t in self.tracked.values()), default=None)

    def scan_may_propose(self, uuid: str, now_ms: int) -> bool:
        """Whether a scan at ``now_ms`` may propose for ``uuid``: the feature is on, it is
        eligible, nothing of it is in flight here and its window (as known here) ended."""
        if uuid in self.busy or self.windows.get(uuid, 0) > now_ms:
            return False
        return self.rules.enabled and self.rules.eligible(uuid)[0]

    # -- helpers -----------------------------------------------------------------------------

    def _new(self, uuid: str, at_ms: int, last_seen_ms: int, pid: str, delay_ms: int) -> Proposal:
        r = self.rules
        return new_proposal(
            r.message,
            dead_uuid=uuid,
            policy=r.policy,
            proposed_at_ms=at_ms,
            delay_ms=delay_ms,
            last_seen_ms=last_seen_ms,
            proposal_id=pid,
        )

    def _done(self, token: Token, now_ms: int, outcome: str, detail: str) -> Done[Token, Proposal]:
        p = self.tracked.pop(token).proposal
        if self.busy.get(p.dead_uuid) == token:
            del self.busy[p.dead_uuid]
        # the attempt window was kept open while the proposal was in flight
        end_ms = max(self.windows.get(p.dead_uuid, 0), now_ms + self.rules.sleep_ms)
        self.windows[p.dead_uuid] = end_ms
        return Done(token, p, now_ms, outcome, detail, end_ms)

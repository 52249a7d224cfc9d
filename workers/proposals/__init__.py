"""Proposals about dead members: what the takeover and the recovery share.

A proposal (``TakeoverProposal``, ``RecoveryProposal``: one value, from its id to its due
time) goes through one :class:`Lifecycle` (``lifecycle.py``: pure, events in, actions out)
that :class:`ProposalWorker` (``worker.py``) drives with Redis and SQL and the replay
(``workers.replay.proposals``) on its virtual clock. The kind's own parts are passed in:
:class:`Rules` (pure) and a :class:`Kind` (I/O). Also here: the shared pure decisions
(``decide.py``), members as :class:`Candidate` (``candidates.py``), publishing once per
``sleep`` (``publish.py``) and handing held proposals back on shutdown (``handback.py``).
"""

from workers.proposals.candidates import (
    Candidate,
    candidates,
    candidates_from_members,
    candidates_from_view,
)
from workers.proposals.decide import (
    HELD_RECHECK_MS,
    cancel_reason,
    check_at_ms,
    guard_holds,
    guard_reason,
)
from workers.proposals.handback import hand_back
from workers.proposals.lifecycle import (
    AuditKey,
    Lifecycle,
    Proposal,
    Rules,
    Tracked,
    audit_key,
    new_proposal,
)
from workers.proposals.publish import publish_once_per_sleep
from workers.proposals.worker import Decision, Kind, ProposalWorker

__all__ = [
    "HELD_RECHECK_MS",
    "AuditKey",
    "Candidate",
    "Decision",
    "Kind",
    "Lifecycle",
    "Proposal",
    "ProposalWorker",
    "Rules",
    "Tracked",
    "audit_key",
    "cancel_reason",
    "candidates",
    "candidates_from_members",
    "candidates_from_view",
    "check_at_ms",
    "guard_holds",
    "guard_reason",
    "hand_back",
    "new_proposal",
    "publish_once_per_sleep",
]

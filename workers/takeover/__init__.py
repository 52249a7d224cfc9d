"""Autotakeover: a dead member's scheduled jobs move to live members.

``decide.py`` is pure (eligibility by ``autotakeover.policy``, destinations, the rules of a
takeover proposal); ``worker.py`` is the takeover's part of a proposal worker
(:class:`TakeoverKind`, see :mod:`workers.proposals`); ``manual.py`` is ``qwc takeover``
(an operator's takeover, without a proposal); ``guard.py`` the operator's side of the
mass-failure guard (what it holds, ``qwc takeover release``); ``history.py`` the JSON of
the audit rows, for the CLI and the manager.
"""

from workers.takeover.decide import TakeoverPlan, eligible, plan_takeover, takeover_rules
from workers.takeover.guard import GuardState, Release, guard_state, held_takeovers, release_guard
from workers.takeover.history import takeover_history, takeover_json
from workers.takeover.manual import TakeoverRefused, manual_takeover
from workers.takeover.worker import TakeoverKind, TakeoverWorker

__all__ = [
    "GuardState",
    "Release",
    "TakeoverKind",
    "TakeoverPlan",
    "TakeoverRefused",
    "TakeoverWorker",
    "eligible",
    "guard_state",
    "held_takeovers",
    "manual_takeover",
    "plan_takeover",
    "release_guard",
    "takeover_history",
    "takeover_json",
    "takeover_rules",
]

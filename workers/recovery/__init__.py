"""Recover executions: a dead member's running executions become ``incomplete`` and those
of jobs with retries left run again on a live member (``qwc worker recovery``).

``decide.py`` is pure (eligibility by ``recoverExecutions.policy``, retries, the plan, the
rules of a recovery proposal); ``worker.py`` is the recovery's part of a proposal worker
(:class:`RecoveryKind`, see :mod:`workers.proposals`); ``startup.py`` what a member
recovers of its own when it starts or drains; ``retention.py`` the cleaner of old
executions that runs beside the recovery worker; ``history.py`` the JSON of the audit rows.
"""

from workers.recovery.decide import (
    RecoveryPlan,
    eligible,
    next_retry,
    plan_recovery,
    recovery_rules,
)
from workers.recovery.history import recovery_json
from workers.recovery.retention import RetentionCleaner
from workers.recovery.startup import recover_own, startup_cleanup
from workers.recovery.worker import RecoveryKind, RecoveryWorker

__all__ = [
    "RecoveryKind",
    "RecoveryPlan",
    "RecoveryWorker",
    "RetentionCleaner",
    "eligible",
    "next_retry",
    "plan_recovery",
    "recover_own",
    "recovery_json",
    "recovery_rules",
    "startup_cleanup",
]

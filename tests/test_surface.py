"""The project's surface: each package facade's names (as httpx tests its own), and every
error class under ``QwcError``, drawn in the tree of ``schemas/errors.py``.

A facade's names change on purpose: add or remove the name here with the change.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import producers
import schemas
import workers
from schemas import errors
from schemas.errors import QwcError

FACADES = {
    "workers.jobops": (
        "ImportResult",
        "Owner",
        "OwnerError",
        "create_from_spec",
        "delete_by_ref",
        "edit_by_ref",
        "existing_job",
        "import_specs",
        "match_member",
        "modifier",
        "new_job_owners",
        "set_enabled",
        "spread_new_jobs",
    ),
    "workers.jobs": (
        "CommandExecutor",
        "DEFAULT_PROJECT",
        "Executor",
        "HttpExecutor",
        "Imported",
        "JobSpec",
        "PythonExecutor",
        "ShellExecutor",
        "SpecError",
        "changed_columns",
        "describe",
        "execution_detail_json",
        "execution_json",
        "executor_columns",
        "executor_json",
        "executor_of",
        "job_columns",
        "job_json",
        "job_runs",
        "load_import",
        "load_specs",
        "merged_spec",
        "parse_import",
        "parse_spec",
        "spec_fields",
    ),
    "workers.localcluster": (
        "LocalProcesses",
        "ProcessSpec",
        "Supervisor",
        "fast_timings_env",
        "local_tokens",
        "member_identities",
        "on_exit",
        "page_url",
        "topology",
    ),
    "workers.proposals": (
        "AuditKey",
        "Candidate",
        "Decision",
        "HELD_RECHECK_MS",
        "Kind",
        "Lifecycle",
        "Proposal",
        "ProposalWorker",
        "Rules",
        "Tracked",
        "cancel_reason",
        "candidates",
        "candidates_from_members",
        "audit_key",
        "candidates_from_view",
        "check_at_ms",
        "guard_holds",
        "guard_reason",
        "hand_back",
        "new_proposal",
        "publish_once_per_sleep",
    ),
    "workers.recovery": (
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
    ),
    "workers.replay": (
        "FORMAT_VERSION",
        "Recording",
        "RecordingWriter",
        "ReplayResult",
        "read_recording",
        "replay",
    ),
    "workers.store": (
        "ALL_OWNERS",
        "ActiveExecution",
        "Admission",
        "Admitted",
        "Backlog",
        "CommandRow",
        "DEFAULT_CONCURRENCY",
        "DEFAULT_MISFIRE",
        "DELETED_REASON",
        "Db",
        "DeletedJob",
        "ExecutionRow",
        "FINAL_OUTCOMES",
        "Finish",
        "FireClaim",
        "JobRow",
        "MemberRow",
        "MissedFires",
        "MovedJob",
        "NewExecution",
        "RETENTION_BATCH_ROWS",
        "RecoveryResult",
        "RecoveryRow",
        "RunningExecution",
        "StartedExecution",
        "Store",
        "StoreSettings",
        "TakeoverCommit",
        "TakeoverRow",
        "Unfinished",
        "abort_execution",
        "admit_execution",
        "check_migrated",
        "claim_fire",
        "claim_fires",
        "commit_recovery",
        "commit_takeover",
        "count_backlog",
        "count_double_fires",
        "count_executions_by_member",
        "count_jobs_by_owner",
        "count_missed_fires",
        "count_unfinished",
        "create_job",
        "create_store_engine",
        "current_revision",
        "decide_admission",
        "default_sqlite_url",
        "delete_expired_executions",
        "delete_job",
        "ended_at",
        "expired_before_ms",
        "find_job",
        "find_recovery",
        "find_takeover",
        "finish_command",
        "finish_execution",
        "finish_executions",
        "fire_job",
        "fire_times_by_job",
        "get_command",
        "get_execution",
        "get_job",
        "get_member",
        "head_revision",
        "insert_command",
        "insert_execution",
        "insert_executions",
        "job_path",
        "jobs_with_active",
        "known_member_uuids",
        "list_commands",
        "list_executions",
        "list_jobs",
        "list_members",
        "list_queued_before",
        "list_recoveries",
        "list_takeovers",
        "list_unqueued",
        "lock_jobs",
        "mark_incomplete",
        "mark_queued",
        "mark_queued_at_fire",
        "masked_url",
        "missing_fire_times",
        "move_scheduled_executions",
        "open_store",
        "pending_command_targets",
        "purge_deleted_jobs",
        "reassign_jobs",
        "record_fire",
        "record_member_state",
        "record_recovery",
        "record_takeover",
        "record_takeover_outcome",
        "reroute_command",
        "running_executions",
        "running_here",
        "script_head_revision",
        "set_next_fire_ms",
        "split_missed_fires",
        "start_execution",
        "start_executions",
        "store_url",
        "unmark_queued",
        "unmark_queued_at_fire",
        "update_job",
        "upgrade",
    ),
    "workers.takeover": (
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
    ),
}


@pytest.mark.parametrize("package", sorted(FACADES))
def test_a_facade_exports_exactly_its_names(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(FACADES[package])
    assert len(set(module.__all__)) == len(module.__all__)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []
    # what the package defines and shows is in its __all__ (imported helpers are not)
    defined = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and not inspect.ismodule(v)
        and getattr(v, "__module__", "").startswith(package + ".")
    }
    assert defined <= set(module.__all__)


def project_modules() -> list[str]:
    names = []
    for pkg in (schemas, producers, workers):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if not info.name.endswith("__main__") and ".migrations" not in info.name:
                names.append(info.name)
    return names


def project_errors() -> list[type[BaseException]]:
    """Every exception class a module of the project defines."""
    found = []
    for name in project_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
            ):
                found.append(value)
    return found


def test_every_error_class_is_a_qwc_error_drawn_in_the_tree() -> None:
    classes = project_errors()
    assert {c.__name__ for c in classes} >= {"ApiError", "BadRequest", "SpecError", "QwcError"}
    outside = [f"{c.__module__}.{c.__name__}" for c in classes if not issubclass(c, QwcError)]
    assert outside == []
    tree = errors.__doc__ or ""
    drawn = [c for c in classes if c is not QwcError]
    missing = [
        c.__name__
        for c in drawn
        if not c.__name__.startswith("_") and f"── {c.__name__} " not in tree
    ]
    assert missing == [], "draw these in the tree of schemas/errors.py"
    private = [c.__name__ for c in drawn if c.__name__.startswith("_")]
    assert all(f"``{name}``" in tree for name in private)


def test_the_package_docstrings_name_every_package() -> None:
    """``workers/__init__.py`` and ``producers/__init__.py`` name each of their packages
    and modules (and nothing that is not there: the producers are the heartbeat's)."""
    for pkg in (workers, producers):
        root = Path(pkg.__file__ or "").parent
        parts = sorted(
            p.stem
            for p in root.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists())
            or (p.suffix == ".py" and p.stem != "__init__")
        )
        doc = pkg.__doc__ or ""
        assert [p for p in parts if f"``{p}``" not in doc] == [], pkg.__name__
    assert [m.name for m in pkgutil.iter_modules(producers.__path__)] == ["heartbeat"]

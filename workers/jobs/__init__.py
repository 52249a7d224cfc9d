"""Jobs as the CLI, the API and the members see them, without I/O of their own.

``executor`` (what a job runs: command, shell, http, python; validated), ``spec`` (a job to
create, from ``qwc jobs add`` options or an import file; ``SpecError`` names entry and
field) and ``shapes`` (the JSON of jobs and executions that ``--json`` and the API show).
The CLI and the manager both import this package; it imports only ``schemas`` and the store.
"""

from __future__ import annotations

from workers.jobs.executor import (
    CommandExecutor,
    Executor,
    HttpExecutor,
    PythonExecutor,
    ShellExecutor,
    describe,
    executor_columns,
    executor_of,
)
from workers.jobs.shapes import (
    execution_detail_json,
    execution_json,
    executor_json,
    job_json,
    job_runs,
)
from workers.jobs.spec import DEFAULT_PROJECT, JobSpec, SpecError, load_specs, parse_spec

__all__ = [
    "DEFAULT_PROJECT",
    "CommandExecutor",
    "Executor",
    "HttpExecutor",
    "JobSpec",
    "PythonExecutor",
    "ShellExecutor",
    "SpecError",
    "describe",
    "execution_detail_json",
    "execution_json",
    "executor_columns",
    "executor_json",
    "executor_of",
    "job_json",
    "job_runs",
    "load_specs",
    "parse_spec",
]

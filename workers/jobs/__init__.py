"""Jobs as the CLI, the API and the members see them, without I/O of their own.

``executor`` (what a job runs: command, shell, http, python; validated), ``spec`` (a job to
create, from ``qwc jobs add`` options or an import file; ``SpecError`` names entry and
field), ``edit`` (specs and store columns both ways: what an edit changes), ``rundeck`` and
``importing`` (import files: this project's list, or Rundeck's job YAML) and ``shapes``
(the JSON of jobs and executions that ``--json`` and the API show).
The CLI and the manager both import this package; it imports only ``schemas`` and the store.
"""

from __future__ import annotations

from workers.jobs.edit import changed_columns, job_columns, merged_spec, spec_fields
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
from workers.jobs.importing import Imported, load_import, parse_import
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
]

"""Import files, in either format: this project's job list, or Rundeck's job YAML
(``workers.jobs.rundeck``, recognised by its ``sequence`` entries). Pure but for reading
the file.

Every entry is converted and validated before anything is written; every problem names
its entry (and the job, when known) and field, and a single problem refuses the whole
file. What a Rundeck job loses is listed in :attr:`Imported.warnings`, one line per job and
field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.jobs.rundeck import convert_job, is_rundeck
from workers.jobs.spec import JobSpec, SpecError, parse_spec, read_import_file, specs_of
from workers.store import job_path

__all__ = ["Imported", "load_import", "parse_import"]


@dataclass(frozen=True)
class Imported:
    """The jobs of an import file, in order, with what the Rundeck ones lost."""

    specs: list[JobSpec]
    warnings: list[str]
    rundeck: bool


def load_import(file: Path, *, project: str | None = None) -> Imported:
    """The jobs of ``file`` (see the module docstring); ``project`` is that of jobs naming
    none. Raises ``SpecError`` listing every problem."""
    return parse_import(read_import_file(file), str(file), project=project)


def parse_import(
    entries: list[Any], where: str, *, project: str | None = None, force_project: bool = False
) -> Imported:
    """``entries`` of an import document as jobs; ``project`` is that of jobs naming none
    (every job's with ``force_project``: the compatible import call's path). Raises
    ``SpecError`` listing every problem of every entry."""
    if force_project and project is not None:
        entries = [{**e, "project": project} if isinstance(e, Mapping) else e for e in entries]
    if not is_rundeck(entries):
        return Imported(specs_of(entries, where, project=project), [], rundeck=False)
    specs: list[JobSpec] = []
    warnings: list[str] = []
    problems: list[str] = []
    for index, entry in enumerate(entries):
        label = f"{where}: entry [{index}] {_name(entry, project)}"
        if not isinstance(entry, Mapping):
            problems.append(f"{label}is not an object: {entry!r}")
            continue
        try:
            converted = convert_job(entry, label)
            fields = converted.fields
            if project is not None:
                fields.setdefault("project", project)
            specs.append(parse_spec(fields, label))
            warnings += converted.dropped
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    return Imported(specs, warnings, rundeck=True)


def _name(entry: Any, project: str | None) -> str:
    """``(project/group/name) `` of a Rundeck entry, for messages ('' when it has no name)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        return ""
    group = entry.get("group") if isinstance(entry.get("group"), str) else ""
    where = job_path(str(entry.get("project") or project or "?"), group or "", entry["name"])
    return f"({where}) "

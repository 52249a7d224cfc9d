"""Where a setting came from (:class:`Origin`) and the rules between settings.

The rules: ``heartbeat.interval < considerInactive < considerDead``; a ``static``
autotakeover or recoverExecutions policy needs its non-empty ``allowed`` list; the
``preset`` remote execution policy needs ``remoteExecution.config.allowed``. They are
checked by ``Settings`` itself (a built-in-code object is checked too) and, with the
origins of the values, by :func:`schemas.settings.load_settings` to name keys and lines.
"""

from __future__ import annotations

__all__ = ["RULES", "Origin", "Rule", "Source", "broken_rules", "display_value"]

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

Source = Literal["default", "file", "environment", "override"]


@dataclass(frozen=True)
class Origin:
    """Where one setting's value came from.

    ``key`` is the property key it was read under (``recoverExecutions.allowed`` or
    ``.config.allowed``); ``file`` and ``line`` (1-based) are set for ``file``, ``env``
    (the variable's name) for ``environment``.
    """

    source: Source
    key: str
    file: str | None = None
    line: int | None = None
    env: str | None = None

    def __str__(self) -> str:
        if self.source == "file":
            return f"{self.file}:{self.line}"
        if self.source == "environment":
            return f"environment {self.env}"
        return self.source

    @property
    def where(self) -> str:
        """The ``source`` of a :class:`schemas.errors.ConfigProblem` about this value."""
        if self.source == "file":
            return str(self.file)
        if self.source == "environment":
            return f"environment ({self.env})"
        return self.source


def display_value(value: Any) -> str:
    """A setting's value as a human reads it: ``30``, ``0.2``, ``true``, ``a,b``, ``***``."""
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return "***"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value) if value else "(none)"
    if isinstance(value, Path):
        return str(value)
    return str(value)


@dataclass(frozen=True)
class Rule:
    """``low < high`` (seconds), or, with ``needs``: ``high == needs`` needs a non-empty ``low``."""

    low: str
    high: str
    needs: str | None = None

    def broken(self, values: Mapping[str, Any]) -> bool:
        """True when both fields are in ``values`` and the rule does not hold."""
        if self.low not in values or self.high not in values:
            return False
        low, high = values[self.low], values[self.high]
        if self.needs is None:
            return bool(low >= high)
        return bool(high == self.needs and not low)

    def describe_fields(self, values: Mapping[str, Any]) -> str:
        """The broken rule in field names (for a ``Settings`` built in code)."""
        low, high = values[self.low], values[self.high]
        if self.needs is None:
            return f"{self.low} ({low}) must be less than {self.high} ({high})"
        return f"{self.high} = {self.needs} needs a non-empty {self.low}"

    def blame(self, origins: Mapping[str, Origin]) -> str:
        """The field to report: ``high``, unless it is a default and ``low`` is not."""
        if origins[self.high].source == "default" and origins[self.low].source != "default":
            return self.low
        return self.high

    def allowed(self, blamed: str, values: Mapping[str, Any], origins: Mapping[str, Origin]) -> str:
        """What the ``blamed`` field allows, naming the other field, its value and origin."""
        other = self.high if blamed == self.low else self.low
        where = origins[other]
        shown = f"{where.key} = {display_value(values[other])} ({where})"
        if self.needs is None:
            relation = "less" if blamed == self.low else "greater"
            return (
                f"a number of seconds {relation} than {shown} "
                "(heartbeat.interval < considerInactive < considerDead)"
            )
        if blamed == self.high:
            return f"{self.needs} only with a non-empty list of member UUIDs in {shown}"
        return f"a non-empty comma-separated list of member UUIDs, because {shown}"


RULES: tuple[Rule, ...] = (
    Rule("heartbeat_interval_s", "heartbeat_consider_inactive_s"),
    Rule("heartbeat_consider_inactive_s", "heartbeat_consider_dead_s"),
    Rule("autotakeover_allowed", "autotakeover_policy", needs="static"),
    Rule("recover_allowed", "recover_policy", needs="static"),
    Rule("remote_execution_allowed", "remote_execution_policy", needs="preset"),
)


def broken_rules(values: Mapping[str, Any]) -> list[Rule]:
    """The rules that ``values`` (field name -> value; missing fields skip their rules) break."""
    return [rule for rule in RULES if rule.broken(values)]

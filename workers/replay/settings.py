"""The settings a replay runs with: those recorded, then a config file, then ``--set``.

A recording holds the effective ``qwcontrol.clusterMode.*`` settings of the moment it was
made (:func:`recorded_settings`). A replay starts from them; ``--config FILE`` overrides
the keys that file sets; ``--set KEY=VALUE`` (the keys of the properties file) overrides
last. Everything goes through :func:`schemas.settings.load_settings`, so a bad value or
an unknown key is a :class:`schemas.errors.ConfigError` naming the key, the value, what
is allowed and where it came from (``--set``, the file and line, or the recording). The
environment and ``./qwcontrol-config.properties`` are never read: a replay depends on the
recording and its arguments only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from schemas.errors import ConfigError, ConfigProblem
from schemas.properties import closest, env_name
from schemas.settings import Settings, load_settings, origins
from schemas.settings_types import Key

__all__ = ["CLUSTER_MODE", "recorded_settings", "replay_settings", "setting_text"]

CLUSTER_MODE = "qwcontrol.clusterMode."


def _fields() -> dict[str, tuple[str, Key]]:
    """Every accepted key -> (field, its Key)."""
    out: dict[str, tuple[str, Key]] = {}
    for name, info in Settings.model_fields.items():
        key = next(m for m in info.metadata if isinstance(m, Key))
        for spelling in key.keys:
            out[spelling] = (name, key)
    return out


def setting_text(value: Any) -> str | None:
    """A setting's value as a properties file writes it (None: unset or empty)."""
    if value is None or value == ():
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def recorded_settings(settings: Settings) -> dict[str, str]:
    """The ``qwcontrol.clusterMode.*`` settings of ``settings`` as key -> text; secrets
    (``heartbeat.secret``) are left out: a recording never holds them, and the replay
    does not need them."""
    out: dict[str, str] = {}
    for key, (name, spec) in sorted(_fields().items()):
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            continue
        text = setting_text(value)
        if key == spec.key and key.startswith(CLUSTER_MODE) and text is not None:
            out[key] = text
    return out


def replay_settings(
    recorded: Mapping[str, str],
    *,
    config: Path | None = None,
    sets: Sequence[str] = (),
    recording: str = "the recording",
) -> Settings:
    """The recorded settings, overridden by ``config``'s keys, then by ``sets``
    (``KEY=VALUE``). Raises ConfigError naming every bad key and where it came from."""
    fields = _fields()
    layers: list[tuple[str, dict[str, str]]] = [(f"recording {recording}", dict(recorded))]
    if config is not None:
        layers.append((str(config), _file_keys(config)))
    layers.append(("--set", _parsed_sets(sets, fields)))
    environ: dict[str, str] = {}
    where: dict[str, str] = {}
    for source, values in layers:
        for key, text in values.items():
            primary = fields[key][1].key if key in fields else key
            environ[env_name(primary)] = text
            where[env_name(primary)] = source
    try:
        return load_settings(os.devnull, environ=environ)
    except ConfigError as exc:
        raise ConfigError([_renamed(p, where) for p in exc.problems]) from None


def _file_keys(config: Path) -> dict[str, str]:
    """The settings a config file sets (its errors name their file and line)."""
    loaded = load_settings(config, environ={})
    out: dict[str, str] = {}
    by_key = {spec.key: name for name, spec in _fields().values()}
    for key, origin in origins(loaded).items():
        text = setting_text(getattr(loaded, by_key[key]))
        if origin.source == "file" and text is not None:
            out[key] = text
    return out


def _parsed_sets(sets: Sequence[str], fields: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    problems = []
    for item in sets:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            problems.append(ConfigProblem(item, None, "KEY=VALUE", "--set"))
        elif key not in fields:
            hint = closest(key, fields, prefix=CLUSTER_MODE)
            allowed = f"unknown key: did you mean `{hint}`?" if hint else "unknown key"
            problems.append(ConfigProblem(key, value, allowed, "--set"))
        else:
            out[key] = value
    if problems:
        raise ConfigError(problems)
    return out


def _renamed(problem: ConfigProblem, where: Mapping[str, str]) -> ConfigProblem:
    """A problem of the environment layer, named by where the values really came from."""
    source, allowed = problem.source, problem.allowed
    for env, origin in where.items():
        if source == f"environment ({env})":
            source = origin
        allowed = allowed.replace(f"(environment {env})", f"({origin})")
    return replace(problem, source=source, allowed=allowed)

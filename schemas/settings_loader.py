"""The layers of :func:`schemas.settings.load_settings`: defaults, file, environment, overrides.

Each layer maps a ``Settings`` field to its raw value and :class:`Origin`; the layers are
merged (override > environment > file > default), every field is validated on its own,
then the rules between fields are checked on the fields that are valid, so a
:class:`ConfigError` lists every problem at once. See :mod:`schemas.settings` for the keys
and the environment variables.
"""

from __future__ import annotations

__all__ = ["load_layers"]

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from schemas.errors import ConfigError, ConfigProblem
from schemas.properties import closest, env_name, read_properties
from schemas.redis_urls import redact_url
from schemas.settings import Settings
from schemas.settings_rules import Origin, broken_rules, display_value
from schemas.settings_types import Allowed, Key, ValueDetail
from schemas.settings_webhooks import WebhookPart, combine, parse_env_name, parse_file_key

# Key prefixes that are all ours: an unknown key under them is a typo, never ignored.
_STRICT_PREFIXES = ("qwcontrol.clusterMode.", "qwcontrol.executions.", "qwcontrol.notifications.")
_SECRET_FIELDS = frozenset(
    {"manager_token", "manager_read_token", "heartbeat_secret", "notification_secret"}
)
_WEBHOOKS = "notification_webhooks"  # given as one key per receiver and attribute,
_PARTS = "\0webhook parts"  # kept aside in a layer under this name until combined
_URL_FIELDS = frozenset({"redis_url", "rq_redis_url", "database_url"})  # passwords masked


@dataclass(frozen=True)
class _Spec:
    """What the loader needs to know of one ``Settings`` field."""

    name: str
    key: Key
    allowed: str
    default: Any
    adapter: TypeAdapter[Any]


@dataclass(frozen=True)
class _Raw:
    """A value as given (text from a file or the environment, any object as override)."""

    value: object
    origin: Origin


@functools.cache
def _specs() -> dict[str, _Spec]:
    specs: dict[str, _Spec] = {}
    for name, info in Settings.model_fields.items():
        key = next(m for m in info.metadata if isinstance(m, Key))
        allowed = next(m for m in info.metadata if isinstance(m, Allowed)).text
        annotated: Any = Annotated[(info.annotation, *info.metadata)]
        specs[name] = _Spec(name, key, allowed, info.default, TypeAdapter(annotated))
    return specs


@functools.cache
def _keys() -> dict[str, tuple[str, str]]:
    """Every accepted property key -> (field, the key)."""
    return {key: (spec.name, key) for spec in _specs().values() for key in spec.key.keys}


@functools.cache
def _env_vars() -> dict[str, tuple[str, str]]:
    """Every accepted environment variable -> (field, the key it stands for)."""
    names: dict[str, tuple[str, str]] = {}
    for spec in _specs().values():
        for key in spec.key.keys:
            names[env_name(key)] = (spec.name, key)
        for alias in spec.key.env:
            names[alias] = (spec.name, spec.key.key)
    return names


def load_layers(
    path: Path | None, environ: Mapping[str, str], overrides: Mapping[str, object] | None
) -> tuple[dict[str, Any], dict[str, tuple[Origin, Any]]]:
    """Validated values by field, and (origin, value) by field. Raises :class:`ConfigError`."""
    problems: list[ConfigProblem] = []
    layers = [
        _file_layer(path, problems) if path is not None else {},
        _env_layer(environ, problems),
        _override_layer(overrides or {}, problems),
    ]
    _combine_webhooks(layers, problems)
    values, loaded, given = _validate(layers, problems)
    problems.extend(_rule_problems(values, loaded, given))
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line is None, p.line or 0)))
    return values, loaded


def _file_layer(path: Path, problems: list[ConfigProblem]) -> dict[str, _Raw]:
    try:
        entries = read_properties(path)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return {}
    layer: dict[str, _Raw] = {}
    for entry in entries.values():
        origin = Origin("file", entry.key, file=str(path), line=entry.line)
        if _webhook_part(layer, parse_file_key(entry.key, entry.value, origin), problems):
            continue
        field = _field_of_key(entry.key, entry.value, origin, problems)
        if field is not None:
            _add(layer, field, _Raw(entry.value, origin), problems)
    return layer


def _field_of_key(
    key: str, value: str, origin: Origin, problems: list[ConfigProblem]
) -> str | None:
    """The field of a file key; None (and maybe a problem) for keys that are not ours."""
    known = _keys()
    if key in known:
        return known[key][0]
    by_lower = {k.lower(): k for k in known}
    if key.lower() in by_lower:
        allowed = f"wrong case: did you mean `{by_lower[key.lower()]}`?"
    elif prefix := _strict_prefix(key.lower(), lower=True):
        suggestion = closest(key, known, prefix=prefix)
        hint = f"did you mean `{suggestion}`?" if suggestion else "no similar key"
        allowed = f"unknown key under {prefix}: {hint}"
    else:
        return None  # the product's file holds many settings that are not ours
    problems.append(ConfigProblem(key, value, allowed, origin.where, origin.line))
    return None


def _strict_prefix(name: str, *, lower: bool) -> str | None:
    """The strict key prefix (``lower``: ``name`` is a lower-cased key) or environment
    prefix (``QWC_CLUSTERMODE_``) ``name`` starts with, if any."""
    for prefix in _STRICT_PREFIXES:
        wanted = prefix.lower() if lower else env_name(prefix)
        if name.startswith(wanted):
            return prefix if lower else wanted
    return None


def _webhook_part(
    layer: dict[str, _Raw], part: WebhookPart | ConfigProblem | None, problems: list[ConfigProblem]
) -> bool:
    """Keep a receiver's key (or its problem) aside in ``layer``; False: not such a key."""
    if part is None:
        return False
    if isinstance(part, ConfigProblem):
        problems.append(part)
        return True
    parts = layer.setdefault(_PARTS, _Raw({}, part.origin)).value
    assert isinstance(parts, dict)
    parts[(part.name, part.attr)] = part
    return True


def _combine_webhooks(layers: list[dict[str, _Raw]], problems: list[ConfigProblem]) -> None:
    """Replace the receivers' keys kept aside in the file and environment layers by the
    receivers they make, in the highest of those layers (an override stays as given)."""
    given = [layer.pop(_PARTS).value for layer in layers[:2] if _PARTS in layer]
    combined = combine(given, problems)  # type: ignore[arg-type]
    if combined is not None:
        receivers, origin = combined
        layers[1 if origin.source == "environment" else 0][_WEBHOOKS] = _Raw(receivers, origin)


def _env_layer(environ: Mapping[str, str], problems: list[ConfigProblem]) -> dict[str, _Raw]:
    known = _env_vars()
    layer: dict[str, _Raw] = {}
    for name in sorted(environ):
        value = environ[name]
        if value == "":
            continue  # an empty variable counts as unset
        if _webhook_part(layer, parse_env_name(name, value), problems):
            continue
        if name in known:
            field, key = known[name]
            _add(layer, field, _Raw(value, Origin("environment", key, env=name)), problems)
        elif prefix := _strict_prefix(name, lower=False):
            suggestion = closest(name, known, prefix=prefix)
            hint = f"did you mean `{suggestion}`?" if suggestion else "no similar variable"
            allowed = f"unknown {prefix}* variable: {hint}"
            problems.append(ConfigProblem(name, value, allowed, f"environment ({name})"))
    return layer


def _override_layer(
    overrides: Mapping[str, object], problems: list[ConfigProblem]
) -> dict[str, _Raw]:
    specs = _specs()
    layer: dict[str, _Raw] = {}
    for name, value in overrides.items():
        if value is None:
            continue  # a CLI flag that was not given
        if name in specs:
            layer[name] = _Raw(value, Origin("override", specs[name].key.key))
            continue
        suggestion = closest(name, specs)
        hint = f": did you mean `{suggestion}`?" if suggestion else ""
        problems.append(ConfigProblem(name, repr(value), f"a Settings field{hint}", "override"))
    return layer


def _add(layer: dict[str, _Raw], field: str, raw: _Raw, problems: list[ConfigProblem]) -> None:
    """Put ``raw`` in ``layer``; a second spelling of the same setting is a problem."""
    first = layer.get(field)
    if first is None:
        layer[field] = raw
        return
    first_name = first.origin.env or first.origin.key
    at = f" (line {first.origin.line})" if first.origin.line is not None else ""
    name = raw.origin.env or raw.origin.key
    allowed = f"set only one of `{first_name}`{at} and `{name}`"
    problems.append(
        ConfigProblem(raw.origin.key, _text(field, raw), allowed, raw.origin.where, raw.origin.line)
    )


def _validate(
    layers: list[dict[str, _Raw]], problems: list[ConfigProblem]
) -> tuple[dict[str, Any], dict[str, tuple[Origin, Any]], dict[str, _Raw]]:
    """Validate every given value, also those a higher layer overrides (a bad file is bad).

    Returns the effective values (the default for a field given nowhere), the (origin,
    value) of each field whose effective value is valid, and the effective raw values.
    """
    specs = _specs()
    values = {name: spec.default for name, spec in specs.items()}
    loaded = {name: (Origin("default", spec.key.key), spec.default) for name, spec in specs.items()}
    given: dict[str, _Raw] = {}
    for layer in layers:  # lowest precedence first
        for name, raw in layer.items():
            given[name] = raw
            loaded.pop(name, None)
            try:
                values[name] = specs[name].adapter.validate_python(raw.value)
            except ValidationError as exc:
                problems.append(_value_problem(specs[name], raw, exc))
                continue
            loaded[name] = (raw.origin, values[name])
    return values, loaded, given


def _value_problem(spec: _Spec, raw: _Raw, exc: ValidationError) -> ConfigProblem:
    origin = raw.origin
    allowed = spec.allowed + _detail(exc)
    return ConfigProblem(origin.key, _text(spec.name, raw), allowed, origin.where, origin.line)


def _detail(exc: ValidationError) -> str:
    """`` (why)`` when a validator gave a reason worth showing, else ``""``."""
    for error in exc.errors():
        reason = error.get("ctx", {}).get("error")
        if isinstance(reason, ValueDetail):
            return f" ({reason})"
    return ""


def _text(field: str, raw: _Raw) -> str:
    """The value of a problem as given: text as is, other objects shown; secrets masked."""
    if field in _SECRET_FIELDS:
        return "***"
    if field in _URL_FIELDS and isinstance(raw.value, str):
        return redact_url(raw.value)
    return raw.value if isinstance(raw.value, str) else display_value(raw.value)


def _rule_problems(
    values: Mapping[str, Any],
    loaded: Mapping[str, tuple[Origin, Any]],
    given: Mapping[str, _Raw],
) -> list[ConfigProblem]:
    """A problem for each broken rule between fields that are valid on their own."""
    valid = {name: values[name] for name in loaded}
    origins = {name: origin for name, (origin, _) in loaded.items()}
    problems: list[ConfigProblem] = []
    for rule in broken_rules(valid):
        blamed = rule.blame(origins)
        origin = origins[blamed]
        raw = given.get(blamed)
        shown = _text(blamed, raw) if raw is not None else display_value(valid[blamed])
        allowed = rule.allowed(blamed, valid, origins)
        problems.append(ConfigProblem(origin.key, shown, allowed, origin.where, origin.line))
    return problems

"""``qwc config check``: validate the settings and show where each value comes from."""

from __future__ import annotations

__all__ = ["COMMANDS", "config"]

import json
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr

from schemas.errors import ConfigError, ConfigProblem
from schemas.redis_urls import redact_url
from schemas.settings import Settings, find_config_file, load_settings, origins
from schemas.settings_rules import Origin, display_value
from schemas.settings_webhooks import Webhook
from workers.cli.common import CliContext, pass_cli

_URL_FIELDS = ("redis_url", "rq_redis_url", "database_url")
_NOT_FILES = ("default", "override")
_VALUE_WIDTH = 40


@click.group("config")
def config() -> None:
    """Inspect the configuration: qwcontrol-config.properties and QWC_* variables."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@pass_cli
def check(cli: CliContext, as_json: bool) -> None:
    """Validate the configuration and print every effective setting with its origin.

    \b
    The file is `qwc --config FILE`, else $QWC_CONFIG, else ./qwcontrol-config.properties
    if it exists (/dev/null: no file); a regular file of at most 1 MiB of UTF-8 text.
    Precedence: environment > file > default. Every key qwcontrol.X.Y is
    overridden by the variable QWC_ + X_Y upper-cased (qwcontrol.clusterMode.heartbeat.interval
    -> QWC_CLUSTERMODE_HEARTBEAT_INTERVAL); QWC_DATABASE_URL and QWC_HOME are accepted too.

    \b
    Output: one line per key: key, value, origin (default, FILE:LINE, environment VAR).
    Secrets (qwcontrol.manager.token, qwcontrol.notifications.secret, URL passwords) are
    shown as ***; a webhook receiver's URL only as its scheme, host and port.
    With --json: {"valid": true, "config_file": ..., "settings": {KEY: {"value", "origin",
    "file", "line", "env"}}}, or {"valid": false, "problems": [{"key", "value", "allowed",
    "file", "line", "source"}]}.

    \b
    Exit status: 0 valid; 2 invalid, every problem printed (on stderr as
    FILE:LINE: KEY = 'VALUE': WHAT IS ALLOWED; with --json in the JSON object on stdout).
    """
    path = find_config_file(cli.config_path)
    try:
        settings = load_settings(cli.config_path)
    except ConfigError as exc:
        _print_problems(exc.problems, path, as_json)
        raise SystemExit(2) from None
    if as_json:
        click.echo(json.dumps(_settings_json(settings, path), indent=2))
    else:
        _print_settings(settings, path)


COMMANDS: list[click.Command] = [config]


def _print_problems(problems: list[ConfigProblem], path: Path | None, as_json: bool) -> None:
    if as_json:
        document = {
            "valid": False,
            "config_file": None if path is None else str(path),
            "problems": [_problem_json(problem) for problem in problems],
        }
        click.echo(json.dumps(document, indent=2))
        return
    for problem in problems:
        click.echo(str(problem), err=True)
    count = len(problems)
    click.echo(f"qwc: invalid configuration: {count} problem{'s' * (count != 1)}", err=True)


def _problem_json(problem: ConfigProblem) -> dict[str, Any]:
    is_file = problem.source not in _NOT_FILES and not problem.source.startswith("environment")
    return {
        "key": problem.key,
        "value": problem.value,
        "allowed": problem.allowed,
        "file": problem.source if is_file else None,
        "line": problem.line,
        "source": problem.source,
    }


def _rows(settings: Settings) -> list[tuple[str, Any, Origin]]:
    """(key, value, origin) per setting in field order; secrets and URL passwords masked."""
    rows = []
    for name, (key, origin) in zip(Settings.model_fields, origins(settings).items(), strict=True):
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = "***"
        elif name in _URL_FIELDS and value is not None:
            value = _mask_password(value)
        rows.append((key, value, origin))
    return rows


def _mask_password(url: str) -> str:
    """``url`` with the password, if any, replaced by ``***`` (also ``password=`` and
    ``sentinel_password=`` parameters)."""
    return redact_url(url)


def _print_settings(settings: Settings, path: Path | None) -> None:
    click.echo(f"config file: {path if path is not None else '(none)'}")
    rows = [(key, display_value(value), str(origin)) for key, value, origin in _rows(settings)]
    key_width = max(len(key) for key, _, _ in rows)
    value_width = min(_VALUE_WIDTH, max(len(value) for _, value, _ in rows))
    for key, value, origin in rows:
        click.echo(f"{key:<{key_width}}  {value:<{value_width}}  {origin}")


def _settings_json(settings: Settings, path: Path | None) -> dict[str, Any]:
    entries = {}
    for key, value, origin in _rows(settings):
        entries[key] = {
            "value": _jsonable(value),
            "origin": origin.source,
            "file": origin.file,
            "line": origin.line,
            "env": origin.env,
        }
    return {
        "valid": True,
        "config_file": None if path is None else str(path),
        "settings": entries,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, Webhook):
        return value.shown()
    if isinstance(value, bool | int | float | str) or value is None:
        return value  # a StrEnum is a str
    return display_value(value)

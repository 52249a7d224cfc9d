"""What the deployment tests share: resolving a ``qwc`` command line through click without
running it, the environment variables ``qwc`` reads, and compose's ``${VAR}`` interpolation."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import click

from schemas.properties import env_name
from schemas.settings import Settings
from schemas.settings_types import Key
from workers.cli.main import cli

__all__ = ["interpolate", "known_env_names", "resolve_qwc"]


def resolve_qwc(args: Sequence[str]) -> list[str]:
    """Parse ``qwc ARGS`` as the real CLI would, loading the lazy commands, and return the
    command path (``["qwc", "worker", "liveness"]``). Runs no command; raises
    ``click.UsageError`` for an unknown command or option, or a missing argument, and
    ``AssertionError`` when ``args`` stop at a group."""
    ctx = cli.make_context("qwc", list(args))
    path = ["qwc"]
    while isinstance(ctx.command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        assert rest, f"qwc {' '.join(args)}: stops at the group {' '.join(path)}"
        name, command, rest = ctx.command.resolve_command(ctx, rest)
        assert name is not None and command is not None
        ctx = command.make_context(name, rest, parent=ctx)
        path.append(name)
    assert not ctx.args, f"qwc {' '.join(args)}: unexpected arguments {ctx.args}"
    return path


def known_env_names() -> set[str]:
    """Every environment variable ``qwc`` reads: one per settings key (and alias), and the
    ``envvar`` of the top-level options (QWC_CONFIG, QWC_LOG_FORMAT)."""
    names: set[str] = set()
    for info in Settings.model_fields.values():
        key = next(m for m in info.metadata if isinstance(m, Key))
        names.update(env_name(k) for k in key.keys)
        names.update(key.env)
    for param in cli.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            names.add(envvar)
    return names


_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of ``text``: ``${VAR}``, ``$VAR``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, and ``$$`` for ``$``. Raises
    KeyError for a required variable missing from ``env``."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        value = env.get(name)
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op is not None and op.endswith("?") and unset:
            raise KeyError(f"{name} is required: {arg}")
        if op is not None and op.endswith("-") and unset:
            return arg
        return value or ""

    return _VAR.sub(one, text)

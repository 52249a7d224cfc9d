"""What every ``qwc`` command shares: the lazily loaded settings and logging set-up."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from schemas.errors import ConfigError, StoreError
from schemas.settings import Settings, load_settings, origins

if TYPE_CHECKING:
    from workers.store import Store

__all__ = [
    "LOG_FORMATS",
    "CliContext",
    "JsonLogFormatter",
    "announce",
    "configure_logging",
    "default_consumer_name",
    "echo_json",
    "fail",
    "listing_options",
    "opened_store",
    "pass_cli",
    "require_cluster_mode",
    "stop_on_signals",
]

LOG_FORMATS = ("text", "json")
_json_logs = False  # set by configure_logging: announce() follows the log format


@dataclass
class CliContext:
    """Holds ``--config`` and loads the settings once, on first use."""

    config_path: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self, **overrides: object) -> Settings:
        """The effective settings; on an invalid file prints every problem and exits 2."""
        if self._settings is None or overrides:
            try:
                loaded = load_settings(self.config_path, overrides=overrides or None)
            except ConfigError as exc:
                click.echo(str(exc), err=True)
                raise SystemExit(2) from None
            if overrides:
                return loaded
            self._settings = loaded
        return self._settings


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


def require_cluster_mode(settings: Settings) -> None:
    """Exit 2 with where it was set when ``qwcontrol.clusterMode.enabled`` is false."""
    if settings.cluster_mode_enabled:
        return
    key = "qwcontrol.clusterMode.enabled"
    fail(
        f"{key} is false ({origins(settings)[key]}): cluster mode is off, so this process "
        "does not start. Set it to true, or remove it (the default is true).",
        code=2,
    )


_F = TypeVar("_F", bound=Callable[..., Any])


def listing_options(what: str, statuses: Sequence[str]) -> Callable[[_F], _F]:
    """The options every history listing takes: ``--status`` (repeatable, one of
    ``statuses``; parameter ``statuses``), ``--limit`` (default 100, newest first) and
    ``--json`` (parameter ``as_json``). ``what`` names the rows in the help."""

    def decorate(command: _F) -> _F:
        for option in reversed(
            (
                click.option(
                    "--status",
                    "statuses",
                    multiple=True,
                    type=click.Choice(statuses),
                    help=f"Only {what} in this status (repeatable).",
                ),
                click.option(
                    "--limit",
                    type=click.IntRange(min=1),
                    default=100,
                    show_default=True,
                    help="At most this many, newest first.",
                ),
                click.option(
                    "--json", "as_json", is_flag=True, help="Print a JSON list of objects."
                ),
            )
        ):
            command = option(command)
        return command

    return decorate


@contextmanager
def opened_store(cli: CliContext) -> Iterator[Store]:
    """The configured store, closed on exit; exits 1 when it cannot be opened."""
    from workers.store import open_store  # SQLAlchemy: only for the commands that need it

    try:
        store = open_store(cli.settings())
    except (StoreError, OSError) as exc:
        fail(str(exc))
        raise  # unreachable: fail() exits
    try:
        yield store
    finally:
        store.close()


def fail(message: str, code: int = 1) -> None:
    """Print ``message`` on stderr and exit with ``code`` (no traceback)."""
    click.echo(f"qwc: {message}", err=True)
    raise SystemExit(code)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (UTC, ISO 8601 with ms), ``level``,
    ``logger``, ``message``; ``exception`` when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(verbosity: int, log_format: str = "text") -> None:
    """Only the CLI configures handlers. 0: warnings, 1: info, 2+: debug. ``log_format``
    ``json``: one JSON object per line (:class:`JsonLogFormatter`); else plain text."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    global _json_logs
    _json_logs = log_format.lower() == "json"
    handler = logging.StreamHandler(sys.stderr)
    if _json_logs:
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def announce(message: str) -> None:
    """A line for the operator on stderr, whatever the verbosity: plain text, or with
    ``--log-format json`` one JSON log object (level INFO, logger ``qwc``), so that stderr
    stays one JSON object per line."""
    if _json_logs:
        record = logging.LogRecord("qwc", logging.INFO, __file__, 0, message, None, None)
        click.echo(JsonLogFormatter().format(record), err=True)
    else:
        click.echo(message, err=True)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, for a process's main loop to end cleanly."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def default_consumer_name(kind: str) -> str:
    """A consumer name unique to this process: ``<kind>-<host>-<pid>``."""
    return f"{kind}-{socket.gethostname()}-{os.getpid()}"


def echo_json(value: object) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))

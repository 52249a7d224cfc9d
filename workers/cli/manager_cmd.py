"""``qwc manager``: serve the Cluster Manager's web page and HTTP API (``workers.manager``)
on uvicorn."""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import click

from schemas.settings import Settings
from workers.cli.common import CliContext, announce, pass_cli

__all__ = ["COMMANDS", "auth_summary"]


def auth_summary(settings: Settings) -> str:
    """How calls are authorised under ``settings``, in one line (never the tokens)."""
    writes = (
        "need the bearer token qwcontrol.manager.token"
        if settings.manager_token
        else "refused (qwcontrol.manager.token is not set)"
    )
    if settings.manager_read_open:
        reads = "open (qwcontrol.manager.readOpen)"
    elif settings.manager_token or settings.manager_read_token:
        reads = "need a bearer token (qwcontrol.manager.token or .readToken)"
    else:
        reads = "refused (set qwcontrol.manager.readToken or readOpen=true)"
    return f"mutating calls {writes}; reading calls {reads}"


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=4440,
    show_default=True,
    help="TCP port to listen on.",
)
@pass_cli
def manager(cli: CliContext, host: str, port: int) -> None:
    """Serve the Cluster Manager (web page and HTTP API) until SIGTERM or Ctrl-C.

    The web page at / (open http://HOST:PORT/ and paste a token; it shows the members
    live, the jobs per member, a timeline, and take over / run / abort buttons). JSON API
    under /api/cluster (members, jobs, executions, takeovers, recoveries, manual takeover,
    run, abort, the mass-failure guard), the compatible calls under
    /api/{v}/scheduler (PUT .../takeover, GET .../jobs, GET .../server/UUID/jobs), the
    OpenAPI document at /openapi.json (pages /docs and /redoc) and Prometheus metrics at
    /metrics. Mutating calls need `Authorization: Bearer` with qwcontrol.manager.token;
    reading calls that token or qwcontrol.manager.readToken, unless
    qwcontrol.manager.readOpen=true. A request body over qwcontrol.manager.maxBodyBytes
    (1 MiB by default) is refused with 413 before it is read. Redis and the store are
    opened on first use: a call answers 503 while either is down. See docs/manager.md.
    """
    import uvicorn  # imported here: every other command starts without it

    from workers.manager.app import create_app

    settings = cli.settings()
    app = create_app(settings)
    announce(f"qwc manager: http://{host}:{port} ({auth_summary(settings)})")
    # log_config=None: the CLI's logging set-up applies (-v shows uvicorn's access lines,
    # which carry the method and path, never a header, so never a token).
    config = uvicorn.Config(app, host=host, port=port, log_config=None, server_header=False)
    _server_class()(config).run()


def _server_class() -> type[Any]:
    """uvicorn's Server, except that after a graceful shutdown on SIGTERM or Ctrl-C the
    process exits with status 0, as every other qwc process does (uvicorn re-raises the
    signal, which would end the process with -15 / 130)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # shut down already: do not re-raise

    return Server


COMMANDS: list[click.Command] = [manager]

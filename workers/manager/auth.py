"""Bearer tokens: who may read, who may change the cluster.

A mutating call (every route that is not GET) needs ``Authorization: Bearer <token>`` with
``qwcontrol.manager.token``; when that setting is empty every mutating call is refused
(403), never open. A reading call (GET, ``/metrics`` too) needs that token or
``qwcontrol.manager.readToken``, unless ``qwcontrol.manager.readOpen`` is true. No
token: 401 (with ``WWW-Authenticate: Bearer``); a wrong one: 403. The OpenAPI document
and its pages stay open.

Tokens are compared in constant time on their SHA-256 digests (so neither content nor
length leaks through timing); they are never logged, and only headers carry them (no
query parameter, so access logs cannot hold one).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from schemas.settings import Settings
from workers.manager.errors import ApiError

__all__ = ["TokenCheck", "auth_problem", "require_read", "require_write"]

log = logging.getLogger(__name__)

WRITE_UNSET = (
    "mutating calls are refused: no manager token is configured; set "
    "qwcontrol.manager.token (env QWC_MANAGER_TOKEN) and send it as a bearer token"
)
READ_UNSET = (
    "reading calls are closed: no token is configured; set qwcontrol.manager.readToken "
    "(env QWC_MANAGER_READTOKEN) or qwcontrol.manager.token, or qwcontrol.manager.readOpen=true"
)
MISSING = "this call needs a bearer token: Authorization: Bearer <token>"
WRONG = "the bearer token is not valid for this call"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="qwcontrol.manager.token (any call) or qwcontrol.manager.readToken (GET).",
)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class TokenCheck:
    """The digests of the accepted tokens, built once from the settings."""

    write: tuple[bytes, ...]
    read: tuple[bytes, ...]
    read_open: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCheck:
        write = settings.manager_token
        tokens = [t.get_secret_value() for t in (write, settings.manager_read_token) if t]
        return cls(
            write=(_digest(write.get_secret_value()),) if write else (),
            read=tuple(_digest(t) for t in tokens),
            read_open=settings.manager_read_open,
        )


def auth_problem(
    presented: str | None, accepted: Sequence[bytes], *, open_: bool, unset: str
) -> tuple[int, str] | None:
    """Pure: None when the call may proceed, else (status, message). ``accepted`` are
    digests; every one is compared, in constant time, whatever matches first."""
    if open_:
        return None
    if not accepted:
        return 403, unset
    if not presented:
        return 401, MISSING
    digest = _digest(presented)
    matches = [hmac.compare_digest(digest, token) for token in accepted]
    return None if any(matches) else (403, WRONG)


Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def _check(request: Request, credentials: Credentials, *, write: bool) -> None:
    check: TokenCheck = request.app.state.tokens
    presented = credentials.credentials if credentials else None
    problem = (
        auth_problem(presented, check.write, open_=False, unset=WRITE_UNSET)
        if write
        else auth_problem(presented, check.read, open_=check.read_open, unset=READ_UNSET)
    )
    if problem is None:
        return
    status, message = problem
    log.info("manager: %s %s -> %s", request.method, request.url.path, status)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    raise ApiError(status, message, headers=headers)


def require_read(request: Request, credentials: Credentials) -> None:
    """Dependency of every reading route (see the module docstring)."""
    _check(request, credentials, write=False)


def require_write(request: Request, credentials: Credentials) -> None:
    """Dependency of every mutating route (see the module docstring)."""
    _check(request, credentials, write=True)

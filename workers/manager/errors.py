"""Every error the manager answers, as one JSON body; the exception -> status mapping.

Body: ``{"error": true, "errorCode": "api.error.…", "message": "…"}``, plus ``apiversion``
on the compatible calls (``/api/{v}/…``), as the product this replaces answers. Statuses:

    400  a bad request the routes check themselves (compatible takeover body, API version)
    401  no bearer token; 403 a wrong one, or none configured (see ``auth``)
    404  unknown member, job or execution (``NotFoundError``), or route
    409  the cluster's state refuses it (``TakeoverRefused``, ``CommandRefused``), or the
         store's (``ConflictError``: a job of that name or id exists, executions disabled)
    413  a request body over qwcontrol.manager.maxBodyBytes, refused unread (``body_limit``)
    422  a parameter or body that does not validate (``detail`` lists each problem; a job's
         body: ``SpecError``, one problem per field), or an owner that cannot be found
         (``OwnerError``: an unknown or ambiguous member name, no active member)
    503  Redis or the store does not answer (``redis.RedisError``, ``StoreError``,
         ``EmbeddedRedisError``, SQLAlchemy's connection errors)
    500  a bug: logged with its traceback, answered without details
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from schemas.errors import (
    ConflictError,
    EmbeddedRedisError,
    NotFoundError,
    QwcError,
    StoreError,
)
from workers.commands.issue import CommandRefused
from workers.jobops import OwnerError
from workers.jobs import SpecError
from workers.takeover.manual import TakeoverRefused

__all__ = ["ApiError", "ErrorBody", "error_response", "install_handlers"]

log = logging.getLogger(__name__)

ERROR_CODES = {
    400: "api.error.invalid.request",
    401: "api.error.unauthorized",
    403: "api.error.forbidden",
    404: "api.error.item.doesnotexist",
    405: "api.error.method.unsupported",
    409: "api.error.conflict",
    413: "api.error.request.toolarge",
    422: "api.error.invalid.request",
    500: "api.error.unexpected",
    503: "api.error.unavailable",
}


class ErrorBody(BaseModel):
    """What every error answers (``apiversion`` only on the compatible calls)."""

    model_config = ConfigDict(extra="allow")

    error: Literal[True] = True
    errorCode: str
    message: str
    apiversion: int | None = None


class ApiError(QwcError):
    """An error a route answers as is: status, message, optional error code and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers


def error_response(
    request: Request,
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """The JSON error answer; ``apiversion`` is added on ``/api/{v}/…`` paths."""
    body: dict[str, Any] = {
        "error": True,
        "errorCode": code or ERROR_CODES.get(status, "api.error"),
        "message": message,
    }
    version = request.path_params.get("v")
    if isinstance(version, str) and version.isdigit() and len(version) < 10:
        body["apiversion"] = int(version)
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _unavailable(request: Request, what: str, exc: BaseException) -> JSONResponse:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    reason = _first_line(cause)
    log.warning("manager: %s %s -> 503: %s: %s", request.method, request.url.path, what, reason)
    return error_response(request, 503, f"{what} is unavailable: {reason}")


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    detail: list[dict[str, Any]] = []
    lines: list[str] = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        msg = str(e.get("msg")).removeprefix("Value error, ")
        detail.append({"loc": loc, "msg": msg, "type": str(e.get("type"))})
        lines.append(f"{'.'.join(loc)}: {msg}")
    return "; ".join(lines) or "invalid request", detail


def install_handlers(app: FastAPI) -> None:
    """Answer every exception above as JSON (see the module docstring)."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(request, exc.status, exc.message, code=exc.code, headers=exc.headers)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers) if exc.headers else None
        return error_response(request, exc.status_code, str(exc.detail), headers=headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, detail = _validation_message(list(exc.errors()))
        return error_response(request, 422, message, detail=detail)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, 404, str(exc))

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, 409, str(exc))

    async def bad_job(request: Request, exc: Exception) -> JSONResponse:
        problems = exc.problems if isinstance(exc, SpecError) else [str(exc)]
        detail = [{"loc": ["body"], "msg": p, "type": "value_error"} for p in problems]
        return error_response(request, 422, "; ".join(problems), detail=detail)

    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        return _unavailable(request, "Redis", exc)

    async def store_down(request: Request, exc: Exception) -> JSONResponse:
        return _unavailable(request, "the store", exc)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("manager: %s %s -> 500", request.method, request.url.path, exc_info=exc)
        return error_response(request, 500, "unexpected error: see the manager's log")

    handlers: list[tuple[type[Exception], Any]] = [
        (ApiError, api_error),
        (HTTPException, http_error),
        (RequestValidationError, invalid),
        (NotFoundError, not_found),
        (TakeoverRefused, refused),
        (CommandRefused, refused),
        (ConflictError, refused),
        (SpecError, bad_job),
        (OwnerError, bad_job),
        (redis.RedisError, redis_down),
        (EmbeddedRedisError, redis_down),
        (StoreError, store_down),
        (OperationalError, store_down),
        (InterfaceError, store_down),
        (PoolTimeoutError, store_down),
        (Exception, unexpected),
    ]
    for exc_class, handler in handlers:
        app.add_exception_handler(exc_class, handler)

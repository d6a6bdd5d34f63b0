"""Errors as HTTP responses: ``{"error", "message", "hint"}``, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from arquivo.errors import (
    ArquivoError,
    ConflictError,
    CorruptDatabaseError,
    DatabaseUnavailableError,
    DuplicateError,
    MigrationError,
    MissingDependencyError,
    NotFoundError,
    StorageFullError,
    ValidationError,
    WaitTimeoutError,
)

__all__ = ["arquivo_error_answer", "error_body", "install_error_handlers", "status_for"]

log = logging.getLogger("arquivo.server")

# Most specific first: the first class an error is an instance of decides.
_STATUS: tuple[tuple[type[ArquivoError], int, str], ...] = (
    (NotFoundError, 404, "not_found"),
    (DuplicateError, 409, "duplicate"),
    (ConflictError, 409, "conflict"),
    (ValidationError, 422, "validation_error"),
    (WaitTimeoutError, 408, "timeout"),
    (DatabaseUnavailableError, 503, "database_unavailable"),
    (StorageFullError, 503, "storage_full"),
    (CorruptDatabaseError, 503, "database_corrupt"),
    (MigrationError, 503, "schema_not_ready"),
    # The server lacks a tool (pg_dump for a backup): the operator's to fix, not a bug.
    (MissingDependencyError, 503, "missing_dependency"),
)
_HTTP_NAMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


def status_for(exc: ArquivoError) -> tuple[int, str]:
    """The HTTP status and error code an Arquivo error maps to."""
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "arquivo_error"


def error_body(code: str, message: str, hint: str = "", **extra: Any) -> dict[str, Any]:
    """The JSON body every error response has."""
    return {"error": code, "message": message, "hint": hint, **extra}


def _field(loc: tuple[Any, ...]) -> str:
    # ("body", "content") -> "content"; ("query", "limit") -> "limit".
    parts = [str(p) for p in loc[1:]] if len(loc) > 1 else [str(p) for p in loc]
    return ".".join(parts) or "request"


def arquivo_error_answer(exc: ArquivoError) -> tuple[int, dict[str, Any]]:
    """The status and body of the answer to an Arquivo error (logged when it is a 5xx)."""
    status, code = status_for(exc)
    if status >= 500:
        log.error("request failed: %s", exc)
    return status, error_body(code, exc.message, exc.hint)


async def _arquivo_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ArquivoError)
    status, body = arquivo_error_answer(exc)
    return JSONResponse(body, status_code=status)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": _field(tuple(err.get("loc", ()))), "message": str(err.get("msg", ""))}
        for err in exc.errors()
    ]
    message = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "invalid request"
    body = error_body(
        "validation_error",
        message,
        "fix the named fields; the OpenAPI document at /openapi.json describes every request",
        fields=problems,
    )
    return JSONResponse(body, status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if isinstance(detail, dict):
        body = error_body(
            str(detail.get("error", _HTTP_NAMES.get(exc.status_code, "http_error"))),
            str(detail.get("message", "")),
            str(detail.get("hint", "")),
        )
    else:
        body = error_body(_HTTP_NAMES.get(exc.status_code, "http_error"), str(detail))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server's log, never to the client.
    log.exception("unexpected error while serving a request", exc_info=exc)
    body = error_body(
        "internal_error", "the server hit an unexpected error", "see the server's log"
    )
    return JSONResponse(body, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error a JSON body with a message and a hint."""
    app.add_exception_handler(ArquivoError, _arquivo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

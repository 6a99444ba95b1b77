"""Maps every error to the envelope ``{"error": {code, message, details}, "request_id"}`` once
(and, on the OpenAI-compatible door, to OpenAI's error envelope)."""

from __future__ import annotations

import logging
import re
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from sfumato.errors import FieldError, ServerBusy, ServiceUnavailable, SfumatoError, ValidationFailed

log = logging.getLogger("sfumato.api")

_HTTP_CODES = {
    401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
    415: "unsupported_media_type",
}


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


IMAGE_EDIT_PATH = "/api/v1/image/generation"
"""The image-edit API (spec §8): errors in its own envelope ``{code, data, message, request_id}``."""
OPENAI_PREFIX = "/v1/"
"""The OpenAI-compatible door: its clients read OpenAI's error envelope, so errors there get it."""


def openai_error(status: int, code: str, message: str, details: list[FieldError] | None = None) -> dict[str, Any]:
    """OpenAI's ``{"error": {message, type, param, code}}``; ``param`` names the first bad field."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    elif status == 429:
        kind = "rate_limit_error"
    param = _openai_param(details[0].field) if details else None
    return {"error": {"message": openai_message(message, details or []), "type": kind, "param": param, "code": code}}


def _openai_param(field: str) -> str:
    return field.removeprefix("params.")


def _lower_first(text: str) -> str:
    """``The prompt …`` → ``the prompt …`` after a colon; ``PNG …`` stays."""
    return text[:1].lower() + text[1:] if text[:1].isupper() and not text[1:2].isupper() else text


def openai_message(message: str, details: list[FieldError]) -> str:
    """OpenAI's ``message``: one or a few sentences naming the fields. ``message`` as it is where it
    already says every detail (the OpenAI door's refusals do); else each detail as a sentence,
    ``Invalid value for 'size': …``, after ``message`` unless that is only the generic one."""
    untold = [d for d in details if d.message.casefold() not in message.casefold()]
    if not untold:
        return message
    said = [] if message == ValidationFailed.default_message else [message]
    told = [f"Invalid value for '{_openai_param(d.field)}': {_lower_first(d.message)}" for d in untold]
    return " ".join(dict.fromkeys([*said, *told]))


def envelope(
    request: Request, status: int, code: str, message: str,
    details: list[FieldError] | None = None, headers: dict[str, str] | None = None,
) -> JSONResponse:
    if request.url.path.startswith(IMAGE_EDIT_PATH):  # the page's envelope: code is the HTTP status
        problems = "; ".join(f"{d.field}: {d.message}" for d in details or [])
        page: dict[str, Any] = {"code": status, "data": None, "message": f"{message} {problems}".strip(),
                                "request_id": request_id_of(request), "error": code}
        return JSONResponse(page, status_code=status, headers=headers)
    if request.url.path.startswith(OPENAI_PREFIX):
        status = 400 if status == 422 else status  # OpenAI answers a bad request with 400
        return JSONResponse(openai_error(status, code, message, details), status_code=status, headers=headers)
    body = {
        "error": {"code": code, "message": message, "details": [d.as_dict() for d in details or []]},
        "request_id": request_id_of(request),
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _loc(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


async def _sfumato_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SfumatoError)
    headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
    if isinstance(exc, ServiceUnavailable | ServerBusy):
        headers = {"Retry-After": "1"}
    if exc.headers:
        headers = {**(headers or {}), **exc.headers}
    return envelope(request, exc.status, exc.code, exc.message, exc.details, headers)


BODY_NOT_PARSED = "There was an error parsing the body"


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [FieldError(_loc(tuple(e.get("loc", ()))), str(e.get("msg", "invalid"))) for e in exc.errors()]
    return envelope(request, 422, "validation_failed", "The request is not valid.", details)


def _allowed_methods(request: Request) -> str:
    """Every method any route serves on this path: Starlette names only the first route's. A
    path a route names literally (``/api/v1/tasks/quote``) is that route's alone, not also a
    template's that would take it as a parameter (``/api/v1/tasks/{task_id}``, a 404 there)."""
    path = request.url.path
    table: list[tuple[re.Pattern[str], set[str]]] = request.app.state.route_methods
    hits = [(regex, methods) for regex, methods in table if regex.match(path)]
    literal = [hit for hit in hits if not hit[0].groupindex]
    return ", ".join(sorted({m for _, methods in (literal or hits) for m in methods}))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == BODY_NOT_PARSED:
        # FastAPI's answer to a body that is not JSON: the same 422 as every other bad body
        return envelope(request, 422, "validation_failed", "The body is not valid JSON.",
                        [FieldError("body", "Not valid JSON.")])
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    return envelope(request, exc.status_code, code, str(exc.detail), headers=headers)


_UNSTORABLE_TEXT = (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)
"""What PostgreSQL answers for text it cannot hold (U+0000): the request's fault, not an outage."""


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, PoolTimeout):  # saturated, not down: all connections busy
        log.warning("database pool exhausted; answering 503 server_busy")
        return await _sfumato_error(request, ServerBusy())
    if (isinstance(exc, DBAPIError) and isinstance(exc.orig, _UNSTORABLE_TEXT)) or isinstance(exc, _UNSTORABLE_TEXT):
        return await _sfumato_error(request, ValidationFailed("Text may not contain the NUL character (U+0000).",
                                                              [FieldError("body", "Contains U+0000.")]))
    log.warning("database unavailable: %s", exc.__class__.__name__)
    return await _sfumato_error(request, ServiceUnavailable())


async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
    """The client went away (or was cut off for a stalled body) before its body was read: no
    one is left to answer, and nothing went wrong here worth a traceback."""
    log.info("client disconnected before its request body was read: %s %s", request.method, request.url.path)
    return envelope(request, 400, "client_disconnected", "The client disconnected.")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return envelope(request, 500, "internal_error", "Internal error; it has been logged.")


HANDLERS: dict[type[Exception], Any] = {
    SfumatoError: _sfumato_error,
    RequestValidationError: _request_validation,
    HTTPException: _http_error,
    # A pooled connection that broke surfaces wrapped (DBAPIError); a fresh connection that
    # cannot be made surfaces as the driver's own error, which SQLAlchemy does not wrap.
    **dict.fromkeys((DBAPIError, PoolTimeout, ConnectionError, TimeoutError, asyncpg.PostgresConnectionError,
                     asyncpg.CannotConnectNowError, asyncpg.InterfaceError, asyncpg.OperatorInterventionError),
                    _database_down),
    ClientDisconnect: _client_gone,
    Exception: _unexpected,
}


def install(app: FastAPI) -> None:
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)


async def answer(request: Request, exc: Exception) -> JSONResponse:
    """The answer :func:`install`'s handlers give ``exc``, found as Starlette finds one (the
    nearest class in its MRO), for routes served outside FastAPI's stack (``api/hot_routes.py``)."""
    handler = next(HANDLERS[kind] for kind in type(exc).__mro__ if kind in HANDLERS)
    response: JSONResponse = await handler(request, exc)
    return response

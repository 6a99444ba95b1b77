"""How request bodies are read: one mechanism for every route, so a new route cannot forget it.

- **Capped while it streams.** :class:`BodyCap` (ASGI middleware) gives every request a body
  limit chosen by its path — 1 MiB unless the path is one of the few that carry images — refuses
  a declared ``Content-Length`` over it before a byte is read, and raises
  :class:`~sfumato.errors.PayloadTooLarge` from ``receive()`` the moment the streamed bytes pass
  it, whatever was declared (chunked bodies included).
- **Read after authentication.** FastAPI reads a body declared as a parameter *before* it runs
  the route's dependencies, so an unauthenticated client could make the server read (and hold)
  it. No route declares one: routes read their body with :func:`json_body` in the route
  function, after the principal dependency has run (a test walks every route to keep it so).
- **Decoded one way.** ``json_body`` takes UTF-8 JSON (RFC 8259 §8.1) whatever the
  ``Content-Type`` says (``text/plain`` or none included: every such request also carries a
  bearer key, which a browser never sends cross-site without a preflight) and refuses UTF-16;
  a string holding U+0000 or a lone surrogate, which PostgreSQL cannot store, is a 422 naming
  the field, the same answer on SQLite.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sfumato.catalog.text import unstorable_fields
from sfumato.errors import FieldError, PayloadTooLarge, ValidationFailed

DEFAULT_LIMIT = 1024 * 1024
IMAGES_LIMIT = 64 * 1024 * 1024
"""Requests carrying images inline (multipart parts, or base64 ``data:`` URLs in JSON) are
refused past this; larger sets go through the Files API by id."""
IMAGE_DOORS = ("/v1/images/", "/api/v1/image/generation")
UPLOADS = "/api/v1/files"


def limit_for(scope: Scope) -> int:
    """The body limit of a request, by its path (the state's ``upload_limit`` for uploads)."""
    path: str = scope["path"]
    if path.startswith(IMAGE_DOORS):
        return IMAGES_LIMIT
    if path == UPLOADS:
        return int(getattr(scope["app"].state, "upload_limit", DEFAULT_LIMIT))  # set by create_app
    return DEFAULT_LIMIT


class BodyCap:
    """ASGI middleware: each request's body is refused past :func:`limit_for`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(scope)
        scope["sfumato.body_limit"] = limit
        too_large = f"The request body is over {limit} bytes."
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                scope["sfumato.body_refused"] = too_large  # answered by the route, after authentication
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:  # the rest is cut off, not read and dropped to reuse the connection
                error = PayloadTooLarge(too_large)
                error.headers = {"Connection": "close"}
                raise error
            return message

        await self.app(scope, capped, send)


def refuse_declared_oversize(request: Request) -> None:
    """Raise 413 if the declared ``Content-Length`` is over the limit (nothing read yet)."""
    refused = request.scope.get("sfumato.body_refused")
    if refused:
        raise PayloadTooLarge(refused)


async def read_body(request: Request) -> bytes:
    """The whole body, within the request's limit."""
    refuse_declared_oversize(request)
    chunks = [chunk async for chunk in request.stream()]
    return b"".join(chunks)


async def json_body(request: Request) -> Any:
    """The body as JSON (UTF-8, within the limit); a 422 naming the field for a U+0000."""
    raw = await read_body(request)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed("The body is not valid JSON (UTF-8).", [FieldError("body", str(exc)[:200])]) from exc
    except RecursionError as exc:  # json nests by recursion; a 1 MiB body can nest far deeper
        raise ValidationFailed("The body nests too deeply.", [FieldError("body", "Nested too deeply.")]) from exc
    if b"\\u" in raw:  # the only way a NUL or a lone surrogate reaches a JSON string
        refuse_unstorable(body)
    return body


ModelT = TypeVar("ModelT", bound=BaseModel)


def parsed(model: type[ModelT], body: Any) -> ModelT:
    """``body`` validated as ``model``, its errors as one 422 naming each field."""
    try:
        return model.model_validate(body)
    except PydanticValidationError as exc:
        raise ValidationFailed(details=[
            FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()]) from None


def refuse_unstorable(value: Any) -> None:
    """Raise 422 naming each field of ``value`` whose text no database can store."""
    fields = unstorable_fields(value)
    if fields:
        raise ValidationFailed("Text may not hold a lone surrogate or a NUL (U+0000).",
                               [FieldError(f or "body", "Not storable text (a lone surrogate or U+0000).")
                                for f in fields])

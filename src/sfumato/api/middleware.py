"""A request id on every request and response (``x-request-id``), and into the error envelope;
URLs holding a NUL refused before any route sees them."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sfumato import ids, logs
from sfumato.errors import FieldError


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ids.request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        logs.request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


class NulInUrlMiddleware:
    """A NUL (U+0000) in the path or the query is refused here, the same on both databases:
    no id holds one (404, like any unknown id) and no query value may (422 naming the
    parameter). PostgreSQL cannot even compare text with a NUL; it used to answer 503."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or ("\x00" not in scope["path"] and b"%00" not in scope["query_string"]):
            await self.app(scope, receive, send)
            return
        from sfumato.api.errors import envelope  # the one mapping to the envelope

        request = Request(scope)
        if "\x00" in scope["path"]:
            answer = envelope(request, 404, "not_found", "Not found.")
        else:
            names = [k for k, v in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
                     if "\x00" in k or "\x00" in v] or ["query"]
            answer = envelope(request, 422, "validation_failed", "The request is not valid.",
                              [FieldError(name.replace("\x00", ""), "Contains U+0000.") for name in names])
        await answer(scope, receive, send)

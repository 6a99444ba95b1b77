"""The hot routes served straight from ASGI, past FastAPI's router and dependency solver.

``POST /api/v1/tasks``, ``GET /api/v1/tasks/{task_id}`` and ``POST /v1/images/generations``
are most of the traffic, and FastAPI's own per-request machinery (route matching over every
route, solving the dependency tree, its exit stack) cost more main-thread time on them than
their database work (docs/benchmarks.md). This middleware, the innermost of ours (so request
ids, metrics, the NUL check and the body caps still apply), calls the **same endpoint
functions** with the same arguments: the principal from :func:`dependencies.authenticate`
(what the ``Depends`` chain computes), errors answered by :func:`errors.answer` (what the
exception handlers answer). The FastAPI routes stay registered: they document these paths in
the OpenAPI schema and serve them for an app built without this middleware.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sfumato.api import errors
from sfumato.api.dependencies import authenticate, authenticate_create
from sfumato.api.routes import tasks
from sfumato.api.surfaces import openai_images

Handler = Callable[[Request, re.Match[str]], Awaitable[Response]]


async def _create_task(request: Request, _: re.Match[str]) -> Response:
    return await tasks.create_task(request, request.app.state.deps, await authenticate_create(request))


async def _get_task(request: Request, match: re.Match[str]) -> Response:
    who = await authenticate(request)
    return await tasks.get_task(match["task_id"], request, request.app.state.deps, who)


async def _generations(request: Request, _: re.Match[str]) -> Response:
    return await openai_images.generations(request, request.app.state.deps, await authenticate_create(request))


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/api/v1/tasks"): _create_task,
    ("GET", "/api/v1/tasks/{task_id}"): _get_task,
    ("POST", "/v1/images/generations"): _generations,
}
"""(method, FastAPI path template) → handler; the template must be a registered route's."""


class HotRoutes:
    def __init__(self, app: ASGIApp):
        self.app = app
        self._table: list[tuple[str, re.Pattern[str], APIRoute, Handler]] | None = None

    def _routes(self, scope: Scope) -> list[tuple[str, re.Pattern[str], APIRoute, Handler]]:
        """Matched with the FastAPI routes' own compiled patterns (``app.state.api_routes``,
        from ``build_api``), so a path means the same here as there; built on first use."""
        if self._table is None:
            found: dict[tuple[str, str], APIRoute] = {
                (method, route.path): route
                for route in scope["app"].state.api_routes for method in route.methods or ()
            }
            self._table = [(method, found[(method, path)].path_regex, found[(method, path)], handler)
                           for (method, path), handler in ROUTES.items()]
        return self._table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path, root = scope["method"], scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):  # routes match the path below the mount, as Starlette's do
                path = path[len(root):]
            for wanted, pattern, route, handler in self._routes(scope):
                if method == wanted and (match := pattern.match(path)) is not None:
                    await self._serve(scope, receive, send, route, handler, match)
                    return
        await self.app(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, route: APIRoute, handler: Handler,
                     match: re.Match[str]) -> None:
        scope["route"] = route  # what the router would set (the metrics label by template)
        scope["path_params"] = match.groupdict()
        request = Request(scope, receive, send)
        response: Any
        try:
            response = await handler(request, match)
        except Exception as exc:  # what the exception handlers (and, for the rest, ServerErrorMiddleware) answer
            response = await errors.answer(request, exc)
        await response(scope, receive, send)

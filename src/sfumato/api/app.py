"""The FastAPI application: routers, middleware and error mapping. No state lives here."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from sfumato import __version__
from sfumato.api import errors
from sfumato.api.bodies import BodyCap
from sfumato.api.hot_routes import HotRoutes
from sfumato.api.middleware import NulInUrlMiddleware, RequestIdMiddleware
from sfumato.api.routes import account, admin, admin_ops, files, models, operations, task_events, tasks, webhooks
from sfumato.api.surfaces import image_edit, openai_images, openai_models
from sfumato.metrics import HttpMetricsMiddleware
from sfumato.web import console, pages, playground, reference

DESCRIPTION = """One HTTP API over many image models. Create a task (model id, prompt, params),
get `queued` and a credit reservation back at once, poll until it `succeeded` or `failed`."""


def build_api(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None) -> FastAPI:
    # No slash redirects: Starlette builds their Location from the request's Host header.
    # /docs and /redoc are web/reference.py's (assets from the package, not a CDN).
    app = FastAPI(title="sfumato", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  redirect_slashes=False, docs_url=None, redoc_url=None)
    errors.install(app)
    app.add_middleware(HotRoutes)  # innermost of ours: every check below still sees these routes
    app.add_middleware(BodyCap)
    app.add_middleware(NulInUrlMiddleware)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.state.route_methods = []
    app.state.api_routes = []
    for module in (models, tasks, task_events, files, account, webhooks, openai_images, openai_models, image_edit,
                   admin, admin_ops, pages, playground, console, reference, operations):
        app.include_router(module.router)
        app.state.api_routes += [route for route in module.router.routes if isinstance(route, APIRoute)]
    app.state.route_methods = [(route.path_regex, route.methods) for route in app.state.api_routes]

    return app


__all__ = ["build_api"]

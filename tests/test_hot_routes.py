"""The hot routes (``api/hot_routes.py``) answer exactly what FastAPI's routes answer: the same
requests, good and bad, sent to the app and to the same app without the fast lane give the same
status, headers that matter and body (ids and times aside). On both databases."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from sfumato import metrics
from sfumato.accounts import keys
from sfumato.api.hot_routes import ROUTES, HotRoutes
from sfumato.app import create_app
from sfumato.deps import Deps
from tests.conftest import new_customer

_VARYING = re.compile(r"(task|req|file|msg)_[0-9a-f]{32}|\d{4}-\d\d-\d\dT[\d:.]+Z|\b1\d{9}\b")
HEADERS = ("content-type", "www-authenticate", "retry-after", "allow", "idempotent-replayed")


def _same(response: httpx.Response) -> tuple[int, dict[str, str | None], str]:
    return (response.status_code, {h: response.headers.get(h) for h in HEADERS},
            _VARYING.sub("*", response.text))


async def test_the_fast_lane_answers_what_fastapi_answers(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    other = await new_customer(deps, credits=100, name="other")
    hot = create_app(deps=deps)
    plain = create_app(deps=deps)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not HotRoutes]
    assert len(plain.user_middleware) == len(hot.user_middleware) - 1

    async with LifespanManager(hot) as manager:
        theirs = await new_customer(deps, credits=0, name="broke")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://t") as a, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=plain), base_url="http://t") as b:
            made = (await a.post("/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"},
                                 headers=who.headers)).json()["id"]
            elsewhere = (await b.post("/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"},
                                      headers=other.headers)).json()["id"]
            bearer = who.headers
            cases: list[tuple[str, str, dict[str, Any]]] = [
                ("POST", "/api/v1/tasks", {"json": {"model": "qwen-image", "prompt": "x"}}),
                ("POST", "/api/v1/tasks", {"json": {"model": "qwen-image", "prompt": "x"},
                                           "headers": {"Authorization": "Basic abc"}}),
                ("POST", "/api/v1/tasks", {"json": {}, "headers": {"Authorization": "Bearer"}}),
                ("POST", "/api/v1/tasks", {"json": {}, "headers": {"Authorization": "bearer sk-nonsense"}}),
                ("POST", "/api/v1/tasks", {"json": {}, "headers": {"Authorization": f"Bearer {keys.generate()}"}}),
                ("POST", "/api/v1/tasks", {"content": b"{not json", "headers": bearer}),
                ("POST", "/api/v1/tasks", {"json": [1, 2], "headers": bearer}),
                ("POST", "/api/v1/tasks", {"json": {"model": "nope", "prompt": ""}, "headers": bearer}),
                ("POST", "/api/v1/tasks", {"json": {"model": "qwen-image", "prompt": "x"}, "headers": bearer}),
                ("POST", "/api/v1/tasks", {"json": {"model": "qwen-image", "prompt": "x"},
                                           "headers": theirs.headers}),
                ("POST", "/api/v1/tasks", {"json": {"model": "qwen-image", "prompt": "x"},
                                           "headers": {**bearer, "Prefer": "wait=0"}}),
                ("GET", f"/api/v1/tasks/{made}", {"headers": bearer}),
                ("GET", f"/api/v1/tasks/{elsewhere}", {"headers": bearer}),
                ("GET", "/api/v1/tasks/task_missing", {"headers": bearer}),
                ("GET", f"/api/v1/tasks/{made}", {}),
                ("GET", f"/api/v1/tasks/{made}/", {"headers": bearer}),
                ("GET", "/api/v1/tasks/a%00b", {"headers": bearer}),
                ("HEAD", f"/api/v1/tasks/{made}", {"headers": bearer}),
                ("PUT", f"/api/v1/tasks/{made}", {"headers": bearer}),
                ("POST", "/v1/images/generations", {"json": BODY}),
                ("POST", "/v1/images/generations", {"content": b"[", "headers": bearer}),
                ("POST", "/v1/images/generations", {"json": {"model": "dall-e-9", "prompt": "x"}, "headers": bearer}),
                ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": 99}, "headers": bearer}),
                ("POST", "/v1/images/generations", {"json": {**BODY, "size": "7x7"}, "headers": bearer}),
            ]
            for method, path, kwargs in cases:
                mine, fastapi = await a.request(method, path, **kwargs), await b.request(method, path, **kwargs)
                assert _same(mine) == _same(fastapi), (method, path, mine.text, fastapi.text)


BODY = {"model": "gpt-image-1.5", "prompt": "a fox"}


async def test_hot_routes_are_registered_routes_and_counted_by_template(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps)
    app = create_app(deps=deps)
    templates = {(m, r.path) for r in app.state.api_routes for m in r.methods or ()}
    assert set(ROUTES) <= templates
    counter = metrics.HTTP_REQUESTS.labels("GET", "/api/v1/tasks/{task_id}", "404")
    before = counter._value.get()
    async with LifespanManager(app) as manager, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://t") as client:
        assert (await client.get("/api/v1/tasks/task_nope", headers=who.headers)).status_code == 404
    assert counter._value.get() == before + 1

"""Request bodies, one mechanism for every route (``sfumato.api.bodies``): read only after the
key is checked, capped while they stream, JSON decoded one way, NUL refused as a 422 on both
databases (PostgreSQL cannot store U+0000; it used to surface as a 503 "database unavailable")."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from sfumato.api.app import build_api
from tests.conftest import new_customer, serve
from tests.helpers import create


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI's included router
            yield from _routes(route.original_router.routes)


def test_no_route_has_fastapi_read_its_body_before_authentication() -> None:
    """FastAPI reads a declared body parameter before it runs the route's dependencies (the key
    check): no route may declare one; each reads its body with ``bodies.json_body`` instead."""
    app: FastAPI = build_api()
    routes = list(_routes(app.router.routes))
    assert len(routes) > 20
    declared = [f"{sorted(r.methods)} {r.path}" for r in routes if r.body_field is not None]
    assert declared == []


class Endless:
    """A body of ``total`` bytes in 64 KiB chunks that counts how much the server pulled."""

    def __init__(self, head: bytes = b'{"url": "', total: int = 300 * 1024 * 1024):
        self.head, self.total, self.pulled = head, total, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        while self.pulled < self.total:
            self.pulled += 65536
            yield b"a" * 65536


BODY_ROUTES = [("PUT", "/api/v1/account/webhook"), ("POST", "/api/v1/tasks"), ("POST", "/v1/images/generations"),
               ("POST", "/v1/images/edits"), ("POST", "/api/v1/image/generation"), ("POST", "/api/v1/files")]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_without_a_key_no_body_is_read(make_deps: Callable[..., Any], method: str, path: str) -> None:
    deps = await make_deps(run_worker=False)
    body = Endless()
    async with serve(deps) as client:
        answer = await client.request(method, path, content=body, headers={"Content-Type": "application/json"})
        wrong_key = await client.request(method, path, content=(endless := Endless()), headers={
            "Content-Type": "application/json", "Authorization": "Bearer sk-sf_" + "x" * 43})
    assert answer.status_code == wrong_key.status_code == 401
    assert "unauthorized" in answer.text
    assert body.pulled == 0 and endless.pulled == 0


async def test_the_webhook_put_is_capped_while_it_streams(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    body = Endless()
    async with serve(deps) as client:
        who = await new_customer(deps)
        streamed = await client.put("/api/v1/account/webhook", content=body, headers={
            **who.headers, "Content-Type": "application/json"})
        declared = await client.put("/api/v1/account/webhook", content=b"{}", headers={
            **who.headers, "Content-Type": "application/json", "Content-Length": str(300 * 1024 * 1024)})
        extra = await client.put("/api/v1/account/webhook", json={"url": None, "other": 1}, headers=who.headers)
        fine = await client.put("/api/v1/account/webhook", json={"url": "https://hooks.example.com/x"},
                                headers=who.headers)
    assert (streamed.status_code, streamed.json()["error"]["code"]) == (413, "payload_too_large")
    assert body.pulled <= 2 * 1024 * 1024  # stopped right after the 1 MiB cap
    assert (declared.status_code, declared.json()["error"]["code"]) == (413, "payload_too_large")
    assert fine.status_code == 200 and fine.json()["url"] == "https://hooks.example.com/x"
    assert extra.status_code in (200, 422)  # extra keys: see the document (additionalProperties)


NUL = "a\u0000b"


async def test_a_nul_in_any_text_is_a_422_naming_the_field(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps)
        answers = {
            "prompt": await create(client, who, model="qwen-image", prompt=NUL),
            "params.negative_prompt": await create(client, who, model="qwen-image",
                                                   params={"negative_prompt": NUL}),
            "webhook_url": await create(client, who, model="qwen-image", webhook_url=f"https://x.example/{NUL}"),
            "client_request_id": await create(client, who, model="qwen-image", client_request_id=NUL),
            "url": await client.put("/api/v1/account/webhook", json={"url": f"https://x.example/{NUL}"},
                                    headers=who.headers),
        }
        openai = await client.post("/v1/images/generations", json={"model": "qwen-image", "prompt": NUL},
                                   headers=who.headers)
        edit = await client.post("/v1/images/edits", data={"model": "qwen-image", "prompt": NUL},
                                 files={"image": ("a.png", b"\x89PNG", "image/png")}, headers=who.headers)
        image_edit = await client.post("/api/v1/image/generation", json={"model": "gpt-image-1.5", "prompt": NUL,
                                                                          "images": []}, headers=who.headers)
        balance = (await client.get("/api/v1/account", headers=who.headers)).json()["balance"]
    for field, answer in answers.items():
        assert answer.status_code == 422, (field, answer.text)
        assert answer.json()["error"]["code"] == "validation_failed"
        assert field in [d["field"] for d in answer.json()["error"]["details"]], (field, answer.text)
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "prompt", openai.text
    assert edit.status_code == 400, edit.text
    assert image_edit.status_code == 422 and image_edit.json()["error"] == "validation_failed", image_edit.text
    assert balance == 1000


async def test_a_nul_in_a_path_id_or_a_query_is_not_found_or_a_422(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps)
        task_id = (await create(client, who, model="qwen-image")).json()["id"]
        probes = {
            "task": await client.get(f"/api/v1/tasks/{task_id}%00", headers=who.headers),
            "cancel": await client.post("/api/v1/tasks/task_%00x/cancel", headers=who.headers),
            "file": await client.get("/api/v1/files/file_%00", headers=who.headers),
            "content": await client.get("/api/v1/files/file_%00/content?expires=1&signature=x"),
            "image-edit": await client.get("/api/v1/image/generation/task_%00", headers=who.headers),
            "deliveries": await client.get(f"/api/v1/tasks/{task_id}%00/webhook-deliveries", headers=who.headers),
        }
        model_query = await client.get("/api/v1/tasks?model=qwen%00", headers=who.headers)
        cursor_query = await client.get("/api/v1/tasks?cursor=%00", headers=who.headers)
    for name, answer in probes.items():
        assert answer.status_code in (403, 404), (name, answer.status_code, answer.text)
    assert model_query.status_code == 422 and model_query.json()["error"]["code"] == "validation_failed"
    assert cursor_query.status_code == 422


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_json_is_read_as_utf8_json_whatever_the_content_type_says(
    make_deps: Callable[..., Any], content_type: str | None
) -> None:
    """RFC 8259 §8.1: JSON between systems is UTF-8. A body that parses as UTF-8 JSON is taken
    whatever ``Content-Type`` names (as the task API always did); UTF-16 is refused."""
    deps = await make_deps(run_worker=False)
    body = '{"model": "qwen-image", "prompt": "a fox"}'
    async with serve(deps) as client:
        who = await new_customer(deps)
        headers = {**who.headers, **({"Content-Type": content_type} if content_type else {})}
        utf8 = await client.post("/api/v1/tasks", content=body.encode(), headers=headers)
        utf16 = await client.post("/api/v1/tasks", content=body.encode("utf-16"), headers=headers)
    assert utf8.status_code == 202, utf8.text
    assert (utf16.status_code, utf16.json()["error"]["code"]) == (422, "validation_failed")


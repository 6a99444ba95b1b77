"""Security promises, end to end over HTTP (issue 8 §4): one account never sees another's
tasks, files, outputs or webhook log (404, exactly like a missing id); API keys cannot be
recovered from the database; oversized bodies are refused before they are read whole; prompt
limits count Unicode code points."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import inspect, text

from tests.conftest import Customer, new_customer, serve
from tests.helpers import create, wait_for_task


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "navy").save(buffer, "PNG")
    return buffer.getvalue()


def _shape(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


async def test_another_accounts_resources_are_not_found_like_missing_ones(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="10")
    async with serve(deps) as client:
        owner, stranger = await new_customer(deps), await new_customer(deps, name="stranger")
        task = await wait_for_task(client, owner, (await create(client, owner, model="qwen-image")).json()["id"])
        output_id = task["result"]["media"][0]["url"].split("/files/")[1].split("/")[0]
        upload = (await client.post("/api/v1/files", files={"file": ("a.png", _png(), "image/png")},
                                    headers=owner.headers)).json()
        probes = [
            ("GET", f"/api/v1/tasks/{task['id']}"), ("POST", f"/api/v1/tasks/{task['id']}/cancel"),
            ("GET", f"/api/v1/tasks/{task['id']}/webhook-deliveries"),
            ("GET", f"/api/v1/files/{upload['id']}"), ("DELETE", f"/api/v1/files/{upload['id']}"),
            ("GET", f"/api/v1/files/{output_id}"), ("DELETE", f"/api/v1/files/{output_id}"),
        ]
        for method, path in probes:
            foreign = await client.request(method, path, headers=stranger.headers)
            missing = await client.request(method, path.replace(task["id"], "task_x").replace(upload["id"], "file_x")
                                           .replace(output_id, "file_y"), headers=stranger.headers)
            assert _shape(foreign) == _shape(missing) == (404, "not_found"), (method, path, foreign.text)
        listed_tasks = (await client.get("/api/v1/tasks", headers=stranger.headers)).json()["data"]
        listed_files = (await client.get("/api/v1/files", headers=stranger.headers)).json()["data"]
        reference = {"url": upload["url"], "kind": "image", "name": "a.png", "mimeType": "image/png"}
        borrowed = await create(client, stranger, model="qwen-image", params={"referenceMediaItems": [reference]})
        still_there = await client.get(f"/api/v1/files/{upload['id']}", headers=owner.headers)
    assert listed_tasks == [] and listed_files == []
    assert borrowed.status_code == 422  # another account's file is no reference for this one
    assert still_there.status_code == 200  # the stranger's DELETE changed nothing


async def test_no_column_anywhere_holds_an_api_key(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps()
    who: Customer = await new_customer(deps)
    secret_part = who.api_key.split("_", 1)[1]
    async with deps.db.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        dumped = []
        for table in tables:
            rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).all()
            dumped += [str(value) for row in rows for value in row]
    everything = "\n".join(dumped)
    assert who.api_key not in everything and secret_part not in everything
    assert secret_part[:20] not in everything  # not even most of it


async def test_a_huge_create_body_is_refused_before_it_is_read_whole(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    sent = 0

    async def endless() -> Any:
        nonlocal sent
        yield b'{"model": "qwen-image", "prompt": "'
        for _ in range(10_000):  # 640 MiB if it were all read
            sent += 65536
            yield b"a" * 65536

    async with serve(deps) as client:
        who = await new_customer(deps)
        declared = await client.post("/api/v1/tasks", content=b"x" * 10, headers={
            **who.headers, "Content-Type": "application/json", "Content-Length": str(2 * 1024 * 1024)})
        streamed = await client.post("/api/v1/tasks", content=endless(),
                                     headers={**who.headers, "Content-Type": "application/json"})
    assert _shape(declared) == (413, "payload_too_large")
    assert _shape(streamed) == (413, "payload_too_large")
    assert sent < 4 * 1024 * 1024  # the server stopped reading right after its 1 MiB cap


async def test_prompt_limits_count_code_points_thai_combining_marks_included(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    thai = ("กั" * 2501)  # 5,002 code points, 2,501 user-perceived characters
    async with serve(deps) as client:
        who = await new_customer(deps)
        for model in ("qwen-image", "google-imagen4", "grok-imagine"):
            over = await create(client, who, model=model, prompt=thai[:5001])
            at_limit = await create(client, who, model=model, prompt=thai[:5000])
            assert _shape(over) == (422, "validation_failed"), model
            assert [d["field"] for d in over.json()["error"]["details"]] == ["prompt"]
            assert at_limit.status_code == 202, (model, at_limit.text)


async def test_a_401_names_the_bearer_scheme(make_deps: Callable[..., Any]) -> None:
    """RFC 6750 §3: every 401 carries ``WWW-Authenticate: Bearer``; a key that was sent and is
    not good says ``error="invalid_token"``. The same on the compatible doors."""
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        missing = [await client.get("/api/v1/tasks"), await client.post("/v1/images/generations", json={}),
                   await client.post("/api/v1/image/generation", json={})]
        wrong = await client.get("/api/v1/account", headers={"Authorization": "Bearer sk-sf_" + "x" * 43})
    for answer in missing:
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == 'Bearer realm="sfumato"'
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="sfumato", error="invalid_token"'

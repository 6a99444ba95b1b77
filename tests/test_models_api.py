"""``/api/v1/models`` over HTTP, operators' model files end to end, and the 422 of a bad task body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Customer, new_customer, serve
from tests.helpers import create, wait_for_task
from tests.test_catalog_spec import IMAGE_MIME_TYPES, NEW_MODEL, SEED_PAGES, TEN_MB, write_model

MODEL_IDS = list(SEED_PAGES)


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    payload: dict[str, Any] = response.json()
    assert set(payload) == {"error", "request_id"}
    assert set(payload["error"]) == {"code", "message", "details"}
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]
    assert isinstance(payload["error"]["details"], list)
    assert payload["request_id"].startswith("req_")
    return payload


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-not-a-key"}], ids=["no-key", "bad-key"])
async def test_list_models_is_public_and_lists_the_four(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get("/api/v1/models", headers=headers)
    assert response.status_code == 200, response.text
    listed = response.json()["data"]
    assert sorted(m["id"] for m in listed) == sorted(MODEL_IDS)
    assert {m["id"]: m["base_credits"] for m in listed} == {m: p["base_credits"] for m, p in SEED_PAGES.items()}
    assert all(m["object"] == "model" for m in listed)


@pytest.mark.parametrize("model_id", MODEL_IDS)
async def test_get_model_is_the_machine_readable_page(client: httpx.AsyncClient, model_id: str) -> None:
    response = await client.get(f"/api/v1/models/{model_id}")
    assert response.status_code == 200, response.text
    spec, page = response.json(), SEED_PAGES[model_id]
    assert (spec["id"], spec["name"]) == (model_id, page["name"])
    assert (spec["capability"], spec["billing"]) == ("image", "FIXED")
    assert spec["inputs"] == list(page["inputs"])
    assert spec["files_api"] == page["files_api"]
    assert spec["base_credits"] == page["base_credits"]
    assert spec.get("prompt_max_chars") == page["prompt_max_chars"]
    params = [(p["key"], p["type"], p.get("default"), tuple(p["options"]) if p.get("options") else None)
              for p in spec["params"]]
    assert params == [row[:4] for row in page["params"]]
    if page["max_files"] is None:
        assert spec.get("references") is None
    else:
        refs = spec["references"]
        assert (refs["max_files"], refs["kinds"]) == (page["max_files"], ["image"])
        assert refs["limits"] == [{"kind": "image", "max_bytes": TEN_MB, "mime_types": list(IMAGE_MIME_TYPES)}]
    listed = (await client.get("/api/v1/models")).json()["data"]
    assert next(m for m in listed if m["id"] == model_id) == spec  # list and detail say the same


@pytest.mark.parametrize("model_id", ["gpt-image-1.5", "dall-e-3", "QWEN-IMAGE", "x" * 300])
async def test_unknown_model_is_404_in_the_error_envelope(client: httpx.AsyncClient, model_id: str) -> None:
    payload = assert_envelope(await client.get(f"/api/v1/models/{model_id}"), 404, "not_found")
    assert all(known in payload["error"]["message"] for known in MODEL_IDS)


async def test_a_model_file_in_the_catalog_dir_is_listed_and_runs(make_deps, tmp_path: Path) -> None:
    catalog_dir = tmp_path / "catalog"
    write_model(catalog_dir, NEW_MODEL)
    deps = await make_deps(catalog_dir=catalog_dir)
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        listed = (await client.get("/api/v1/models")).json()["data"]
        assert sorted(m["id"] for m in listed) == sorted([*MODEL_IDS, "acme-sketch"])
        detail = (await client.get("/api/v1/models/acme-sketch")).json()
        assert [p["key"] for p in detail["params"]] == ["style", "aspect_ratio"]

        refused = await create(client, who, model="acme-sketch", params={"style": "oil"})
        assert_envelope(refused, 422, "validation_failed")
        created = await create(client, who, model="acme-sketch", params={"aspect_ratio": "2:1"})
        assert created.status_code == 202, created.text
        assert created.json()["reserved_credits"] == NEW_MODEL["base_credits"]
        task = await wait_for_task(client, who, created.json()["id"])
        assert task["status"] == "succeeded", task
        assert task["final_credits"] == NEW_MODEL["base_credits"]
        [media] = task["result"]["media"]
        assert (media["width"], media["height"], media["mimeType"]) == (128, 64, "image/png")
        balance = (await client.get("/api/v1/account", headers=who.headers)).json()["balance"]
        assert balance == 10 - NEW_MODEL["base_credits"]


async def _nothing_created(client: httpx.AsyncClient, who: Customer, balance: int) -> None:
    assert (await client.get("/api/v1/tasks", headers=who.headers)).json()["data"] == []
    assert (await client.get("/api/v1/account", headers=who.headers)).json()["balance"] == balance


async def test_create_with_several_bad_fields_lists_each_one(
    client: httpx.AsyncClient, customer: Customer
) -> None:
    before = (await client.get("/api/v1/account", headers=customer.headers)).json()["balance"]
    response = await create(
        client, customer, model="grok-imagine", prompt="x" * 5001, client_request_id="",
        params={"aspect_ratio": "4:3", "enable_pro": False, "size": "1024x1024",
                "referenceMediaItems": [{"url": "https://cdn.example.com/a.gif", "kind": "image",
                                         "mimeType": "image/gif"}]},
    )
    payload = assert_envelope(response, 422, "validation_failed")
    fields = [d["field"] for d in payload["error"]["details"]]
    assert sorted(fields) == sorted([
        "prompt", "client_request_id", "params.aspect_ratio", "params.enable_pro", "params.size",
        "params.referenceMediaItems[0].mimeType",
    ])
    assert all(d["message"] for d in payload["error"]["details"])
    await _nothing_created(client, customer, before)


async def test_a_lone_surrogate_in_the_body_is_a_422_not_a_crash(
    client: httpx.AsyncClient, customer: Customer
) -> None:
    before = (await client.get("/api/v1/account", headers=customer.headers)).json()["balance"]
    raw = b'{"model": "qwen-image", "prompt": "a \\ud800 fox", "client_request_id": "id-\\udfff"}'
    response = await client.post(
        "/api/v1/tasks", content=raw, headers={**customer.headers, "Content-Type": "application/json"}
    )
    payload = assert_envelope(response, 422, "validation_failed")
    assert sorted(d["field"] for d in payload["error"]["details"]) == ["client_request_id", "prompt"]
    await _nothing_created(client, customer, before)


async def test_absent_facts_are_explicit_nulls_and_the_enforced_prompt_limit_is_given(
    client: httpx.AsyncClient,
) -> None:
    gpt = (await client.get("/api/v1/models/gpt-image-1-5")).json()
    assert gpt["prompt_max_chars"] is None and gpt["effective_prompt_max_chars"] == 32000
    imagen = (await client.get("/api/v1/models/google-imagen4")).json()
    assert imagen["references"] is None and imagen["effective_prompt_max_chars"] == 5000

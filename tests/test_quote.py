"""``POST /api/v1/tasks/quote``: the body of a create answered with the model, the params as the
task would keep them and exactly the price a create reserves, or the create's own 422, and
nothing reserved or written either way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sfumato.accounts import service as accounts
from sfumato.db.models import Task
from sfumato.deps import Deps
from tests.conftest import Customer, new_customer, serve
from tests.money import row_counts


async def _books(client: httpx.AsyncClient, who: Customer) -> tuple[int, list[dict[str, Any]]]:
    balance = (await client.get("/api/v1/account", headers=who.headers)).json()["balance"]
    ledger = (await client.get("/api/v1/account/ledger", params={"limit": 100}, headers=who.headers)).json()["data"]
    return balance, ledger


@pytest.mark.parametrize(("body", "params"), [
    ({"model": "qwen-image", "prompt": "a fox"}, {"image_size": "square_hd", "output_format": "png"}),
    ({"model": "qwen-image", "prompt": "a fox", "params": {"image_size": "square"}},
     {"image_size": "square", "output_format": "png"}),
    ({"model": "google-imagen4", "prompt": "a fox", "priority": "low"}, None),
], ids=["defaults", "one-given", "imagen"])
async def test_a_quote_is_what_a_create_would_make_and_reserve_and_reserves_nothing(
    make_deps, body: dict[str, Any], params: dict[str, str] | None
) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        before = await _books(client, who)
        counts = await row_counts(deps)
        quoted = await client.post("/api/v1/tasks/quote", json=body, headers=who.headers)
        assert quoted.status_code == 200, quoted.text
        assert await _books(client, who) == before
        assert await row_counts(deps) == counts
        created = await client.post("/api/v1/tasks", json=body, headers=who.headers)
    assert created.status_code == 202, created.text
    async with deps.db.read() as session:
        task = await session.get(Task, created.json()["id"])
    assert task is not None
    answer = quoted.json()
    assert answer == {"model": body["model"], "params": task.params, "price": task.reserved_credits}
    if params is not None:
        assert answer["params"] == params


async def test_a_quote_needs_no_credits_to_answer(deps: Deps) -> None:
    """The price of something the balance cannot cover is still a price (a create would be 402)."""
    poor = await new_customer(deps, credits=0, name="poor")
    async with serve(deps) as client:
        quoted = await client.post("/api/v1/tasks/quote", json={"model": "google-imagen4", "prompt": "x"},
                                   headers=poor.headers)
        created = await client.post("/api/v1/tasks", json={"model": "google-imagen4", "prompt": "x"},
                                    headers=poor.headers)
    assert quoted.status_code == 200 and quoted.json()["price"] == 8
    assert created.status_code == 402


BAD = [
    ({"model": "no-such-model", "prompt": "x"}, {}),
    ({"model": "qwen-image", "prompt": "   ", "params": {"image_size": "huge", "nope": "1"}}, {}),
    ({"prompt": "x", "extra": 1}, {}),
    ([1, 2], {}),
    ({"model": "qwen-image", "prompt": "x", "client_request_id": ""}, {}),
    ({"model": "qwen-image", "prompt": "x", "webhook_url": "http://127.0.0.1/hook"}, {}),
    ({"model": "qwen-image", "prompt": "x"}, {"Cancel-After": "1s"}),
    ({"model": "qwen-image", "prompt": "x", "params": {"referenceMediaItems": [
        {"url": "http://sfumato.test/api/v1/files/file_00000000000000000000000000000000/content"}]}}, {}),
]


@pytest.mark.parametrize(("body", "headers"), BAD, ids=[
    "unknown-model", "bad-params", "no-model", "not-an-object", "empty-client-request-id", "private-webhook",
    "short-deadline", "unknown-reference"])
async def test_a_bad_quote_is_refused_exactly_as_the_create(
    deps: Deps, customer: Customer, body: Any, headers: dict[str, str]
) -> None:
    async with serve(deps) as client:
        before = await _books(client, customer)
        counts = await row_counts(deps)
        quoted = await client.post("/api/v1/tasks/quote", json=body, headers={**customer.headers, **headers})
        created = await client.post("/api/v1/tasks", json=body, headers={**customer.headers, **headers})
        assert await _books(client, customer) == before
    assert await row_counts(deps) == counts
    assert created.status_code == 422, created.text
    assert quoted.status_code == 422, quoted.text
    assert quoted.json()["error"] == created.json()["error"]
    assert quoted.json().keys() == created.json().keys() == {"error", "request_id"}


async def test_a_quote_for_a_file_of_yours_resolves_it_as_a_create_does(deps: Deps, customer: Customer) -> None:
    from tests.test_openapi_fuzz import _image

    async with serve(deps) as client:
        upload = await client.post("/api/v1/files", files={"file": ("ref.png", _image("PNG", 8, 8, (1, 2, 3)))},
                                   headers=customer.headers)
        assert upload.status_code in (200, 201), upload.text
        reference = {"referenceMediaItems": [{"url": upload.json()["url"]}]}
        body = {"model": "qwen-image", "prompt": "x", "params": reference}
        quoted = await client.post("/api/v1/tasks/quote", json=body, headers=customer.headers)
        stranger = await new_customer(deps, name="stranger")
        other = await client.post("/api/v1/tasks/quote", json=body, headers=stranger.headers)
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["params"]["referenceMediaItems"] == [{"url": upload.json()["url"]}]
    assert other.status_code == 422
    assert other.json()["error"]["details"][0]["field"] == "params.referenceMediaItems[0].url"


async def test_quote_is_not_taken_for_a_task_id(deps: Deps, customer: Customer) -> None:
    """The literal path is the quote's alone: GET finds no task of that id, and a 405 there
    names only POST (not the GET of ``/api/v1/tasks/{task_id}``, which the path also matches)."""
    async with serve(deps) as client:
        got = await client.get("/api/v1/tasks/quote", headers=customer.headers)
        options = await client.options("/api/v1/tasks/quote", headers=customer.headers)
        a_task = await client.options("/api/v1/tasks/task_123", headers=customer.headers)
    assert got.status_code == 404 and got.json()["error"]["code"] == "not_found"
    assert options.status_code == 405 and options.headers["Allow"] == "POST"
    assert a_task.status_code == 405 and a_task.headers["Allow"] == "GET"


async def test_a_model_the_key_may_not_use_is_refused_as_the_create_refuses_it(deps: Deps, customer: Customer) -> None:
    async with deps.db.write() as session:
        issued = await accounts.issue_key(session, customer.account_id, deps.clock.now(), models=["qwen-image"])
    limited = {"Authorization": f"Bearer {issued.secret}"}
    body = {"model": "google-imagen4", "prompt": "x"}
    async with serve(deps) as client:
        quoted = await client.post("/api/v1/tasks/quote", json=body, headers=limited)
        created = await client.post("/api/v1/tasks", json=body, headers=limited)
        allowed = await client.post("/api/v1/tasks/quote", json={**body, "model": "qwen-image"}, headers=limited)
    assert created.status_code == quoted.status_code == 403
    assert quoted.json()["error"] == created.json()["error"]
    assert quoted.json()["error"]["code"] == "forbidden"
    assert allowed.status_code == 200 and allowed.json()["price"] == 4

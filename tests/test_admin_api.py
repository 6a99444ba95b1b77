"""The operator's API (``/admin/v1``) over HTTP only, on SQLite and PostgreSQL: a sign-up-to-
refund story, the auth boundaries, a key's model list, rate limit and credit limit (under
concurrency), idempotent grants (under concurrency), disabling, redelivery, and the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sfumato.clock import FrozenClock, iso_ms
from sfumato.deps import Deps
from tests.conftest import Customer, serve
from tests.helpers import together, wait_for_task

ADMIN_KEY = "sk-admin_test-key-for-the-operator"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PRICE = 4  # qwen-image's base credits
FOX = {"model": "qwen-image", "prompt": "a red fox in fresh snow"}
PNG_DATA_URL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAA"
                "AABJRU5ErkJggg==")


@pytest.fixture
async def admin_deps(make_deps: Callable[..., Any]) -> Deps:
    deps: Deps = await make_deps(admin_key=ADMIN_KEY, webhook_allow_private=True)
    return deps


@pytest.fixture
async def api(admin_deps: Deps) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(admin_deps) as client:
        yield client


async def sign_up(api: httpx.AsyncClient, name: str, credits: int = 0, **key: Any) -> tuple[str, Customer]:
    """An account and a key, made over the admin API."""
    made = await api.post("/admin/v1/accounts", json={"name": name, "credits": credits}, headers=ADMIN)
    assert made.status_code == 201, made.text
    account_id = made.json()["id"]
    issued = await api.post(f"/admin/v1/accounts/{account_id}/keys", json=key, headers=ADMIN)
    assert issued.status_code == 201, issued.text
    return account_id, Customer(account_id, issued.json()["key"])


async def test_sign_up_to_refund_over_http(api: httpx.AsyncClient) -> None:
    made = await api.post("/admin/v1/accounts", json={"name": "acme"}, headers=ADMIN)
    assert made.status_code == 201
    account = made.json()
    assert set(account) == {"id", "name", "balance", "disabled", "created_at"}
    assert (account["name"], account["balance"], account["disabled"]) == ("acme", 0, False)
    again = await api.post("/admin/v1/accounts", json={"name": "acme"}, headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert account["id"] in again.json()["error"]["message"]

    issued = await api.post(f"/admin/v1/accounts/{account['id']}/keys", json={"name": "backend"}, headers=ADMIN)
    assert issued.status_code == 201
    key = issued.json()
    assert key["key"].startswith("sk-sf_") and key["key"].endswith(key["last4"])
    listed = (await api.get(f"/admin/v1/accounts/{account['id']}/keys", headers=ADMIN)).json()["data"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]

    paid = {"credits": 100, "idempotency_key": "evt_1", "note": "stripe"}
    first = await api.post(f"/admin/v1/accounts/{account['id']}/grants", json=paid, headers=ADMIN)
    assert first.status_code == 201 and first.json()["balance"] == 100
    retried = await api.post(f"/admin/v1/accounts/{account['id']}/grants", json=paid, headers=ADMIN)
    assert retried.status_code == 200 and retried.json() == first.json()

    customer = Customer(account["id"], key["key"])
    created = await api.post("/api/v1/tasks", json=FOX, headers=customer.headers)
    assert created.status_code == 202, created.text
    task = await wait_for_task(api, customer, created.json()["id"])
    assert task["status"] == "succeeded" and task["final_credits"] == PRICE

    seen = (await api.get(f"/admin/v1/tasks?account={account['id']}", headers=ADMIN)).json()["data"]
    assert [(t["id"], t["account_id"], t["status"]) for t in seen] == [(task["id"], account["id"], "succeeded")]
    refunded = await api.post(f"/admin/v1/tasks/{task['id']}/refund", headers=ADMIN)
    assert refunded.status_code == 201, refunded.text
    assert (refunded.json()["kind"], refunded.json()["amount"], refunded.json()["balance_after"]) == ("refund", 4, 100)
    twice = await api.post(f"/admin/v1/tasks/{task['id']}/refund", headers=ADMIN)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "conflict"

    ledger = (await api.get(f"/admin/v1/accounts/{account['id']}/ledger", headers=ADMIN)).json()["data"]
    assert [(e["kind"], e["amount"]) for e in ledger] == [("refund", 4), ("settle", 0), ("reserve", -4),
                                                           ("grant", 100)]
    assert (await api.get(f"/admin/v1/accounts/{account['id']}", headers=ADMIN)).json()["balance"] == 100

    usage = (await api.get("/admin/v1/usage?group_by=model,account", headers=ADMIN)).json()
    assert usage["data"] == [{"model": "qwen-image", "account_id": account["id"],
                              "tasks": {"queued": 0, "running": 0, "succeeded": 1, "failed": 0, "canceled": 0},
                              "credits_charged": 4, "credits_refunded": 4}]
    csv = await api.get("/admin/v1/usage?group_by=account&format=csv", headers=ADMIN)
    assert csv.headers["content-type"].startswith("text/csv")
    header, row = csv.text.splitlines()
    assert dict(zip(header.split(","), row.split(","), strict=True)) == {
        "account_id": account["id"], "queued": "0", "running": "0", "succeeded": "1", "failed": "0",
        "canceled": "0", "credits_charged": "4", "credits_refunded": "4"}

    audit = (await api.get("/admin/v1/audit", headers=ADMIN)).json()["data"]
    assert [(a["action"], a["target"], a["actor"]) for a in audit] == [
        ("task.refund", task["id"], "admin-key"), ("account.grant", account["id"], "admin-key"),
        ("key.create", key["id"], "admin-key"), ("account.create", account["id"], "admin-key")]
    assert all(a["request_id"].startswith("req_") for a in audit)


async def test_lists_search_and_pages(api: httpx.AsyncClient) -> None:
    ids = [(await sign_up(api, name))[0] for name in ("Alpha Books", "alphabet", "beta")]
    found = (await api.get("/admin/v1/accounts?q=ALPHA", headers=ADMIN)).json()["data"]
    assert [a["id"] for a in found] == [ids[1], ids[0]]
    assert [a["id"] for a in (await api.get(f"/admin/v1/accounts?q={ids[2][:12]}", headers=ADMIN)).json()["data"]
            ] == [ids[2]]
    page = (await api.get("/admin/v1/accounts?limit=2", headers=ADMIN)).json()
    rest = (await api.get(f"/admin/v1/accounts?limit=2&cursor={page['next_cursor']}", headers=ADMIN)).json()
    assert page["has_more"] and not rest["has_more"]
    assert [a["id"] for a in page["data"] + rest["data"]] == ids[::-1]
    audit = (await api.get("/admin/v1/audit?limit=4", headers=ADMIN)).json()
    older = (await api.get(f"/admin/v1/audit?cursor={audit['next_cursor']}", headers=ADMIN)).json()
    assert len(audit["data"]) == 4 and len(older["data"]) == 2 and not older["has_more"]


async def test_auth_boundaries(api: httpx.AsyncClient, admin_deps: Deps) -> None:
    account_id, customer = await sign_up(api, "acme", credits=50)
    assert (await api.get("/admin/v1/accounts", headers=customer.headers)).status_code == 401
    assert (await api.get("/admin/v1/accounts")).status_code == 401
    wrong = await api.get("/admin/v1/accounts", headers={"Authorization": f"Bearer {ADMIN_KEY}x"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert (await api.get("/api/v1/account", headers=ADMIN)).status_code == 401
    assert (await api.post("/api/v1/tasks", json=FOX, headers=ADMIN)).status_code == 401
    assert (await api.post("/v1/images/generations", json=FOX, headers=ADMIN)).status_code == 401

    assert (await api.get("/api/v1/account", headers=customer.headers)).status_code == 200  # now cached
    revoked_key = (await api.post(f"/admin/v1/accounts/{account_id}/keys", json={}, headers=ADMIN)).json()
    other = Customer(account_id, revoked_key["key"])
    assert (await api.get("/api/v1/account", headers=other.headers)).status_code == 200
    gone = await api.delete(f"/admin/v1/keys/{revoked_key['id']}", headers=ADMIN)
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    assert (await api.get("/api/v1/account", headers=other.headers)).status_code == 401

    off = await api.patch(f"/admin/v1/accounts/{account_id}", json={"disabled": True}, headers=ADMIN)
    assert off.status_code == 200 and off.json()["disabled"] is True
    assert (await api.get("/api/v1/account", headers=customer.headers)).status_code == 401
    assert (await api.post("/api/v1/tasks", json=FOX, headers=customer.headers)).status_code == 401
    on = await api.patch(f"/admin/v1/accounts/{account_id}", json={"disabled": False}, headers=ADMIN)
    assert on.json()["disabled"] is False
    assert (await api.get("/api/v1/account", headers=customer.headers)).status_code == 200


async def test_an_expired_key_is_refused(make_deps: Callable[..., Any]) -> None:
    clock = FrozenClock()
    deps = await make_deps(clock=clock, admin_key=ADMIN_KEY)
    async with serve(deps) as api:
        expires = iso_ms(clock.now() + timedelta(minutes=5))
        _, customer = await sign_up(api, "acme", credits=50, expires_at=expires)
        assert (await api.get("/api/v1/account", headers=customer.headers)).status_code == 200
        clock.advance(minutes=5)
        refused = await api.get("/api/v1/account", headers=customer.headers)
        assert refused.status_code == 401 and "expired" in refused.json()["error"]["message"]
        keys = (await api.get(f"/admin/v1/accounts/{customer.account_id}/keys", headers=ADMIN)).json()["data"]
        assert keys[0]["expires_at"] == expires


async def test_a_key_limited_to_models_is_forbidden_the_others(api: httpx.AsyncClient) -> None:
    _, customer = await sign_up(api, "acme", credits=50, models=["qwen-image"])
    assert (await api.post("/api/v1/tasks", json=FOX, headers=customer.headers)).status_code == 202
    other = {"model": "gpt-image-1-5", "prompt": "a fox"}
    refused = await api.post("/api/v1/tasks", json=other, headers=customer.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden" and refused.json()["error"]["details"][0]["field"] == "model"
    replayed = await api.post("/api/v1/tasks", json={**other, "client_request_id": "r1"}, headers=customer.headers)
    assert replayed.status_code == 403  # the ORM's path too
    door = await api.post("/v1/images/generations", json={"model": "gpt-image-1.5", "prompt": "a fox"},
                          headers=customer.headers)
    assert door.status_code == 403 and door.json()["error"]["code"] == "forbidden"
    edit = await api.post("/api/v1/image/generation", headers=customer.headers, json={
        "model": "gpt-image-1.5", "prompt": "a fox", "images": [{"image_url": PNG_DATA_URL}]})
    assert edit.status_code == 403 and edit.json()["error"] == "forbidden", edit.text
    unknown = await api.post(f"/admin/v1/accounts/{customer.account_id}/keys", json={"models": ["nope"]},
                             headers=ADMIN)
    assert unknown.status_code == 422


async def test_the_image_doors_keep_within_a_keys_budget(api: httpx.AsyncClient) -> None:
    """The OpenAI-compatible and image-edit doors pass the key's limits like the task routes."""
    _, customer = await sign_up(api, "acme", credits=100, credit_limit="4/day")
    body = {"model": "gpt-image-1.5", "prompt": "a fox"}
    assert (await api.post("/v1/images/generations", json=body, headers=customer.headers)).status_code == 200
    over = await api.post("/v1/images/generations", json=body, headers=customer.headers)
    assert over.status_code == 402 and over.json()["error"]["code"] == "key_budget_exceeded", over.text
    edit = await api.post("/api/v1/image/generation", headers=customer.headers,
                          json={**body, "images": [{"image_url": PNG_DATA_URL}]})
    assert edit.status_code == 402 and edit.json()["error"] == "key_budget_exceeded", edit.text


async def test_a_keys_rate_limit_overrides_the_default(api: httpx.AsyncClient) -> None:
    _, slow = await sign_up(api, "slow", credits=100, rate_limit="2/minute")
    _, fast = await sign_up(api, "fast", credits=100)
    codes = [(await api.post("/api/v1/tasks", json=FOX, headers=slow.headers)).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert (await api.post("/api/v1/tasks", json=FOX, headers=fast.headers)).status_code == 202


async def test_racing_creates_never_overspend_a_keys_credit_limit(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(admin_key=ADMIN_KEY, run_worker=False)
    async with serve(deps) as api:
        _, customer = await sign_up(api, "acme", credits=1000, credit_limit="30/day")
        bodies = [FOX if i % 2 else {**FOX, "client_request_id": f"c{i}"} for i in range(20)]  # both create paths
        answers = await together(*[lambda body=body: api.post("/api/v1/tasks", json=body, headers=customer.headers)
                                   for body in bodies])
        codes = sorted(a.status_code for a in answers)
        assert codes == [202] * (30 // PRICE) + [402] * (20 - 30 // PRICE), codes
        assert {a.json()["error"]["code"] for a in answers if a.status_code == 402} == {"key_budget_exceeded"}
        account = (await api.get("/api/v1/account", headers=customer.headers)).json()
        assert account["balance"] == 1000 - PRICE * (30 // PRICE)

        # Given back is budget back: a canceled task's credits may be spent again.
        first = next(a.json()["id"] for a in answers if a.status_code == 202)
        assert (await api.post(f"/api/v1/tasks/{first}/cancel", headers=customer.headers)).status_code == 200
        assert (await api.post("/api/v1/tasks", json=FOX, headers=customer.headers)).status_code == 202
        assert (await api.post("/api/v1/tasks", json=FOX, headers=customer.headers)).status_code == 402
        _, unlimited = await sign_up(api, "other", credits=1000)  # another key, another budget
        assert (await api.post("/api/v1/tasks", json=FOX, headers=unlimited.headers)).status_code == 202


async def test_racing_identical_grants_grant_once(api: httpx.AsyncClient) -> None:
    account_id, _ = await sign_up(api, "acme")
    grant = {"credits": 25, "idempotency_key": "evt_race"}
    answers = await together(*[lambda: api.post(f"/admin/v1/accounts/{account_id}/grants", json=grant,
                                                headers=ADMIN) for _ in range(10)])
    assert sorted(a.status_code for a in answers) == [200] * 9 + [201]
    assert len({a.json()["entry_id"] for a in answers}) == 1
    assert (await api.get(f"/admin/v1/accounts/{account_id}", headers=ADMIN)).json()["balance"] == 25
    other_amount = await api.post(f"/admin/v1/accounts/{account_id}/grants",
                                  json={**grant, "credits": 30}, headers=ADMIN)
    assert other_amount.status_code == 409 and other_amount.json()["error"]["code"] == "idempotency_conflict"
    grants = [a for a in (await api.get("/admin/v1/audit", headers=ADMIN)).json()["data"]
              if a["action"] == "account.grant"]
    assert len(grants) == 1


async def test_a_debit_goes_down_to_zero_at_most(api: httpx.AsyncClient) -> None:
    account_id, _ = await sign_up(api, "acme", credits=10)
    url = f"/admin/v1/accounts/{account_id}/grants"
    too_much = await api.post(url, json={"credits": -11, "idempotency_key": "d1"}, headers=ADMIN)
    assert too_much.status_code == 409 and "below zero" in too_much.json()["error"]["message"]
    debited = await api.post(url, json={"credits": -10, "idempotency_key": "d2", "note": "chargeback"},
                             headers=ADMIN)
    assert debited.status_code == 201 and debited.json()["balance"] == 0
    assert (await api.post(url, json={"credits": 0, "idempotency_key": "d3"}, headers=ADMIN)).status_code == 422


async def test_disabling_cancels_and_refunds_queued_tasks(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(admin_key=ADMIN_KEY, run_worker=False)
    async with serve(deps) as api:
        account_id, customer = await sign_up(api, "acme", credits=20)
        queued = [(await api.post("/api/v1/tasks", json=FOX, headers=customer.headers)).json()["id"] for _ in range(3)]
        off = await api.patch(f"/admin/v1/accounts/{account_id}", json={"disabled": True, "name": "acme (closed)"},
                              headers=ADMIN)
        assert off.status_code == 200
        assert sorted(off.json()["canceled_tasks"]) == sorted(queued) and off.json()["name"] == "acme (closed)"
        assert off.json()["balance"] == 20
        tasks = (await api.get(f"/admin/v1/tasks?account={account_id}&status=canceled", headers=ADMIN)).json()["data"]
        assert {t["error"]["code"] for t in tasks} == {"account_disabled"} and len(tasks) == 3


async def test_redeliver_resets_a_tasks_webhook(api: httpx.AsyncClient) -> None:
    _, customer = await sign_up(api, "acme", credits=20)
    hook = await api.put("/api/v1/account/webhook", json={"url": "http://127.0.0.1:9/hook"}, headers=customer.headers)
    assert hook.status_code == 200, hook.text
    task = (await api.post("/api/v1/tasks", json=FOX, headers=customer.headers)).json()
    assert (await api.post(f"/admin/v1/tasks/{task['id']}/webhook-deliveries/redeliver",
                           headers=ADMIN)).status_code in (202, 409)  # 409 while it still runs
    await wait_for_task(api, customer, task["id"])
    again = await api.post(f"/admin/v1/tasks/{task['id']}/webhook-deliveries/redeliver", headers=ADMIN)
    assert again.status_code == 202, again.text
    assert (again.json()["status"], again.json()["attempts"], again.json()["event_type"]) == (
        "pending", 0, "task.succeeded")
    assert (await api.post("/admin/v1/tasks/task_nope/webhook-deliveries/redeliver", headers=ADMIN)).status_code == 404


async def test_providers_show_each_route(api: httpx.AsyncClient) -> None:
    answer = await api.get("/admin/v1/providers", headers=ADMIN)
    assert answer.status_code == 200
    rows = answer.json()["data"]
    assert rows and {"model", "route", "provider", "circuit", "attempts", "recent_failures"} <= set(rows[0])

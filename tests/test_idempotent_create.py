"""``client_request_id`` (spec §6): one task per id and body, also when requests race."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx

from sfumato.billing import ledger
from sfumato.clock import FrozenClock
from tests.conftest import Customer, new_customer, serve
from tests.money import books

BODY = {"model": "qwen-image", "prompt": "a fox", "params": {"image_size": "square"}, "client_request_id": "order-1"}


async def _post(client: httpx.AsyncClient, who: Customer, raw: bytes) -> httpx.Response:
    return await client.post("/api/v1/tasks", content=raw, headers={**who.headers, "Content-Type": "application/json"})


async def test_replays_return_the_first_task_and_reserve_once(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        first = await _post(client, who, json.dumps(BODY).encode())
        again = [await _post(client, who, json.dumps(BODY).encode()) for _ in range(9)]
        reordered = {"client_request_id": "order-1", "params": {"image_size": "square"}, "prompt": "a fox",
                     "model": "qwen-image"}
        pretty = await _post(client, who, json.dumps(reordered, indent=4).encode())
        with_default = await _post(client, who, json.dumps(
            {**BODY, "params": {"image_size": "square", "output_format": "png"}}).encode())
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    for replay in [*again, pretty, with_default]:
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == first.json()["id"]
    assert await books(deps, who.account_id) == {"balance": 96, "kinds": Counter(grant=1, reserve=1), "tasks": 1}


async def test_same_id_different_body_is_a_conflict_that_writes_nothing(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        await _post(client, who, json.dumps(BODY).encode())
        for changed in ({**BODY, "prompt": "a wolf"}, {**BODY, "model": "grok-imagine", "params": {}},
                        {**BODY, "params": {"image_size": "square_hd"}}):
            conflict = await _post(client, who, json.dumps(changed).encode())
            assert conflict.status_code == 409
            assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert await books(deps, who.account_id) == {"balance": 96, "kinds": Counter(grant=1, reserve=1), "tasks": 1}


async def test_concurrent_duplicates_make_one_task(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=1000)
    raw = json.dumps(BODY).encode()
    async with serve(deps) as client:
        gate = asyncio.Event()

        async def one() -> httpx.Response:
            await gate.wait()
            return await _post(client, who, raw)

        pending = [asyncio.create_task(one()) for _ in range(30)]
        await asyncio.sleep(0)
        gate.set()
        responses = await asyncio.gather(*pending)
    assert Counter(r.status_code for r in responses) == {202: 1, 200: 29}
    assert len({r.json()["id"] for r in responses}) == 1
    assert await books(deps, who.account_id) == {"balance": 996, "kinds": Counter(grant=1, reserve=1), "tasks": 1}


async def test_concurrent_mixed_bodies_make_one_task_and_the_losers_conflict(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=1000)
    body_a, body_b = json.dumps(BODY).encode(), json.dumps({**BODY, "prompt": "a wolf"}).encode()
    async with serve(deps) as client:
        gate = asyncio.Event()

        async def one(raw: bytes) -> tuple[bytes, httpx.Response]:
            await gate.wait()
            return raw, await _post(client, who, raw)

        pending = [asyncio.create_task(one(body_a if i % 2 else body_b)) for i in range(40)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*pending)
    winners = {raw for raw, r in results if r.status_code in (200, 202)}
    assert len(winners) == 1
    losers = [r for raw, r in results if raw not in winners]
    assert len(losers) == 20 and all(r.status_code == 409 for r in losers)
    assert Counter(r.status_code for _, r in results)[202] == 1
    assert (await books(deps, who.account_id))["tasks"] == 1


async def test_ids_are_scoped_to_the_account(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    alice, bob = await new_customer(deps, name="alice"), await new_customer(deps, name="bob")
    async with serve(deps) as client:
        a = await _post(client, alice, json.dumps(BODY).encode())
        b = await _post(client, bob, json.dumps({**BODY, "prompt": "different"}).encode())
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.json()["id"] != b.json()["id"]


async def test_failed_requests_do_not_take_the_id(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=3)
    async with serve(deps) as client:
        invalid = await _post(client, who, json.dumps({**BODY, "params": {"image_size": "huge"}}).encode())
        assert invalid.status_code == 422
        poor = await _post(client, who, json.dumps(BODY).encode())
        assert poor.status_code == 402
        async with deps.db.write() as session:
            await ledger.grant(session, who.account_id, 10, deps.clock.now())
        assert (await _post(client, who, json.dumps(BODY).encode())).status_code == 202


async def test_an_id_is_remembered_for_the_window_only(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, idempotency_window_hours=24, auth_cache_seconds=0)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        first = (await _post(client, who, json.dumps(BODY).encode())).json()["id"]
        clock.advance(hours=23, minutes=59)
        inside = await _post(client, who, json.dumps({**BODY, "prompt": "changed"}).encode())
        assert inside.status_code == 409
        same = await _post(client, who, json.dumps(BODY).encode())
        assert (same.status_code, same.json()["id"]) == (200, first)
        clock.advance(minutes=2)
        after = await _post(client, who, json.dumps({**BODY, "prompt": "changed"}).encode())
        assert after.status_code == 202 and after.json()["id"] != first

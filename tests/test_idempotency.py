"""``client_request_id`` (spec §6, reliability §1): the same id and body give back the first task
and reserve once, also when the requests race; a different body is ``idempotency_conflict``; a
refused request stores nothing; ids are per account and remembered for the window only."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from sfumato.billing import ledger
from sfumato.clock import FrozenClock
from sfumato.db.models import IdempotencyKey
from sfumato.tasks.service import purge_idempotency_keys
from tests.conftest import Customer, new_customer, serve
from tests.helpers import together
from tests.money import audit, row_counts

BODY = {"model": "qwen-image", "prompt": "a fox", "params": {"image_size": "square"}, "client_request_id": "order-1"}
RAW = json.dumps(BODY).encode()


async def _post(client: httpx.AsyncClient, who: Customer, raw: bytes) -> httpx.Response:
    """Send the body byte for byte, so formatting is under the test's control."""
    return await client.post("/api/v1/tasks", content=raw, headers={**who.headers, "Content-Type": "application/json"})


def _no_server_errors(responses: list[httpx.Response]) -> None:
    assert [r.status_code for r in responses if r.status_code >= 500] == []


async def test_ten_sequential_sends_make_one_task_and_replay_it(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        responses = [await _post(client, who, RAW) for _ in range(10)]
    first, replays = responses[0], responses[1:]
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    for replay in replays:
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()  # the same task, unchanged (nothing ran it)
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds, books.statuses) == (96, Counter(grant=1, reserve=1), Counter(queued=1))


@pytest.mark.parametrize("raw", [
    b'{"client_request_id":"order-1","params":{"image_size":"square"},"prompt":"a fox","model":"qwen-image"}',
    b'{\n  "model" : "qwen-image",\n\t"prompt":"a fox" ,\n  "params": { "image_size" : "square" },'
    b'\r\n  "client_request_id": "order-1"\n}\n',
    b'{"model":"qwen-image","prompt":"a \\u0066ox","params":{"image_size":"square"},"client_request_id":"order-1"}',
    b'{"model":"qwen-image","prompt":"a fox","client_request_id":"order-1",'
    b'"params":{"output_format":"png","image_size":"square"}}',
], ids=["key-order", "whitespace", "escapes", "explicit-default"])
async def test_formatting_of_the_same_request_does_not_matter(make_deps, raw: bytes) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        first = await _post(client, who, RAW)
        again = await _post(client, who, raw)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert (await audit(deps, who.account_id)).kinds == Counter(grant=1, reserve=1)


@pytest.mark.parametrize("changed", [
    {**BODY, "prompt": "a wolf"},
    {**BODY, "prompt": "a fox "},
    {**BODY, "model": "grok-imagine", "params": {}},
    {**BODY, "params": {"image_size": "square_hd"}},
    {**BODY, "params": {"image_size": "square", "output_format": "jpeg"}},
], ids=["prompt", "prompt-space", "model", "param-value", "extra-param"])
async def test_the_same_id_with_another_body_conflicts_and_writes_nothing(make_deps, changed: dict) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        first = await _post(client, who, RAW)
        before = await row_counts(deps)
        conflict = await _post(client, who, json.dumps(changed).encode())
        still = await _post(client, who, RAW)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert [d["field"] for d in conflict.json()["error"]["details"]] == ["client_request_id"]
    assert await row_counts(deps) == before
    assert (still.status_code, still.json()["id"]) == (200, first.json()["id"])
    assert (await audit(deps, who.account_id)).balance == 96


async def test_thirty_concurrent_sends_make_one_task(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=1000)
    async with serve(deps) as client:
        responses = await together(*[lambda: _post(client, who, RAW)] * 30)
    _no_server_errors(responses)
    assert Counter(r.status_code for r in responses) == {202: 1, 200: 29}
    assert len({r.json()["id"] for r in responses}) == 1
    assert all(r.headers.get("Idempotent-Replayed") == "true" for r in responses if r.status_code == 200)
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds, books.statuses) == (996, Counter(grant=1, reserve=1), Counter(queued=1))


async def test_a_retry_storm_for_a_paid_request_never_sees_insufficient_credits(make_deps) -> None:
    """The balance covers exactly one task: the duplicates are answered from the first, not
    refused for the credits the first one already holds."""
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=4)
    async with serve(deps) as client:
        responses = await together(*[lambda: _post(client, who, RAW)] * 30)
    assert Counter(r.status_code for r in responses) == {202: 1, 200: 29}
    assert len({r.json()["id"] for r in responses}) == 1
    assert (await audit(deps, who.account_id)).balance == 0


async def test_two_bodies_racing_for_one_id_make_one_task_and_the_losers_conflict(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=1000)
    body_a, body_b = RAW, json.dumps({**BODY, "prompt": "a wolf"}).encode()
    sends = [body_a, body_b] * 20
    async with serve(deps) as client:
        responses = await together(*[lambda raw=raw: _post(client, who, raw) for raw in sends])
    _no_server_errors(responses)
    won = {raw for raw, r in zip(sends, responses, strict=True) if r.status_code in (200, 202)}
    assert len(won) == 1
    [winner] = won
    for raw, response in zip(sends, responses, strict=True):
        if raw == winner:
            assert response.status_code in (200, 202)
        else:
            assert response.status_code == 409
            assert response.json()["error"]["code"] == "idempotency_conflict"
    assert Counter(r.status_code for r in responses) == {202: 1, 200: 19, 409: 20}
    assert len({r.json()["id"] for r in responses if r.status_code != 409}) == 1
    books = await audit(deps, who.account_id)
    assert books.kinds == Counter(grant=1, reserve=1) and books.statuses == Counter(queued=1)


async def test_two_accounts_with_one_id_get_two_independent_tasks(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    alice = await new_customer(deps, credits=100, name="alice")
    bob = await new_customer(deps, credits=100, name="bob")
    async with serve(deps) as client:
        a = await _post(client, alice, RAW)
        b = await _post(client, bob, json.dumps({**BODY, "prompt": "something else"}).encode())
        b_again = await _post(client, bob, json.dumps({**BODY, "prompt": "something else"}).encode())
        peek = await client.get(f"/api/v1/tasks/{a.json()['id']}", headers=bob.headers)
    assert (a.status_code, b.status_code, b_again.status_code) == (202, 202, 200)
    assert a.json()["id"] != b.json()["id"] == b_again.json()["id"]
    assert peek.status_code == 404
    for who in (alice, bob):
        books = await audit(deps, who.account_id)
        assert (books.balance, books.kinds) == (96, Counter(grant=1, reserve=1))


async def test_a_body_refused_by_validation_does_not_take_the_id(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        invalid = await _post(client, who, json.dumps({**BODY, "params": {"image_size": "huge"}}).encode())
        assert invalid.status_code == 422
        assert invalid.json()["error"]["code"] == "validation_failed"
        assert await row_counts(deps) == (0, 1, 0)
        valid = await _post(client, who, RAW)
    assert valid.status_code == 202


@pytest.mark.parametrize(("key", "accepted"), [("k" * 255, True), ("k" * 256, False), ("", False),
                                               ("order\n1", False)])
async def test_the_id_itself_is_checked_before_it_is_stored(make_deps, key: str, accepted: bool) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        response = await _post(client, who, json.dumps({**BODY, "client_request_id": key}).encode())
    if accepted:
        assert response.status_code == 202
    else:
        assert response.status_code == 422
        assert [d["field"] for d in response.json()["error"]["details"]] == ["client_request_id"]
        assert await row_counts(deps) == (0, 1, 0)


async def test_a_request_refused_for_credits_can_be_retried_after_a_top_up(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=3)
    async with serve(deps) as client:
        poor = await _post(client, who, RAW)
        assert (poor.status_code, poor.json()["error"]["code"]) == (402, "insufficient_credits")
        assert await row_counts(deps) == (0, 1, 0)
        async with deps.db.write() as session:
            await ledger.grant(session, who.account_id, 10, deps.clock.now())
        paid = await _post(client, who, RAW)
        replay = await _post(client, who, RAW)
    assert paid.status_code == 202
    assert (replay.status_code, replay.json()["id"]) == (200, paid.json()["id"])
    assert (await audit(deps, who.account_id)).balance == 13 - 4


async def test_a_canceled_task_is_still_what_its_id_replays(make_deps) -> None:
    """Canceling refunds the task but does not free its id: a retry must not run (and charge) it
    again."""
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        first = (await _post(client, who, RAW)).json()
        await client.post(f"/api/v1/tasks/{first['id']}/cancel", headers=who.headers)
        replay = await _post(client, who, RAW)
    assert (replay.status_code, replay.json()["id"], replay.json()["status"]) == (200, first["id"], "canceled")
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (100, Counter(grant=1, reserve=1, release=1))


async def test_an_id_is_remembered_for_the_window_and_then_starts_afresh(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, idempotency_window_hours=24, auth_cache_seconds=0)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        first = (await _post(client, who, RAW)).json()["id"]
        clock.advance(hours=24, seconds=-1)
        inside = await _post(client, who, RAW)
        conflict = await _post(client, who, json.dumps({**BODY, "prompt": "a wolf"}).encode())
        clock.advance(seconds=2)
        after = await _post(client, who, RAW)
        after_again = await _post(client, who, RAW)
    assert (inside.status_code, inside.json()["id"]) == (200, first)
    assert conflict.status_code == 409
    assert after.status_code == 202 and after.json()["id"] != first
    assert (after_again.status_code, after_again.json()["id"]) == (200, after.json()["id"])
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (92, Counter(grant=1, reserve=2))


async def test_racing_reuses_of_an_expired_id_make_one_new_task(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, idempotency_window_hours=1, auth_cache_seconds=0)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        first = (await _post(client, who, RAW)).json()["id"]
        clock.advance(hours=1, seconds=1)
        responses = await together(*[lambda: _post(client, who, RAW)] * 20)
    _no_server_errors(responses)
    assert Counter(r.status_code for r in responses) == {202: 1, 200: 19}
    [second] = {r.json()["id"] for r in responses}
    assert second != first
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (92, Counter(grant=1, reserve=2))


async def test_old_ids_are_purged_in_batches_and_live_ones_kept(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, idempotency_window_hours=1, auth_cache_seconds=0)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        for n in range(5):
            await _post(client, who, json.dumps({**BODY, "client_request_id": f"old-{n}"}).encode())
        clock.advance(hours=1, seconds=1)
        await _post(client, who, json.dumps({**BODY, "client_request_id": "new"}).encode())
    window = timedelta(hours=1)
    purged = []
    for _ in range(4):
        async with deps.db.write() as session:
            purged.append(await purge_idempotency_keys(session, clock.now(), window, batch=2))
    assert purged == [2, 2, 1, 0]
    async with deps.db.read() as session:
        assert list(await session.scalars(select(IdempotencyKey.key))) == ["new"]
    assert (await row_counts(deps))[0] == 6  # purging forgets ids, never tasks

"""Webhooks: signed by the Standard Webhooks scheme (verified here with the ``standardwebhooks``
library), queued with the task's end, retried on a schedule, logged, never blocking the task,
and never aimed at private addresses unless allowed."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sfumato.clock import FrozenClock
from sfumato.deps import Deps
from sfumato.webhooks import urls
from sfumato.webhooks.dispatcher import SCHEDULE, Dispatcher
from tests.conftest import Customer, new_customer, serve
from tests.helpers import create, wait_for_task
from tests.money import audit
from tests.upstreams.server import FakeServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


class Receiver(FakeServer):
    """A webhook endpoint on loopback that keeps what it receives (faults injectable)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        super().__init__()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        self.received.append(Received(dict(request.headers), await request.body()))
        return Response("ok")

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hooks"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


async def _secret(client: httpx.AsyncClient, who: Customer) -> str:
    answer = await client.get("/api/v1/account/webhook", headers=who.headers)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["secret"])


def _verified(secret: str, received: Received) -> dict[str, Any]:
    """What a receiver does: verify with the library, or raise."""
    payload = Webhook(secret).verify(received.body, received.headers)
    assert isinstance(payload, dict)
    return payload


async def test_a_task_end_is_posted_signed_and_logged(
    make_deps: Callable[..., Any], receiver: Receiver
) -> None:
    deps = await make_deps(webhook_allow_private=True, webhook_poll_seconds=0.05, sandbox_latency_ms="20")
    async with serve(deps) as client:
        who = await new_customer(deps)
        put = await client.put("/api/v1/account/webhook", json={"url": receiver.hook_url}, headers=who.headers)
        assert put.status_code == 200 and put.json()["secret"].startswith("whsec_")
        created = (await create(client, who, model="qwen-image")).json()
        task = await wait_for_task(client, who, created["id"])
        for _ in range(200):  # the receiver has it before the dispatcher has written down its answer
            log = (await client.get(f"/api/v1/tasks/{task['id']}/webhook-deliveries", headers=who.headers)).json()
            if receiver.received and log["data"] and log["data"][0]["status"] != "pending":
                break
            await asyncio.sleep(0.02)
        secret = await _secret(client, who)
    [received] = receiver.received
    payload = _verified(secret, received)
    assert (payload["type"], payload["data"]["id"], payload["data"]["status"]) == (
        "task.succeeded", task["id"], "succeeded")
    assert payload["data"]["result"]["media"][0]["url"].startswith("http")
    assert received.headers["webhook-id"].startswith("msg_")
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 32).verify(received.body, received.headers)  # another secret fails
    [delivery] = log["data"]
    assert (delivery["status"], delivery["attempts"], delivery["event_type"]) == ("delivered", 1, "task.succeeded")
    assert delivery["log"][0]["status_code"] == 200


async def _canceled_task_with_hook(deps: Deps, client: httpx.AsyncClient, who: Customer, url: str) -> str:
    created = await create(client, who, model="qwen-image", webhook_url=url)
    assert created.status_code == 202, created.text
    canceled = await client.post(f"/api/v1/tasks/{created.json()['id']}/cancel", headers=who.headers)
    assert canceled.json()["status"] == "canceled"
    return str(created.json()["id"])


async def test_failed_attempts_are_retried_on_schedule_with_the_same_id(
    make_deps: Callable[..., Any], receiver: Receiver
) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, webhook_allow_private=True)
    dispatcher = Dispatcher(deps)
    async with serve(deps) as client:
        who = await new_customer(deps)
        task_id = await _canceled_task_with_hook(deps, client, who, receiver.hook_url)
        receiver.inject("500", path="/hooks")
        assert await dispatcher.deliver_due() == 1
        assert await dispatcher.deliver_due() == 0  # the retry waits its turn
        clock.advance(seconds=SCHEDULE[0] + 1)
        assert await dispatcher.deliver_due() == 1
        secret = await _secret(client, who)
        log = (await client.get(f"/api/v1/tasks/{task_id}/webhook-deliveries", headers=who.headers)).json()
    await dispatcher.aclose()
    assert len(receiver.received) == 1  # the faulted attempt never reached the app
    assert _verified(secret, receiver.received[0])["type"] == "task.canceled"
    [delivery] = log["data"]
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
    assert [entry.get("status_code") for entry in delivery["log"]] == [500, 200]


async def test_a_receiver_that_never_answers_ok_fails_after_a_day_and_the_task_is_untouched(
    make_deps: Callable[..., Any], receiver: Receiver
) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, webhook_allow_private=True)
    dispatcher = Dispatcher(deps)
    async with serve(deps) as client:
        who = await new_customer(deps, credits=10)
        task_id = await _canceled_task_with_hook(deps, client, who, receiver.hook_url)
        receiver.inject("503", path="/hooks", times=100)
        waited = 0
        for delay in (0, *SCHEDULE):
            clock.advance(seconds=delay)
            waited += delay
            assert await dispatcher.deliver_due() == 1
        clock.advance(seconds=SCHEDULE[-1] * 2)
        assert await dispatcher.deliver_due() == 0
        log = (await client.get(f"/api/v1/tasks/{task_id}/webhook-deliveries", headers=who.headers)).json()
        task = (await client.get(f"/api/v1/tasks/{task_id}", headers=who.headers)).json()
    await dispatcher.aclose()
    assert 24 * 3600 <= waited <= 30 * 3600
    [delivery] = log["data"]
    assert (delivery["status"], delivery["attempts"]) == ("failed", len(SCHEDULE) + 1)
    assert task["status"] == "canceled" and (await audit(deps, who.account_id)).balance == 10


async def test_private_destinations_are_refused_by_default(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps)
        for url in ("http://127.0.0.1:9/hooks", "http://10.1.2.3/x", "http://[::1]/x", "http://169.254.169.254/",
                    "http://localhost:8000/x"):
            answer = await create(client, who, model="qwen-image", webhook_url=url)
            assert answer.status_code == 422, (url, answer.text)
            assert [d["field"] for d in answer.json()["error"]["details"]] == ["webhook_url"]
            put = await client.put("/api/v1/account/webhook", json={"url": url}, headers=who.headers)
            assert put.status_code == 422, url
        for url in ("ftp://example.com/x", "https://user:pw@example.com/x", "not a url", 42):
            answer = await create(client, who, model="qwen-image", webhook_url=url)
            assert answer.status_code == 422, url
        broken = await client.put("/api/v1/account/webhook", content=b"{not json", headers=who.headers)
        assert (broken.status_code, broken.json()["error"]["code"]) == (422, "validation_failed")


async def test_a_name_resolving_to_a_private_address_is_not_connected_to() -> None:
    own = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(own, 80)}
    except OSError:
        pytest.skip(f"this machine's own name {own!r} does not resolve")
    if any(not (a.startswith(("127.", "10.", "192.168.", "172.", "::1", "fe80"))) for a in addresses):
        pytest.skip(f"{own} resolves to a public address here: {addresses}")
    for name in (own, "localhost"):
        with pytest.raises(urls.UrlRefused, match="not public"):
            await urls.resolve(urls.parse(f"http://{name}/x"), allow_private=False)


async def test_deliveries_of_another_accounts_task_are_not_found_and_ids_conflict_on_a_new_url(
    make_deps: Callable[..., Any]
) -> None:
    deps = await make_deps(run_worker=False, webhook_allow_private=True)
    async with serve(deps) as client:
        who, other = await new_customer(deps), await new_customer(deps, name="other")
        first = await create(client, who, model="qwen-image", client_request_id="w1", webhook_url="https://a.example/h")
        again = await create(client, who, model="qwen-image", client_request_id="w1", webhook_url="https://b.example/h")
        same = await create(client, who, model="qwen-image", client_request_id="w1", webhook_url="https://a.example/h")
        foreign = await client.get(f"/api/v1/tasks/{first.json()['id']}/webhook-deliveries", headers=other.headers)
    assert (first.status_code, again.status_code, same.status_code, foreign.status_code) == (202, 409, 200, 404)


async def test_no_url_no_delivery(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps)
        created = (await create(client, who, model="qwen-image")).json()
        await client.post(f"/api/v1/tasks/{created['id']}/cancel", headers=who.headers)
        log = (await client.get(f"/api/v1/tasks/{created['id']}/webhook-deliveries", headers=who.headers)).json()
        settings = (await client.get("/api/v1/account/webhook", headers=who.headers)).json()
    assert log == {"data": []} and settings == {"url": None, "secret": None}
    assert json.dumps(log)

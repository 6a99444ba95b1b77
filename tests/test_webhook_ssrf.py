"""Webhooks never reach an address that is not public, however the URL is written.

A canary listens on 127.0.0.1; a matrix of URL forms aims at it (and at metadata and private
addresses) in every notation: literal IPs, IPv6 forms embedding IPv4, Unicode dots and digits
that IDNA maps to ASCII, schemes, userinfo, percent-encoding, whitespace. Each form is refused
at create (task and account webhook alike); the same forms written straight into the outbox, as
rows made before this check existed would be, are refused at send time and fail at once; names
are resolved once per attempt and the connection goes to the checked address. The canary counts
zero hits throughout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sfumato.db.models import WebhookDelivery
from sfumato.deps import Deps
from sfumato.webhooks import urls
from sfumato.webhooks.dispatcher import Dispatcher
from tests.conftest import new_customer, serve
from tests.helpers import create
from tests.upstreams.server import FakeServer


class Canary(FakeServer):
    """Counts every request that reaches it, whatever the method or path."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.hits: list[tuple[str, str]] = []
        self.redirect_to = redirect_to
        super().__init__()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.hit, methods=["GET", "POST", "PUT"])])

    async def hit(self, request: Request) -> Response:
        self.hits.append((request.headers.get("host", ""), request.url.path))
        if self.redirect_to:
            return RedirectResponse(self.redirect_to, status_code=307)
        return Response("ok")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    async with Canary() as server:
        yield server


def loopback_forms(port: int) -> list[str]:
    """URLs that a lenient parser or resolver takes to 127.0.0.1:port."""
    p = f":{port}"
    hosts = [
        "127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7F000001", "017700000001",
        "0177.0.0.1", "0x7f.0.0.1", "0x7f.1", "127.000.000.001", "0127.0.0.1", "127.0.0.1.", "127.0.0.01",
        "0", "0.0.0.0", "0x0", "localhost", "LOCALHOST", "localhost.", "api.localhost",
        "127\u30020\u30020\u30021",  # ideographic full stop
        "127\uff0e0\uff0e0\uff0e1",  # fullwidth full stop
        "127\uff610\uff610\uff611",  # halfwidth ideographic full stop
        "127\ufe520\ufe520\ufe521",  # small full stop
        "\uff11\uff12\uff17.0.0.1",  # fullwidth digits
        "127.0.0.\u00b9", "\u00b9\u00b2\u2077.\u2070.\u2070.\u00b9",  # superscript digits
        "\u2460\u2461\u2466.\u24ea.\u24ea.\u2460",  # circled digits
        "\U0001d7cf\U0001d7d0\U0001d7d5.0.0.1",  # mathematical bold digits
        "127%2e0%2e0%2e1", "%31%32%37.0.0.1",
        "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]",
        "[64:ff9b::127.0.0.1]", "[64:ff9b::7f00:1]", "[::127.0.0.1]", "[2002:7f00:1::]", "[::1%25lo]",
        "[::]",
    ]
    forms = [f"http://{h}{p}/x" for h in hosts] + [f"https://{h}{p}/x" for h in hosts[:6]]
    forms += [
        f"http://hooks.example.com@127.0.0.1{p}/x", f"http://127.0.0.1{p}@hooks.example.com/x",
        f"http://user:pw@127.0.0.1{p}/x", f"http://hooks.example.com\\@127.0.0.1{p}/x",
        f" http://127.0.0.1{p}/x", f"http://127.0.0.1{p}/x\n", f"http://127.0.0.1 {p}/x", f"http://127.0.0.1\t{p}/x",
        f"ftp://127.0.0.1{p}/x", f"file://127.0.0.1{p}/etc/passwd", "file:///etc/passwd", f"gopher://127.0.0.1{p}/x",
        f"ws://127.0.0.1{p}/x", f"dict://127.0.0.1{p}/", "javascript:alert(1)", f"//127.0.0.1{p}/x",
        f"http:127.0.0.1{p}/x", f"http:/127.0.0.1{p}/x",
    ]
    return forms


INTERNAL_FORMS = [
    "http://169.254.169.254/latest/meta-data/", "http://2852039166/", "http://0xa9fea9fe/", "http://169.254.43518/",
    "http://0251.0376.0251.0376/", "http://169\u3002254\u3002169\u3002254/", "http://[::ffff:169.254.169.254]/",
    "http://[fd00:ec2::254]/", "http://metadata.google.internal.localhost/", "http://10.0.0.1/", "http://0x0a.1/",
    "http://167772161/", "http://192.168.1.1/", "http://172.16.0.1/", "http://100.64.0.1/", "http://192.0.0.8/",
    "http://198.18.0.1/", "http://224.0.0.1/", "http://255.255.255.255/", "http://[fc00::1]/", "http://[fe80::1]/",
    "http://[ff02::1]/", "http://[fec0::1]/", "http://[2001::1]/", "http://[64:ff9b:1::a00:1]/",
    "http://[64:ff9b::10.0.0.1]/", "http://[2002:a9fe:a9fe::]/", "http://[::a9fe:a9fe]/",
]


def test_the_matrix_is_large_and_each_form_is_refused_as_written() -> None:
    forms = loopback_forms(9) + INTERNAL_FORMS
    assert len(forms) >= 60
    for url in forms:
        assert urls.destination_problem(url, allow_private=False) is not None, url


@pytest.mark.parametrize("url", ["https://hooks.example.com/x", "http://8.8.8.8:8080/h", "https://[2001:4860::8888]/",
                                 "https://xn--bcher-kva.example/h?a=1", "https://Hooks.Example.com./x"])
def test_public_urls_are_accepted(url: str) -> None:
    assert urls.destination_problem(url, allow_private=False) is None


async def test_every_form_is_refused_at_create_and_on_the_account(
    make_deps: Callable[..., Any], canary: Canary
) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps)
        for url in loopback_forms(canary.port) + INTERNAL_FORMS:
            created = await create(client, who, model="qwen-image", webhook_url=url)
            assert created.status_code == 422, (url, created.text)
            assert [d["field"] for d in created.json()["error"]["details"]] == ["webhook_url"], url
            put = await client.put("/api/v1/account/webhook", json={"url": url}, headers=who.headers)
            assert put.status_code == 422, (url, put.text)
        balance = (await client.get("/api/v1/account", headers=who.headers)).json()
    assert canary.hits == []
    assert balance["balance"] == 1000  # nothing was reserved for a refused request


async def _outbox(deps: Deps, client: Any, who: Any, found: list[str]) -> list[str]:
    """Deliveries for ``found`` written straight into the outbox of one canceled task."""
    created = await create(client, who, model="qwen-image")
    task_id = created.json()["id"]
    await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=who.headers)
    now = deps.clock.now()
    ids = [f"msg_ssrf{i:04d}" for i in range(len(found))]
    async with deps.db.write() as session:
        session.add_all(WebhookDelivery(
            id=i, account_id=who.account_id, task_id=task_id, event_type="task.canceled", url=url,
            status="pending", attempts=0, next_attempt_at=now - timedelta(seconds=1), log=[], created_at=now)
            for i, url in zip(ids, found, strict=True))
    return ids


async def test_forms_already_in_the_outbox_are_refused_at_send_and_fail_at_once(
    make_deps: Callable[..., Any], canary: Canary
) -> None:
    deps = await make_deps(run_worker=False)
    forms = loopback_forms(canary.port) + INTERNAL_FORMS
    dispatcher = Dispatcher(deps)
    async with serve(deps) as client:
        who = await new_customer(deps)
        await _outbox(deps, client, who, forms)
        while await dispatcher.deliver_due():
            pass
    await dispatcher.aclose()
    async with deps.db.read() as session:
        rows = (await session.scalars(select(WebhookDelivery))).all()
    assert canary.hits == []
    assert len(rows) == len(forms)
    assert {(r.status, r.attempts) for r in rows} == {("failed", 1)}, [(r.url, r.status) for r in rows]
    assert all("error" in r.log[0] for r in rows)


@dataclass
class FakeDns:
    """The edge of the world: DNS. A name here resolves to its answers in turn (several answers
    model a name that changes between lookups); ``calls`` counts the lookups of each."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)

    def answer(self, name: str) -> list[Any]:
        answers = self.answers[name]
        address = answers[min(self.calls[name], len(answers) - 1)]
        self.calls[name] += 1
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, 0))]


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    dns, real = FakeDns(), asyncio.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        return dns.answer(name) if name in dns.answers else await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return dns


async def test_a_name_resolving_to_loopback_is_never_connected_to(
    make_deps: Callable[..., Any], canary: Canary, names: FakeDns
) -> None:
    names.answers["hook.rebind.test"] = ["127.0.0.1"]
    deps = await make_deps(run_worker=False)
    dispatcher = Dispatcher(deps)
    async with serve(deps) as client:
        who = await new_customer(deps)
        url = f"http://hook.rebind.test:{canary.port}/x"
        accepted = await create(client, who, model="qwen-image", webhook_url=url)  # a name: decided at send
        assert accepted.status_code == 202, accepted.text
        await client.post(f"/api/v1/tasks/{accepted.json()['id']}/cancel", headers=who.headers)
        assert await dispatcher.deliver_due() == 1
    await dispatcher.aclose()
    async with deps.db.read() as session:
        [row] = (await session.scalars(select(WebhookDelivery))).all()
    assert canary.hits == []
    assert row.status == "pending" and "not public" in row.log[0]["error"]  # DNS may change: retried


async def test_the_connection_goes_to_the_address_that_was_checked(
    make_deps: Callable[..., Any], canary: Canary, names: FakeDns
) -> None:
    """With private addresses allowed, a name that answers 127.0.0.1 once and something else
    after is connected to at 127.0.0.1: resolved once per attempt, sent to what was resolved,
    with the name as ``Host``. (Without the allowance the same first answer is refused, above.)"""
    names.answers["hook.pinned.test"] = ["127.0.0.1", "192.0.2.1"]
    deps = await make_deps(run_worker=False, webhook_allow_private=True)
    dispatcher = Dispatcher(deps)
    async with serve(deps) as client:
        who = await new_customer(deps)
        created = await create(client, who, model="qwen-image",
                               webhook_url=f"http://hook.pinned.test:{canary.port}/hooks")
        await client.post(f"/api/v1/tasks/{created.json()['id']}/cancel", headers=who.headers)
        assert await dispatcher.deliver_due() == 1
    await dispatcher.aclose()
    assert canary.hits == [(f"hook.pinned.test:{canary.port}", "/hooks")]
    assert names.calls["hook.pinned.test"] == 1


async def test_redirects_are_not_followed(make_deps: Callable[..., Any], canary: Canary) -> None:
    async with Canary(redirect_to=f"{canary.url}/after-redirect") as redirector:
        deps = await make_deps(run_worker=False, webhook_allow_private=True)
        dispatcher = Dispatcher(deps)
        async with serve(deps) as client:
            who = await new_customer(deps)
            created = await create(client, who, model="qwen-image", webhook_url=f"{redirector.url}/hooks")
            await client.post(f"/api/v1/tasks/{created.json()['id']}/cancel", headers=who.headers)
            assert await dispatcher.deliver_due() == 1
        await dispatcher.aclose()
    assert len(redirector.hits) == 1 and canary.hits == []

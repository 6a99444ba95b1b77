"""The HTTP surface: authentication, the error envelope, request ids, limits on bodies and rate."""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from sfumato.accounts import keys
from sfumato.accounts import service as accounts
from sfumato.api import request_schemas as schemas
from sfumato.catalog import validate
from sfumato.catalog.spec import IntegerFormat
from sfumato.clock import FrozenClock
from sfumato.db.models import ApiKey, LedgerEntry, Task
from sfumato.webhooks import urls as webhook_urls
from tests.conftest import Customer, new_customer, serve
from tests.helpers import create


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"].startswith("req_")
    assert response.headers["x-request-id"] == body["request_id"]
    return body


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer sk-not-a-key",
     "Bearer " + keys.PREFIX + "A" * 46],
)
async def test_missing_or_bad_key_is_401(client: httpx.AsyncClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    for method, path in [("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks"),
                         ("GET", "/api/v1/tasks/task_x"), ("POST", "/api/v1/tasks/task_x/cancel"),
                         ("GET", "/api/v1/account")]:
        response = await client.request(method, path, headers=headers, json={"model": "qwen-image", "prompt": "x"})
        assert_envelope(response, 401, "unauthorized")


async def test_well_formed_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/account", headers={"Authorization": f"Bearer {keys.generate()}"})
    assert_envelope(response, 401, "unauthorized")


async def test_malformed_key_is_refused_without_touching_the_database(make_deps) -> None:
    deps = await make_deps(run_worker=False)  # no worker polling the database meanwhile
    statements: list[str] = []

    def count(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    good = keys.generate()
    tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    assert not keys.well_formed(tampered)
    async with serve(deps) as client:
        event.listen(deps.db.engine.sync_engine, "before_cursor_execute", count)
        try:
            for key in ("sk-nope", tampered):
                response = await client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {key}"})
                assert response.status_code == 401
        finally:
            event.remove(deps.db.engine.sync_engine, "before_cursor_execute", count)
    assert statements == []


async def test_revoked_key_is_refused_once_the_auth_cache_expires(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(clock=clock, auth_cache_seconds=5, run_worker=False)
    who = await new_customer(deps)
    async with serve(deps) as client:
        assert (await client.get("/api/v1/account", headers=who.headers)).status_code == 200
        async with deps.db.write() as session:
            [key] = await accounts.list_keys(session, who.account_id)
            await accounts.revoke_key(session, key.id, deps.clock.now())
        clock.advance(seconds=4)
        assert (await client.get("/api/v1/account", headers=who.headers)).status_code == 200  # cached
        clock.advance(seconds=1.5)
        assert_envelope(await client.get("/api/v1/account", headers=who.headers), 401, "unauthorized")


async def test_without_the_auth_cache_a_revoked_key_is_refused_at_once(make_deps) -> None:
    deps = await make_deps(auth_cache_seconds=0, run_worker=False)
    who = await new_customer(deps)
    async with serve(deps) as client:
        assert (await client.get("/api/v1/account", headers=who.headers)).status_code == 200
        async with deps.db.write() as session:
            [key] = await accounts.list_keys(session, who.account_id)
            await accounts.revoke_key(session, key.id, deps.clock.now())
        assert_envelope(await client.get("/api/v1/account", headers=who.headers), 401, "unauthorized")


async def test_keys_are_stored_hashed_only(deps, customer: Customer) -> None:
    async with deps.db.read() as session:
        rows = (await session.execute(select(ApiKey))).scalars().all()
    stored = " ".join(str(value) for row in rows for value in vars(row).values())
    assert customer.api_key not in stored
    assert rows[0].secret_hash == keys.hash_key(customer.api_key)
    assert customer.api_key.startswith(rows[0].prefix) and customer.api_key.endswith(rows[0].last4)
    if deps.db.is_sqlite:
        raw = b"".join(p.read_bytes() for p in deps.settings.data_dir.glob("sfumato.db*"))
        assert customer.api_key.encode() not in raw


async def test_unknown_route_and_method_use_the_envelope(client: httpx.AsyncClient, customer: Customer) -> None:
    assert_envelope(await client.get("/api/v1/nothing-here", headers=customer.headers), 404, "not_found")
    not_allowed = await client.delete("/api/v1/tasks", headers=customer.headers)
    assert_envelope(not_allowed, 405, "method_not_allowed")
    assert not_allowed.headers["Allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("content", "field"),
    [(b"{not json", "body"), (b"", "body"), (b"[1, 2]", "body"), (b'"text"', "body")],
)
async def test_body_that_is_not_a_json_object_is_validation_failed(
    client: httpx.AsyncClient, customer: Customer, content: bytes, field: str
) -> None:
    response = await client.post("/api/v1/tasks", content=content,
                                 headers={**customer.headers, "Content-Type": "application/json"})
    body = assert_envelope(response, 422, "validation_failed")
    assert [d["field"] for d in body["error"]["details"]] == [field]


async def test_oversized_body_is_refused_before_it_is_read(client: httpx.AsyncClient, customer: Customer) -> None:
    huge = b'{"model": "qwen-image", "prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    assert_envelope(await client.post("/api/v1/tasks", content=huge, headers=customer.headers),
                    413, "payload_too_large")

    async def chunks():  # no Content-Length: the cap holds while streaming
        for _ in range(64):
            yield b" " * 65536

    streamed = await client.post("/api/v1/tasks", content=chunks(), headers=customer.headers)
    assert_envelope(streamed, 413, "payload_too_large")


async def test_rate_limit_is_429_with_retry_after_and_free(make_deps) -> None:
    deps = await make_deps(rate_limit_create="3/minute", run_worker=False)
    who = await new_customer(deps, credits=100)
    async with serve(deps) as client:
        statuses = [(await create(client, who, model="qwen-image")).status_code for _ in range(3)]
        assert statuses == [202, 202, 202]
        limited = await create(client, who, model="qwen-image")
        assert_envelope(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        async with deps.db.write() as session:
            second = await accounts.issue_key(session, who.account_id, deps.clock.now())
        other_key = await client.post("/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"},
                                      headers={"Authorization": f"Bearer {second.secret}"})
        assert other_key.status_code == 202  # the limit is per key
    async with deps.db.read() as session:
        tasks = await session.scalar(select(func.count()).select_from(Task))
        reserves = await session.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "reserve"))
    assert tasks == reserves == 4


async def test_models_are_public_and_health_answers(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/models")).status_code == 200
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_openapi_documents_every_route_with_the_error_envelope(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "ErrorEnvelope" in spec["components"]["schemas"]
    create_op = spec["paths"]["/api/v1/tasks"]["post"]
    assert {"202", "200", "401", "402", "409", "413", "422", "429"} <= set(create_op["responses"])
    branches = create_op["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert sorted(b["properties"]["model"]["const"] for b in branches) == sorted(schemas.BUILTIN_CATALOG.ids)
    for branch in branches:
        assert branch["required"] == ["model", "prompt"] and branch["additionalProperties"] is False
    for path, method in [("/api/v1/tasks", "post"), ("/api/v1/files", "post"), ("/api/v1/account/webhook", "put"),
                         ("/v1/images/generations", "post"), ("/v1/images/edits", "post"),
                         ("/api/v1/image/generation", "post")]:
        assert spec["paths"][path][method]["requestBody"]["required"] is True, path
    webhook = spec["paths"]["/api/v1/account/webhook"]["put"]["requestBody"]["content"]["application/json"]
    assert webhook["schema"]["additionalProperties"] is False


def _code_ranges(test: Callable[[str], bool]) -> tuple[tuple[int, int], ...]:
    found: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if test(chr(code)):
            if found and found[-1][1] == code - 1:
                found[-1] = (found[-1][0], code)
            else:
                found.append((code, code))
    return tuple(found)


def test_the_documented_control_characters_are_the_ones_the_validator_refuses() -> None:
    assert _code_ranges(lambda ch: unicodedata.category(ch) in ("Cc", "Cf")) == schemas.CONTROL


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.from_regex(f"^[^{schemas._char_class(schemas.CONTROL)}]*$", fullmatch=True)))
def test_the_client_request_id_pattern_is_the_validators_rule(text: str) -> None:
    pattern = re.compile(f"^[^{schemas._char_class(schemas.CONTROL)}]*$")
    assert bool(pattern.fullmatch(text)) == (not validate._has_control_chars(text))


@pytest.mark.parametrize(("low", "high"), [(0, 4294967295), (-50, 1234), (7, 7), (-9, -3), (0, 0)])
@settings(max_examples=150, deadline=None)
@given(value=st.one_of(st.from_regex(r"-?[0-9]{1,12}", fullmatch=True), st.text(" -+0123456789.", max_size=8),
                       st.integers(-10**11, 10**11).map(str)))
def test_the_integer_param_pattern_is_the_validators_rule(low: int, high: int, value: str) -> None:
    errors = validate._Errors()
    canonical = validate._check_integer("seed", IntegerFormat(min=low, max=high), value, "seed", errors)
    accepted = value == "" or (canonical is not None and not errors.items)
    assert bool(re.fullmatch(schemas.integer_text_pattern(low, high), value)) == accepted, value


@settings(max_examples=500, deadline=None)
@given(st.from_regex(schemas.WEBHOOK_URL_PATTERN, fullmatch=True).filter(lambda u: len(u) <= schemas.WEBHOOK_URL_MAX))
def test_every_url_the_webhook_pattern_allows_is_accepted(url: str) -> None:
    assert webhook_urls.destination_problem(url, allow_private=False) is None, url


@pytest.mark.parametrize("url", ["https://localhost/x", "http://a.localhost", "https://127.0.0.1/", "ftp://a.com",
                                 "https://user@a.com/", "https://a.com/ x", "https://a.com:99999/"])
def test_the_webhook_pattern_leaves_out_what_is_refused(url: str) -> None:
    assert not re.fullmatch(schemas.WEBHOOK_URL_PATTERN, url)


async def test_a_body_nested_deeper_than_the_parser_can_go_is_422(
    client: httpx.AsyncClient, customer: Customer
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    response = await client.post("/api/v1/tasks", content=deep,
                                 headers={**customer.headers, "Content-Type": "application/json"})
    body = assert_envelope(response, 422, "validation_failed")
    assert [d["field"] for d in body["error"]["details"]] == ["body"]


async def test_an_unreachable_database_is_503_with_retry_after(make_deps) -> None:
    from sfumato.db.database import Database

    deps = await make_deps(run_worker=False, auth_cache_seconds=0)
    who = await new_customer(deps)
    async with serve(deps) as client:
        working = deps.db
        deps.db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")  # nothing listens there
        try:
            response = await client.get("/api/v1/tasks", headers=who.headers)
        finally:
            await deps.db.dispose()
            deps.db = working
    assert_envelope(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "1"

"""What a customer sees of their credits with their own key: the ledger, page by page (never
another account's entries), and usage per UTC day and model, a task created before midnight and
charged after it counted on both sides of the boundary exactly as the ledger shows."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest

from sfumato import pagination
from sfumato.billing import history, usage
from sfumato.catalog import validate_task_request
from sfumato.clock import FrozenClock
from sfumato.deps import Deps
from sfumato.errors import ValidationFailed
from sfumato.tasks import lifecycle, queries, service
from sfumato.worker import lease
from tests.conftest import Customer, new_customer, serve

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)
BEFORE_MIDNIGHT = datetime(2026, 3, 1, 23, 58, tzinfo=UTC)


async def _create(deps: Deps, who: Customer, model: str) -> str:
    request = validate_task_request({"model": model, "prompt": "x"}, deps.catalog, max_prompt_chars=100)
    async with deps.db.write() as session:
        made = await service.create_task(session, who.account_id, request, deps.clock.now(),
                                         idempotency_window=deps.idempotency_window)
    return made.task.id


async def _claim(deps: Deps, task_id: str) -> lease.Claim:
    async with deps.db.write() as session:
        [claim] = await lease.claim(session, 1, deps.clock.now(), deps.lease)
    assert claim.task_id == task_id
    return claim


async def _story(make_deps) -> tuple[Deps, FrozenClock, Customer, Customer]:
    """Account A, day 1 (23:58): a qwen-image task (4 credits) that succeeds after midnight
    charged 3 (through the driver's finishing write), an imagen task (8) that fails at once.
    Day 2: a qwen-image task canceled while queued, one left queued, and a lifecycle success
    charged 4. Account B: a success on day 1, which A never sees."""
    clock = FrozenClock(BEFORE_MIDNIGHT)
    deps = await make_deps(clock=clock, run_worker=False)
    a = await new_customer(deps, credits=1000, name="a")
    b = await new_customer(deps, credits=1000, name="b")
    late = await _claim(deps, await _create(deps, a, "qwen-image"))
    failing = await _claim(deps, await _create(deps, a, "google-imagen4"))
    async with deps.db.write() as session:
        assert await lifecycle.fail(session, failing.task_id, code="provider_error", message="no",
                                    now=clock.now(), lease_token=failing.lease_token)
    other = await _claim(deps, await _create(deps, b, "qwen-image"))
    async with deps.db.write() as session:
        assert await lifecycle.succeed(session, other.task_id, lease_token=other.lease_token,
                                       result={"media": []}, charged=4, now=clock.now())
    clock.advance(minutes=3)  # 00:01 on day 2
    await queries.succeed(deps.db.driver, late.task_id, lease_token=late.lease_token, result={"media": []},
                          charged=3, files=[], now=clock.now())
    canceled = await _create(deps, a, "qwen-image")
    async with deps.db.write() as session:
        await service.cancel_task(session, a.account_id, canceled, clock.now(), running_cancelable=False)
    charged_in_full = await _claim(deps, await _create(deps, a, "qwen-image"))
    async with deps.db.write() as session:
        assert await lifecycle.succeed(session, charged_in_full.task_id, lease_token=charged_in_full.lease_token,
                                       result={"media": []}, charged=4, now=clock.now())
    await _create(deps, a, "qwen-image")
    return deps, clock, a, b


def _tasks(**counts: int) -> dict[str, int]:
    return {"succeeded": 0, "failed": 0, "canceled": 0, "queued": 0, "running": 0, **counts}


A_BY_DAY_AND_MODEL = [
    {"day": "2026-03-01", "model": "google-imagen4", "tasks": _tasks(failed=1),
     "credits_charged": 0, "credits_refunded": 8},
    {"day": "2026-03-01", "model": "qwen-image", "tasks": _tasks(succeeded=1),
     "credits_charged": 0, "credits_refunded": 0},
    {"day": "2026-03-02", "model": "qwen-image", "tasks": _tasks(succeeded=1, canceled=1, queued=1),
     "credits_charged": 3 + 4, "credits_refunded": 1 + 4},
]


async def test_usage_groups_by_utc_day_and_model_across_midnight(make_deps) -> None:
    deps, _, a, _ = await _story(make_deps)
    async with deps.db.read() as session:
        rows = await usage.usage(session, start=DAY1, end=DAY2, account_id=a.account_id)
        only_day2 = await usage.usage(session, start=DAY2, end=DAY2, account_id=a.account_id)
        before = await usage.usage(session, start=date(2026, 2, 1), end=date(2026, 2, 28), account_id=a.account_id)
    assert [r.as_dict(("day", "model")) for r in rows] == A_BY_DAY_AND_MODEL
    assert [r.as_dict(("day", "model")) for r in only_day2] == A_BY_DAY_AND_MODEL[2:]
    assert before == []


async def test_usage_by_account_and_totals_across_accounts(make_deps) -> None:
    deps, _, a, b = await _story(make_deps)
    async with deps.db.read() as session:
        by_account = await usage.usage(session, start=DAY1, end=DAY2, group_by=("account",))
        totals = await usage.usage(session, start=DAY1, end=DAY2, group_by=())
        everything = await usage.usage(session, start=DAY1, end=DAY2, group_by=("day", "model", "account"))
    shaped = {r.account_id: r.as_dict(("account",)) for r in by_account}
    assert shaped[a.account_id] == {"account_id": a.account_id, "tasks": _tasks(succeeded=2, failed=1, canceled=1,
                                                                                 queued=1),
                                    "credits_charged": 7, "credits_refunded": 13}
    assert shaped[b.account_id] == {"account_id": b.account_id, "tasks": _tasks(succeeded=1),
                                    "credits_charged": 4, "credits_refunded": 0}
    [total] = totals
    assert total.as_dict(()) == {"tasks": _tasks(succeeded=3, failed=1, canceled=1, queued=1),
                                 "credits_charged": 11, "credits_refunded": 13}
    assert len(everything) == 4 and sum(r.credits_charged for r in everything) == 11

    table = list(csv.reader(io.StringIO(usage.to_csv(everything, ("day", "model", "account")))))
    assert table[0] == ["day", "model", "account_id", "succeeded", "failed", "canceled", "queued", "running",
                        "credits_charged", "credits_refunded"]
    assert ["2026-03-01", "qwen-image", b.account_id, "1", "0", "0", "0", "0", "4", "0"] in table[1:]
    assert len(table) == 5


async def test_the_usage_endpoint_shows_only_the_keys_account(make_deps) -> None:
    deps, _, a, b = await _story(make_deps)
    async with serve(deps) as client:
        got = await client.get("/api/v1/account/usage", params={"from": "2026-03-01", "to": "2026-03-02"},
                               headers=a.headers)
        default = await client.get("/api/v1/account/usage", headers=a.headers)
        theirs = await client.get("/api/v1/account/usage", params={"from": "2026-03-01", "to": "2026-03-01"},
                                  headers=b.headers)
    assert got.status_code == 200, got.text
    assert got.json() == {"data": A_BY_DAY_AND_MODEL, "from": "2026-03-01", "to": "2026-03-02"}
    assert default.json()["from"] == "2026-02-01" and default.json()["to"] == "2026-03-02"
    assert default.json()["data"] == A_BY_DAY_AND_MODEL
    assert theirs.json()["data"] == [{"day": "2026-03-01", "model": "qwen-image", "tasks": _tasks(succeeded=1),
                                      "credits_charged": 4, "credits_refunded": 0}]


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"from": "2026-03-05", "to": "2026-03-01"}, "from", "after"),
    ({"from": "yesterday"}, "from", "YYYY-MM-DD"),
    ({"to": "2026-02-30"}, "to", "YYYY-MM-DD"),
    ({"from": ""}, "from", "YYYY-MM-DD"),
    ({"from": "2020-01-01", "to": "2026-01-01"}, "to", "at most 366"),
])
async def test_a_bad_usage_range_is_a_clear_422(deps: Deps, customer: Customer, params, field, words) -> None:
    async with serve(deps) as client:
        got = await client.get("/api/v1/account/usage", params=params, headers=customer.headers)
    assert got.status_code == 422
    error = got.json()["error"]
    assert error["code"] == "validation_failed"
    [detail] = error["details"]
    assert detail["field"] == field and words in detail["message"]


def test_group_by_is_parsed_into_the_canonical_order() -> None:
    assert usage.parse_group_by("account, day") == ("day", "account")
    assert usage.parse_group_by(None) == ("day", "model")
    with pytest.raises(ValidationFailed) as refused:
        usage.parse_group_by("day,hour")
    assert refused.value.details[0].field == "group_by"


def test_the_range_defaults_and_edges() -> None:
    assert usage.parse_range(None, None, DAY2) == (date(2026, 2, 1), DAY2)
    assert usage.parse_range("2026-03-01", None, DAY2) == (DAY1, DAY2)
    assert usage.parse_range(None, "0001-01-02", DAY2) == (date.min, date(1, 1, 2))
    assert usage.parse_range("9999-12-31", "9999-12-31", DAY2) == (date.max, date.max)


# --- the ledger --------------------------------------------------------------------------------

async def test_the_ledger_pages_through_every_entry_newest_first_and_only_the_keys_own(make_deps) -> None:
    deps, _, a, b = await _story(make_deps)
    seen: list[dict] = []
    cursor = None
    async with serve(deps) as client:
        while True:
            params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/api/v1/account/ledger", params=params, headers=a.headers)).json()
            seen.extend(page["data"])
            assert page["has_more"] == (page["next_cursor"] is not None)
            if not page["has_more"]:
                break
            assert len(page["data"]) == 3
            cursor = page["next_cursor"]
        theirs = (await client.get("/api/v1/account/ledger", headers=b.headers)).json()
        bad = await client.get("/api/v1/account/ledger", params={"cursor": "nope"}, headers=a.headers)
    async with deps.db.read() as session:
        everything = (await history.ledger_page(session, a.account_id, limit=100)).as_json()["data"]
    ids = [e["id"] for e in seen]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    assert seen == everything
    # a grant, 5 reserves; settle + release (3 of 4 charged), 2 releases (failed, canceled), a settle
    assert sorted(e["kind"] for e in seen) == sorted(["grant"] + ["reserve"] * 5 + ["settle"] * 2 + ["release"] * 3)
    assert seen[-1] == {"id": seen[-1]["id"], "task_id": None, "kind": "grant", "amount": 1000,
                        "balance_after": 1000, "note": "initial credits", "created_at": "2026-03-01T23:58:00.000Z"}
    assert seen[0]["balance_after"] == 1000 - 4 - 3 - 4  # the queued task's 4 still held
    b_ids = {e["id"] for e in theirs["data"]}
    assert b_ids and not b_ids & set(ids)
    assert {e["task_id"] for e in theirs["data"]} & {e["task_id"] for e in seen} == {None}  # only grants
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "cursor"


async def test_a_cursor_from_one_account_shows_nothing_of_another(make_deps) -> None:
    deps, _, a, b = await _story(make_deps)
    async with deps.db.read() as session:
        first = await history.ledger_page(session, a.account_id, limit=1)
        theirs = await history.ledger_page(session, b.account_id, first.next_cursor, limit=100)
        far = await history.ledger_page(session, b.account_id, pagination.encode_id(10**13), limit=100)
    assert {e.account_id for e in theirs.entries} == {b.account_id}
    assert {e.account_id for e in far.entries} == {b.account_id} and not far.has_more


@pytest.mark.parametrize(("start", "end"), [("0001-01-01", "0001-01-01"), ("9999-12-31", "9999-12-31"),
                                            (None, "0001-01-03")])
async def test_the_first_and_last_days_a_date_can_name_are_an_empty_answer(
    deps: Deps, customer: Customer, start: str | None, end: str
) -> None:
    async with serve(deps) as client:
        got = await client.get("/api/v1/account/usage", params={"to": end} | ({"from": start} if start else {}),
                               headers=customer.headers)
    assert got.status_code == 200, got.text
    assert got.json()["data"] == []

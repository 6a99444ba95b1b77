"""``/api/v1/account``: who the key belongs to, the balance, the ledger and the usage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import WithJsonSchema

from sfumato import pagination
from sfumato.accounts.service import get_account
from sfumato.api.dependencies import DepsDep, PrincipalDep
from sfumato.api.schemas import AccountOut, ErrorEnvelope, LedgerPageOut, UsageOut
from sfumato.billing import history, usage

router = APIRouter(prefix="/api/v1/account", tags=["account"])

_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorEnvelope} for code in (401, 422)}
LEDGER_CURSOR = {"type": "string", "format": "sfumato-ledger-cursor", "maxLength": 500,
                 "description": "Opaque: the `next_cursor` of the previous page. Any other value is 422 "
                                "validation_failed."}
DAY = {"type": "string", "format": "date", "maxLength": 40}


@router.get("", summary="The key's account and balance", response_model=AccountOut,
            responses={401: {"model": ErrorEnvelope}})
async def account(deps: DepsDep, who: PrincipalDep) -> dict[str, Any]:
    async with deps.db.read() as session:
        found = await get_account(session, who.account_id)
    return {"id": found.id, "name": found.name, "balance": found.balance}


@router.get("/ledger", summary="The account's ledger, newest first", response_model=LedgerPageOut,
            responses=_errors)
async def ledger(
    deps: DepsDep, who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=500), WithJsonSchema(LEDGER_CURSOR)] = None,
) -> dict[str, Any]:
    """Every credit movement: grants, each task's reservation, its settle (the charge, in the
    note) and any release or refund, each with the balance after it."""
    async with deps.db.read() as session:
        page = await history.ledger_page(session, who.account_id, cursor, limit)
    return page.as_json()


@router.get("/usage", summary="Tasks and credits per day and model", response_model=UsageOut,
            responses=_errors)
async def account_usage(
    deps: DepsDep, who: PrincipalDep,
    start: Annotated[str | None, Query(alias="from", max_length=40), WithJsonSchema(DAY)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40), WithJsonSchema(DAY)] = None,
) -> dict[str, Any]:
    """UTC days `from` to `to`, both included (default: the 30 days up to today; at most
    366). Tasks count on the day they were created, credits on the day they moved."""
    first, last = usage.parse_range(start, end, deps.clock.now().date())
    async with deps.db.read() as session:
        rows = await usage.usage(session, start=first, end=last, account_id=who.account_id)
    return {"data": [row.as_dict(("day", "model")) for row in rows], "from": first.isoformat(),
            "to": last.isoformat()}

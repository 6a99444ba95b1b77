"""``/api/v1/account``: who the key belongs to, and the balance."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sfumato.accounts.service import get_account
from sfumato.api.dependencies import DepsDep, PrincipalDep
from sfumato.api.schemas import AccountOut, ErrorEnvelope

router = APIRouter(prefix="/api/v1/account", tags=["account"])


@router.get("", summary="The key's account and balance", response_model=AccountOut,
            responses={401: {"model": ErrorEnvelope}})
async def account(deps: DepsDep, who: PrincipalDep) -> dict[str, Any]:
    async with deps.db.read() as session:
        found = await get_account(session, who.account_id)
    return {"id": found.id, "name": found.name, "balance": found.balance}

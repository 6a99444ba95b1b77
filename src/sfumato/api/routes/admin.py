"""``/admin/v1`` accounts, keys, grants and ledgers: the operator's API (``admin_ops.py`` has
tasks, usage, the audit log and providers). Each route checks the admin key, reads its body
after that, calls one ``admin`` service in one transaction, and shapes the answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import WithJsonSchema

from sfumato import pagination
from sfumato.accounts import service as accounts
from sfumato.admin import service as admin
from sfumato.api import admin_schemas as shapes
from sfumato.api.bodies import json_body, parsed
from sfumato.api.dependencies import DepsDep, KeyCache, OperatorDep
from sfumato.api.request_schemas import CURSOR
from sfumato.api.routes.account import LEDGER_CURSOR
from sfumato.api.schemas import ErrorEnvelope, LedgerPageOut
from sfumato.billing import history

router = APIRouter(prefix="/admin/v1", tags=["admin"])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorEnvelope} for code in (401, 404, 422)}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 409: {"model": ErrorEnvelope},
                                                 413: {"model": ErrorEnvelope}}
Limit = Annotated[int, Query(ge=1, le=pagination.MAX_PAGE)]
Cursor = Annotated[str | None, Query(max_length=500), WithJsonSchema(CURSOR)]
IdCursor = Annotated[str | None, Query(max_length=500), WithJsonSchema(LEDGER_CURSOR)]


def body_of(model: type[Any]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route that reads ``model`` with ``json_body``."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def key_cache(request: Request) -> KeyCache:
    cache: KeyCache = request.app.state.key_cache
    return cache


@router.post("/accounts", summary="Create an account", status_code=201, response_model=shapes.AdminAccountOut,
             responses=WRITE_ERRORS, openapi_extra=body_of(shapes.AccountCreateIn))
async def create_account(request: Request, deps: DepsDep, who: OperatorDep) -> JSONResponse:
    asked = parsed(shapes.AccountCreateIn, await json_body(request))
    async with deps.db.write() as session:
        account = await admin.create_account(session, who.actor, asked.name, asked.credits, deps.clock.now())
        shown = admin.account_json(account)
    return JSONResponse(shown, status_code=201)


@router.get("/accounts", summary="List or search accounts", response_model=shapes.AdminAccountPage, responses=ERRORS)
async def list_accounts(
    deps: DepsDep, who: OperatorDep, cursor: Cursor = None, limit: Limit = 20,
    q: Annotated[str | None, Query(max_length=200, description="A piece of the name (any case) or the start "
                                                               "of the id.")] = None,
) -> dict[str, Any]:
    async with deps.db.read() as session:
        page, next_cursor = await accounts.page_accounts(session, q=q, cursor=cursor, limit=limit)
        return {"data": [admin.account_json(a) for a in page], "next_cursor": next_cursor,
                "has_more": next_cursor is not None}


@router.get("/accounts/{account_id}", summary="Get an account", response_model=shapes.AdminAccountOut,
            responses=ERRORS)
async def get_account(account_id: str, deps: DepsDep, who: OperatorDep) -> dict[str, Any]:
    async with deps.db.read() as session:
        return admin.account_json(await accounts.get_account(session, account_id))


@router.patch("/accounts/{account_id}", summary="Rename, disable or enable an account",
              response_model=shapes.AdminAccountUpdated, responses=WRITE_ERRORS,
              openapi_extra=body_of(shapes.AccountPatchIn))
async def update_account(account_id: str, request: Request, deps: DepsDep, who: OperatorDep) -> dict[str, Any]:
    asked = parsed(shapes.AccountPatchIn, await json_body(request))
    async with deps.db.write() as session:
        account, canceled = await admin.update_account(session, who.actor, account_id, deps.clock.now(),
                                                       name=asked.name, disabled=asked.disabled)
        shown = {**admin.account_json(account), "canceled_tasks": canceled}
    if asked.disabled:
        key_cache(request).forget(account_id=account_id)  # this process refuses the keys at once
    if canceled:
        deps.signals.task_queued()  # the queue changed: let the worker look again
    return shown


@router.post("/accounts/{account_id}/keys", summary="Issue an API key (the secret is shown once)",
             status_code=201, response_model=shapes.AdminKeyIssued, responses=WRITE_ERRORS,
             openapi_extra=body_of(shapes.KeyCreateIn))
async def issue_key(account_id: str, request: Request, deps: DepsDep, who: OperatorDep) -> JSONResponse:
    asked = parsed(shapes.KeyCreateIn, await json_body(request))
    expires = None if asked.expires_at is None else shapes.moment(asked.expires_at, "expires_at")
    async with deps.db.write() as session:
        issued = await admin.issue_key(session, who.actor, deps.catalog, account_id, deps.clock.now(),
                                       name=asked.name, models=asked.models, rate_limit=asked.rate_limit,
                                       credit_limit=asked.credit_limit, expires_at=expires)
        shown = admin.key_json(issued.key, issued.secret)
    return JSONResponse(shown, status_code=201)


@router.get("/accounts/{account_id}/keys", summary="An account's keys (never their secrets)",
            response_model=shapes.AdminKeyList, responses=ERRORS)
async def list_keys(account_id: str, deps: DepsDep, who: OperatorDep) -> dict[str, Any]:
    async with deps.db.read() as session:
        await accounts.get_account(session, account_id)
        return {"data": [admin.key_json(k) for k in await accounts.list_keys(session, account_id)]}


@router.delete("/keys/{key_id}", summary="Revoke an API key", response_model=shapes.AdminKeyOut,
               responses=ERRORS)
async def revoke_key(key_id: str, request: Request, deps: DepsDep, who: OperatorDep) -> dict[str, Any]:
    async with deps.db.write() as session:
        shown = admin.key_json(await admin.revoke_key(session, who.actor, key_id, deps.clock.now()))
    key_cache(request).forget(key_id=key_id)
    return shown


@router.post("/accounts/{account_id}/grants", summary="Grant (or debit) credits, once per idempotency key",
             status_code=201, response_model=shapes.GrantOut,
             responses={200: {"model": shapes.GrantOut, "description": "A replay: the first grant with this "
                              "idempotency_key; nothing granted now."}, **WRITE_ERRORS},
             openapi_extra=body_of(shapes.GrantIn))
async def grant(account_id: str, request: Request, deps: DepsDep, who: OperatorDep) -> JSONResponse:
    asked = parsed(shapes.GrantIn, await json_body(request))
    async with deps.db.write() as session:
        entry, created = await admin.grant(session, who.actor, account_id, asked.credits, deps.clock.now(),
                                           idempotency_key=asked.idempotency_key, note=asked.note)
        shown = {"balance": entry.balance_after, "entry_id": entry.id}  # a replay answers as the first did
    return JSONResponse(shown, status_code=201 if created else 200)


@router.get("/accounts/{account_id}/ledger", summary="An account's ledger, newest first",
            response_model=LedgerPageOut, responses=ERRORS)
async def ledger(account_id: str, deps: DepsDep, who: OperatorDep, cursor: IdCursor = None,
                 limit: Limit = 20) -> dict[str, Any]:
    async with deps.db.read() as session:
        await accounts.get_account(session, account_id)
        page = await history.ledger_page(session, account_id, cursor, limit)
    return page.as_json()

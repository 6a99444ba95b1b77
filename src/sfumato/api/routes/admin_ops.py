"""``/admin/v1`` across accounts: tasks (list, refund, webhook redelivery), usage, the audit log
and the providers' health. Thin like ``admin.py``: one service call per route."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import WithJsonSchema

from sfumato.admin import audit, reads
from sfumato.admin import service as admin
from sfumato.api import admin_schemas as shapes
from sfumato.api.dependencies import DepsDep, OperatorDep
from sfumato.api.routes.account import DAY
from sfumato.api.routes.admin import ERRORS, WRITE_ERRORS, Cursor, IdCursor, Limit
from sfumato.api.routes.tasks import view
from sfumato.api.routes.webhooks import _delivery as delivery_json
from sfumato.api.schemas import ErrorEnvelope, WebhookDeliveryOut
from sfumato.billing import history, usage
from sfumato.errors import FieldError, ValidationFailed
from sfumato.tasks.status import Status

router = APIRouter(prefix="/admin/v1", tags=["admin"])


@router.get("/tasks", summary="Tasks across accounts, newest first", response_model=shapes.AdminTaskPage,
            responses=ERRORS)
async def list_tasks(
    request: Request, deps: DepsDep, who: OperatorDep, cursor: Cursor = None, limit: Limit = 20,
    account: Annotated[str | None, Query(max_length=64, description="One account's tasks only.")] = None,
    status: Status | None = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    async with deps.db.read() as session:
        tasks, next_cursor = await reads.list_tasks(session, account_id=account, status=status, model=model,
                                                    cursor=cursor, limit=limit)
    shape = view(deps, request)
    return JSONResponse({"data": [{**shape.task(t), "account_id": t.account_id} for t in tasks],
                         "next_cursor": next_cursor, "has_more": next_cursor is not None})


@router.post("/tasks/{task_id}/refund", summary="Refund a succeeded task's charge (once)", status_code=201,
             response_model=shapes.RefundOut, responses=WRITE_ERRORS)
async def refund(task_id: str, deps: DepsDep, who: OperatorDep) -> JSONResponse:
    """Its charge back as a `refund` ledger entry; a second refund is 409 conflict."""
    async with deps.db.write() as session:
        entry = await admin.refund_task(session, who.actor, task_id, deps.clock.now())
        shown = history.entry_json(entry)
    return JSONResponse(shown, status_code=201)


@router.post("/tasks/{task_id}/webhook-deliveries/redeliver", summary="Send an ended task's webhook again",
             status_code=202, response_model=WebhookDeliveryOut, responses=WRITE_ERRORS)
async def redeliver(task_id: str, deps: DepsDep, who: OperatorDep) -> JSONResponse:
    """Its latest delivery back to `pending`, due now with a fresh retry schedule (or a first one
    if the task never had one); the workers' dispatcher sends it. 409 while the task runs or
    when no webhook URL applies."""
    async with deps.db.write() as session:
        shown = delivery_json(await admin.redeliver(session, who.actor, task_id, deps.clock.now()))
    return JSONResponse(shown, status_code=202)


GroupBy = Annotated[str | None, Query(max_length=40), WithJsonSchema({
    "type": "string", "pattern": shapes.GROUP_BY, "maxLength": 40,
    "description": "Comma-separated, any of `day`, `model`, `account` (default `day,model`)."})]


@router.get("/usage", summary="Tasks and credits by day, model and account", response_model=shapes.AdminUsageOut,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "JSON, or with `format=csv` a spreadsheet."}, **ERRORS})
async def admin_usage(
    deps: DepsDep, who: OperatorDep,
    start: Annotated[str | None, Query(alias="from", max_length=40), WithJsonSchema(DAY)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40), WithJsonSchema(DAY)] = None,
    group_by: GroupBy = None,
    account: Annotated[str | None, Query(max_length=64, description="One account's usage only.")] = None,
    fmt: Annotated[str, Query(alias="format", max_length=10),
                   WithJsonSchema({"type": "string", "enum": ["json", "csv"], "default": "json"})] = "json",
) -> Response:
    """UTC days `from` to `to`, both included (default: the 30 days up to today; at most 366).
    Tasks count on the day they were created (by their status now), credits on the day they moved."""
    if group_by and re.fullmatch(shapes.GROUP_BY, group_by) is None:
        raise ValidationFailed(details=[FieldError("group_by", "A comma-separated list of day, model, account.")])
    if fmt not in ("json", "csv"):
        raise ValidationFailed(details=[FieldError("format", "json or csv.")])
    groups = usage.parse_group_by(group_by)
    first, last = usage.parse_range(start, end, deps.clock.now().date())
    async with deps.db.read() as session:
        rows = await usage.usage(session, start=first, end=last, group_by=groups, account_id=account)
    if fmt == "csv":
        name = f"sfumato-usage-{first.isoformat()}-{last.isoformat()}.csv"
        return Response(usage.to_csv(rows, groups), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return JSONResponse({"data": [row.as_dict(groups) for row in rows], "from": first.isoformat(),
                         "to": last.isoformat(), "group_by": list(groups)})


@router.get("/audit", summary="The audit log of operator writes, newest first", response_model=shapes.AuditPage,
            responses=ERRORS)
async def audit_log(deps: DepsDep, who: OperatorDep, cursor: IdCursor = None, limit: Limit = 50) -> dict[str, Any]:
    async with deps.db.read() as session:
        return (await audit.page(session, cursor, limit)).as_json()


@router.get("/providers", summary="Each upstream route: circuit, attempts, recent failures",
            response_model=shapes.ProvidersOut, responses={401: {"model": ErrorEnvelope}})
async def providers(deps: DepsDep, who: OperatorDep) -> dict[str, Any]:
    async with deps.db.read() as session:
        return {"data": await reads.providers(session, deps.providers)}


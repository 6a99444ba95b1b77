"""Webhooks: the account's default URL and signing secret, and each task's delivery log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sfumato.api.bodies import json_body, parsed
from sfumato.api.dependencies import DepsDep, PrincipalDep
from sfumato.api.request_schemas import WebhookSettingsIn
from sfumato.api.schemas import ErrorEnvelope, WebhookDeliveryPage, WebhookSettingsOut
from sfumato.clock import iso_ms
from sfumato.db.models import WebhookDelivery
from sfumato.errors import FieldError, ValidationFailed
from sfumato.tasks import service as tasks
from sfumato.webhooks import service
from sfumato.webhooks.urls import destination_problem, problem

router = APIRouter(tags=["webhooks"])
_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorEnvelope} for code in (401, 404, 422)}


@router.get("/api/v1/account/webhook", summary="The account's webhook URL and secret",
            response_model=WebhookSettingsOut, responses=_errors)
async def get_webhook(deps: DepsDep, who: PrincipalDep) -> dict[str, Any]:
    async with deps.db.read() as session:
        return await service.settings_of(session, who.account_id)


@router.put("/api/v1/account/webhook", summary="Set the account's default webhook URL",
            response_model=WebhookSettingsOut, responses={413: {"model": ErrorEnvelope}, **_errors},
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": WebhookSettingsIn.model_json_schema()}}}})
async def put_webhook(request: Request, deps: DepsDep, who: PrincipalDep) -> dict[str, Any]:
    settings = parsed(WebhookSettingsIn, await json_body(request))
    if settings.url is not None:
        wrong = problem(settings.url) or destination_problem(settings.url, deps.settings.webhook_allow_private)
        if wrong:
            raise ValidationFailed(details=[FieldError("url", wrong)])
    async with deps.db.write() as session:
        return await service.set_default_url(session, who.account_id, settings.url)


@router.post("/api/v1/account/webhook/rotate-secret", summary="Replace the webhook signing secret",
             response_model=WebhookSettingsOut, responses=_errors)
async def rotate_secret(deps: DepsDep, who: PrincipalDep) -> dict[str, Any]:
    async with deps.db.write() as session:
        return await service.rotate_secret(session, who.account_id)


def _delivery(row: WebhookDelivery) -> dict[str, Any]:
    return {"id": row.id, "event_type": row.event_type, "url": row.url, "status": row.status,
            "attempts": row.attempts, "created_at": iso_ms(row.created_at),
            "next_attempt_at": iso_ms(row.next_attempt_at) if row.status == "pending" else None,
            "delivered_at": iso_ms(row.delivered_at) if row.delivered_at else None, "log": row.log}


@router.get("/api/v1/tasks/{task_id}/webhook-deliveries", summary="A task's webhook deliveries",
            response_model=WebhookDeliveryPage, responses=_errors)
async def task_deliveries(task_id: str, deps: DepsDep, who: PrincipalDep) -> dict[str, Any]:
    async with deps.db.read() as session:
        await tasks.get_task(session, who.account_id, task_id)  # another account's task: 404
        rows = await service.deliveries(session, who.account_id, task_id)
    return {"data": [_delivery(r) for r in rows]}

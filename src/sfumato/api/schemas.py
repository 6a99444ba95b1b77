"""Response shapes, for the OpenAPI document and for turning rows into JSON (request bodies:
``request_schemas.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sfumato.clock import iso_ms
from sfumato.db.models import Task
from sfumato.files.urls import MediaSigner
from sfumato.tasks.queries import TaskRow


class FieldErrorOut(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str = Field(examples=["validation_failed"])
    message: str
    details: list[FieldErrorOut] = []


class ErrorEnvelope(BaseModel):
    error: ErrorBody
    request_id: str


class MediaOut(BaseModel):
    url: str
    kind: str
    name: str
    mimeType: str
    width: int | None = None
    height: int | None = None
    bytes: int


class ResultOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    media: list[MediaOut]
    provider: str
    sandbox: bool


class TaskError(BaseModel):
    code: str
    message: str


class TaskOut(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed", "canceled"]
    model: str
    reserved_credits: int
    final_credits: int
    created_at: str = Field(examples=["2026-05-11T00:00:00.000Z"])
    updated_at: str = Field(examples=["2026-05-11T00:00:00.000Z"])
    result: ResultOut | None
    error: TaskError | None
    priority: Literal["normal", "low"] = Field(
        description="`low` is placed some turns of the queue behind `normal` tasks, then runs (it never starves).")
    started_at: str | None = Field(description="When a worker took the task (its latest attempt); null while queued.")
    deadline_at: str | None = Field(description="From `Cancel-After`: not done by then, the task ends `canceled` "
                                    "with `deadline_exceeded`, refunded.")


class TaskPage(BaseModel):
    data: list[TaskOut]
    next_cursor: str | None
    has_more: bool


class FileOut(BaseModel):
    id: str
    url: str
    kind: str
    name: str
    mimeType: str
    bytes: int
    width: int | None
    height: int | None
    purpose: Literal["upload", "output", "preview"]
    created_at: str
    expires_at: str | None
    duration_seconds: float | None = None
    durationToken: str | None = None


class FilePage(BaseModel):
    data: list[FileOut]
    next_cursor: str | None
    has_more: bool


class AccountOut(BaseModel):
    id: str
    name: str
    balance: int


class LedgerEntryOut(BaseModel):
    id: int
    task_id: str | None = Field(description="The task the credits moved for; null for a grant.")
    kind: str = Field(description="`grant`, `reserve` (a task's price held), `settle` (the hold became the charge "
                      "in its note), `release` (held credits given back) or `refund`.", examples=["reserve"])
    amount: int = Field(description="The change to the balance: negative for a reservation.")
    balance_after: int
    note: str | None
    created_at: str = Field(examples=["2026-05-11T00:00:00.000Z"])


class LedgerPageOut(BaseModel):
    data: list[LedgerEntryOut]
    next_cursor: str | None
    has_more: bool


class UsageTasksOut(BaseModel):
    succeeded: int
    failed: int
    canceled: int
    queued: int
    running: int


class UsageRowOut(BaseModel):
    day: str = Field(description="A UTC day, `YYYY-MM-DD`: tasks created on it, credits moved on it.",
                     examples=["2026-05-11"])
    model: str
    tasks: UsageTasksOut = Field(description="Tasks created that day, by their status now.")
    credits_charged: int = Field(description="Charges made final that day (`settle` entries).")
    credits_refunded: int = Field(description="Credits given back that day (`release` and `refund` entries).")


class UsageOut(BaseModel):
    data: list[UsageRowOut]
    from_: str = Field(alias="from", examples=["2026-05-01"])
    to: str = Field(examples=["2026-05-30"])


class QuoteOut(BaseModel):
    model: str
    params: dict[str, Any] = Field(description="As the task would keep them: normalised, defaults applied.")
    price: int = Field(description="The credits a create of this body would reserve now.")


class TaskView:
    """Turns task rows into the spec's task object, signing media URLs at read time."""

    def __init__(self, signer: MediaSigner, base_url: str, ttl: timedelta, now: datetime):
        self.signer = signer
        self.base_url = base_url
        self.ttl = ttl
        self.now = now

    def _media(self, account_id: str, entry: dict[str, Any]) -> dict[str, Any]:
        expires = self.now + self.ttl
        url = self.signer.url(self.base_url, entry["file_id"], account_id, expires)
        return {"url": url, **{k: v for k, v in entry.items() if k != "file_id"}}

    def task(self, task: Task | TaskRow) -> dict[str, Any]:
        result = None
        if task.result is not None:
            result = dict(task.result)
            result["media"] = [self._media(task.account_id, m) for m in task.result.get("media", [])]
        return {
            "id": task.id, "status": task.status, "model": task.model,
            "reserved_credits": task.reserved_credits, "final_credits": task.final_credits,
            "created_at": iso_ms(task.created_at), "updated_at": iso_ms(task.updated_at),
            "result": result, "error": task.error,
            "priority": task.priority,
            "started_at": None if task.started_at is None else iso_ms(task.started_at),
            "deadline_at": None if task.deadline_at is None else iso_ms(task.deadline_at),
        }


class WebhookSettingsOut(BaseModel):
    url: str | None
    secret: str | None = Field(description="whsec_…: verify signatures with it (Standard Webhooks).")


class WebhookAttemptOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    at: str
    attempt: int
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


class WebhookDeliveryOut(BaseModel):
    id: str
    event_type: str
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: str | None
    delivered_at: str | None
    created_at: str
    log: list[WebhookAttemptOut]


class WebhookDeliveryPage(BaseModel):
    data: list[WebhookDeliveryOut]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorEnvelope(BaseModel):
    """OpenAI's error envelope, used on the OpenAI-compatible door (``/v1/...``)."""

    error: OpenAIErrorBody


class OpenAIImage(BaseModel):
    b64_json: str | None = None
    url: str | None = None


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]
    output_format: str
    size: str
    quality: str
    background: str


class ImageEditUsage(BaseModel):
    images: int
    seconds: float
    input_tokens: int
    total_tokens: int
    output_tokens: int


class ImageEditData(BaseModel):
    urls: list[str]
    usage: ImageEditUsage
    expired: str
    task_id: str
    task_status: str
    task_ids: list[str]


class ImageEditEnvelope(BaseModel):
    """The image-edit page's envelope: ``code`` 0 and ``data`` on success; on an error ``code``
    is the HTTP status, ``data`` null and ``error`` the sfumato error code."""

    code: int
    data: ImageEditData | None
    message: str
    request_id: str
    error: str | None = None

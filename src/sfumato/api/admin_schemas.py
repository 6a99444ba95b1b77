"""The operator's API (``/admin/v1``): request bodies and response shapes, for the OpenAPI
document and for reading bodies. Each pattern here is also the server's rule (the fuzz test
holds the two together: what the document allows is accepted, what it forbids is refused)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sfumato.admin.service import RATE_LIMIT
from sfumato.api.request_schemas import BUILTIN_CATALOG, PROMPT_FORMAT
from sfumato.api.schemas import LedgerEntryOut, TaskOut, UsageTasksOut
from sfumato.billing.budget import PATTERN as CREDIT_LIMIT
from sfumato.errors import FieldError, ValidationFailed

CREDITS_MAX = 10**12
GROUP_BY = r"^((day|model|account)(,(day|model|account))*)?$"
NAME_RULE = ("1 to 200 characters with a visible one (a letter, mark, number, punctuation or symbol: Unicode "
             "categories L, M, N, P, S). Unique among accounts (409 conflict).")
Name = Annotated[str, Field(description=NAME_RULE, examples=["acme"],
                            json_schema_extra={"format": PROMPT_FORMAT, "minLength": 1, "maxLength": 200})]
Moment = Annotated[str, Field(max_length=64, json_schema_extra={"format": "date-time"})]
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def moment(raw: str, field: str) -> datetime:
    """An RFC 3339 date-time (JSON Schema's ``date-time``) in UTC. A leap second reads as :59;
    a moment that leaves the calendar once moved to UTC is clamped to its end."""
    found = _RFC3339.fullmatch(raw)
    try:
        if found is None:
            raise ValueError(raw)
        day, minutes, seconds, fraction, zone = found.groups()
        text = f"{day}T{minutes}:{min(int(seconds), 59):02d}{(fraction or '')[:7]}{'+00:00' if zone in 'Zz' else zone}"
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(details=[FieldError(field, "Expected an RFC 3339 date-time, e.g. "
                                                          "2027-01-01T00:00:00Z.")]) from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return (datetime.min if parsed.year == 1 else datetime.max).replace(tzinfo=UTC)


class AccountCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    credits: int = Field(0, ge=0, le=CREDITS_MAX, description="Initial credits (a grant in the ledger).")


class AccountPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    disabled: bool | None = Field(None, description="true: the account's keys get 401 at once and its queued tasks "
                                  "are canceled and refunded; false: enabled again.")


class KeyCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200, description="A label for the key.")
    models: list[Literal[tuple(BUILTIN_CATALOG.ids)]] | None = Field(  # type: ignore[valid-type]
        None, max_length=100, description="Model ids the key may use; tasks on any other are 403 forbidden. "
        "Absent or null: every model.")
    rate_limit: str | None = Field(None, pattern=RATE_LIMIT, examples=["60/minute"],
                                   description="Task creates allowed to this key, instead of the server's "
                                   "SFUMATO_RATE_LIMIT_CREATE.")
    expires_at: Moment | None = Field(None, description="RFC 3339. From then on the key is refused (401); "
                                      "a moment already past makes a key refused at once.")
    credit_limit: str | None = Field(None, pattern=CREDIT_LIMIT, examples=["500/day"],
                                     description="Most credits this key's tasks may take per UTC day or month "
                                     "(reserved minus released and refunded); past it a create is 402 "
                                     "key_budget_exceeded.")


class GrantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credits: int = Field(ge=-CREDITS_MAX, le=CREDITS_MAX, json_schema_extra={"not": {"const": 0}},
                         description="Credits to add; negative: a manual debit, down to a zero balance at most "
                         "(409 conflict past it).")
    idempotency_key: str = Field(min_length=1, max_length=255, examples=["stripe-evt_1Nx"],
                                 description="The same key again returns the first grant (200) and grants "
                                 "nothing; with another amount it is 409 idempotency_conflict.")
    note: str | None = Field(None, max_length=500, description="Kept in the ledger entry.")


class AdminAccountOut(BaseModel):
    id: str
    name: str
    balance: int
    disabled: bool
    created_at: str = Field(examples=["2026-05-11T00:00:00.000Z"])


class AdminAccountPage(BaseModel):
    data: list[AdminAccountOut]
    next_cursor: str | None
    has_more: bool


class AdminAccountUpdated(AdminAccountOut):
    canceled_tasks: list[str] = Field(description="Queued tasks canceled (and refunded) by disabling the account.")


class AdminKeyOut(BaseModel):
    id: str
    account_id: str
    name: str | None
    prefix: str
    last4: str
    models: list[str] | None
    rate_limit: str | None
    credit_limit: str | None = Field(examples=["500/day"])
    expires_at: str | None
    created_at: str
    revoked_at: str | None


class AdminKeyIssued(AdminKeyOut):
    key: str = Field(description="The secret: shown this once, never again.")


class AdminKeyList(BaseModel):
    data: list[AdminKeyOut]


class GrantOut(BaseModel):
    balance: int = Field(description="The balance after the grant.")
    entry_id: int = Field(description="The grant's ledger entry (the first one, on a replay).")


class AdminTaskOut(TaskOut):
    account_id: str


class AdminTaskPage(BaseModel):
    data: list[AdminTaskOut]
    next_cursor: str | None
    has_more: bool


class RefundOut(LedgerEntryOut):
    pass


class AuditEntryOut(BaseModel):
    id: int
    at: str
    actor: Literal["admin-key", "cli"]
    action: str = Field(examples=["account.grant"])
    target: str | None = Field(description="The account, key or task acted on.")
    request_id: str | None = Field(description="The HTTP request's id (null from the CLI).")
    details: dict[str, Any]


class AuditPage(BaseModel):
    data: list[AuditEntryOut]
    next_cursor: str | None
    has_more: bool


class FailureOut(BaseModel):
    task_id: str
    code: str | None
    message: str | None
    at: str | None


class ProviderRouteOut(BaseModel):
    model: str
    route: str
    provider: str
    upstream_model: str | None
    host: str | None
    live: bool
    missing: str | None = Field(description="What keeps the route offline (an unset key variable).")
    circuit: Literal["closed", "open", "half_open"] | None = Field(
        description="This process's circuit breaker for the route; null while unused.")
    attempts: dict[str, int] = Field(description="Attempts in this process since it started, by outcome "
                                     "(`ok` or an error code).")
    failed_tasks: int = Field(description="Failed tasks of the route's model, all processes.")
    recent_failures: list[FailureOut] = Field(description="The model's latest failed tasks.")


class ProvidersOut(BaseModel):
    data: list[ProviderRouteOut]


class AdminUsageRow(BaseModel):
    day: str | None = None
    model: str | None = None
    account_id: str | None = None
    tasks: UsageTasksOut
    credits_charged: int
    credits_refunded: int


class AdminUsageOut(BaseModel):
    data: list[AdminUsageRow]
    from_: str = Field(alias="from", examples=["2026-05-01"])
    to: str = Field(examples=["2026-05-30"])
    group_by: list[Literal["day", "model", "account"]]


"""The operator's writes: accounts, keys, grants, refunds, redeliveries. Each validates what
the domain services do not, calls them, and appends its audit entry, in the caller's
transaction (the route or the CLI command commits). ``actor``: ``admin-key`` or ``cli``."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.accounts import service as accounts
from sfumato.admin import audit
from sfumato.billing import budget, ledger
from sfumato.catalog import Catalog
from sfumato.clock import iso_ms
from sfumato.db.models import Account, ApiKey, LedgerEntry, Task, WebhookDelivery
from sfumato.errors import Conflict, FieldError, NotFound, ValidationFailed
from sfumato.tasks.status import TERMINAL
from sfumato.webhooks import outbox

NAME_MAX = 200
RATE_LIMIT = r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$"
"""A key's ``rate_limit``: the ``limits`` notation of ``SFUMATO_RATE_LIMIT_CREATE``, one form of it."""


def account_json(account: Account) -> dict[str, Any]:
    return {"id": account.id, "name": account.name, "balance": account.balance,
            "disabled": account.disabled_at is not None, "created_at": iso_ms(account.created_at)}


def key_json(key: ApiKey, secret: str | None = None) -> dict[str, Any]:
    shown: dict[str, Any] = {"id": key.id, "account_id": key.account_id, "name": key.name}
    if secret is not None:
        shown["key"] = secret
    return {**shown, "prefix": key.prefix, "last4": key.last4, "models": key.models, "rate_limit": key.rate_limit,
            "credit_limit": budget.show_limit(key.credit_limit, key.credit_period),
            "expires_at": None if key.expires_at is None else iso_ms(key.expires_at),
            "created_at": iso_ms(key.created_at),
            "revoked_at": None if key.revoked_at is None else iso_ms(key.revoked_at)}


def _name(name: str) -> str:
    """As given, if it has a visible character (the prompt's rule) and fits."""
    if len(name) > NAME_MAX or not any(unicodedata.category(ch)[0] not in "CZ" for ch in name):
        raise ValidationFailed(details=[FieldError("name", f"1 to {NAME_MAX} characters, one of them visible.")])
    return name


async def create_account(session: AsyncSession, actor: str, name: str, credits: int, now: datetime) -> Account:
    if credits < 0:
        raise ValidationFailed(details=[FieldError("credits", "Initial credits cannot be negative.")])
    account = await accounts.create_account(session, _name(name), credits, now)
    await audit.record(session, actor, "account.create", account.id, now, {"name": account.name, "credits": credits})
    return account


async def update_account(session: AsyncSession, actor: str, account_id: str, now: datetime, *,
                         name: str | None = None, disabled: bool | None = None) -> tuple[Account, list[str]]:
    """Rename, disable or enable; disabling cancels (and refunds) the account's queued tasks."""
    account, canceled = await accounts.update_account(
        session, account_id, now, name=None if name is None else _name(name), disabled=disabled)
    details: dict[str, Any] = {}
    if name is not None:
        details["name"] = account.name
    if disabled is not None:
        details["disabled"] = disabled
    if canceled:
        details["canceled_tasks"] = canceled
    await audit.record(session, actor, "account.update", account_id, now, details)
    return account, canceled


def _key_limits(catalog: Catalog, models: list[str] | None, rate_limit: str | None,
                credit_limit: str | None) -> tuple[tuple[int, str] | None, list[str] | None]:
    problems = []
    if models is not None:
        unknown = [m for m in models if m not in catalog.ids]
        if unknown:
            known = ", ".join(catalog.ids)
            problems.append(FieldError("models", f"Unknown model {unknown[0][:64]!r}; known: {known}."))
        models = sorted(set(models))
    if rate_limit is not None and re.fullmatch(RATE_LIMIT, rate_limit) is None:
        problems.append(FieldError("rate_limit", "Expected N/second, N/minute, N/hour or N/day, e.g. 60/minute."))
    limit = None
    if credit_limit is not None:
        try:
            limit = budget.parse_limit(credit_limit)
        except ValidationFailed as exc:
            problems += exc.details
    if problems:
        raise ValidationFailed(details=problems)
    return limit, models


async def issue_key(session: AsyncSession, actor: str, catalog: Catalog, account_id: str, now: datetime, *,
                    name: str | None = None, models: list[str] | None = None, rate_limit: str | None = None,
                    credit_limit: str | None = None, expires_at: datetime | None = None) -> accounts.IssuedKey:
    limit, models = _key_limits(catalog, models, rate_limit, credit_limit)
    issued = await accounts.issue_key(session, account_id, now, name=name, models=models, rate_limit=rate_limit,
                                      credit_limit=limit, expires_at=expires_at)
    await audit.record(session, actor, "key.create", issued.key.id, now, {
        "account_id": account_id, "models": models, "rate_limit": rate_limit, "credit_limit": credit_limit,
        "expires_at": None if expires_at is None else iso_ms(expires_at)})
    return issued


async def revoke_key(session: AsyncSession, actor: str, key_id: str, now: datetime) -> ApiKey:
    key = await accounts.revoke_key(session, key_id, now)
    await audit.record(session, actor, "key.revoke", key_id, now, {"account_id": key.account_id})
    return key


async def grant(session: AsyncSession, actor: str, account_id: str, credits: int, now: datetime, *,
                idempotency_key: str, note: str | None = None) -> tuple[LedgerEntry, bool]:
    """``(entry, created)``. A replay of the same ``idempotency_key`` writes nothing (no audit
    entry either: nothing happened)."""
    if credits == 0:
        raise ValidationFailed(details=[FieldError("credits", "A grant moves a non-zero number of credits.")])
    await accounts.get_account(session, account_id)
    entry, created = await ledger.grant_once(session, account_id, credits, now, idempotency_key=idempotency_key,
                                             note=note)
    if created:
        await audit.record(session, actor, "account.grant", account_id, now, {
            "credits": credits, "idempotency_key": idempotency_key, "entry_id": entry.id, "note": note})
    return entry, created


async def refund_task(session: AsyncSession, actor: str, task_id: str, now: datetime,
                      note: str | None = None) -> LedgerEntry:
    entry = await ledger.refund(session, task_id, now, note or "refunded by the operator")
    await audit.record(session, actor, "task.refund", task_id, now,
                       {"account_id": entry.account_id, "credits": entry.amount, "entry_id": entry.id})
    return entry


async def redeliver(session: AsyncSession, actor: str, task_id: str, now: datetime) -> WebhookDelivery:
    """Send an ended task's webhook again: its latest delivery, reset to be sent now with a
    fresh retry schedule (its log kept), or a new one if it never had one (a URL set since)."""
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound(f"No task {task_id[:80]}.")
    if task.status not in TERMINAL:
        raise Conflict(f"The task is {task.status}: its webhook is sent when it ends.")
    latest = await session.scalar(select(WebhookDelivery).where(WebhookDelivery.task_id == task_id)
                                  .order_by(WebhookDelivery.created_at.desc()).limit(1))
    if latest is None:
        await outbox.enqueue(session, task_id, task.status, now)
        latest = await session.scalar(select(WebhookDelivery).where(WebhookDelivery.task_id == task_id))
        if latest is None:
            raise Conflict("Neither the task nor its account has a webhook URL.")
    else:
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == latest.id)
                              .values(status="pending", attempts=0, next_attempt_at=now, delivered_at=None))
        await session.refresh(latest)
    await audit.record(session, actor, "task.redeliver", task_id, now, {"delivery_id": latest.id})
    return latest

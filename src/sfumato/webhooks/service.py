"""The account's webhook settings and a task's delivery log."""

from __future__ import annotations

import base64
import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.db.models import Account, WebhookDelivery


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


async def ensure_secret(session: AsyncSession, account_id: str) -> str:
    """The account's signing secret, made on first use (a concurrent maker wins cleanly)."""
    await session.execute(update(Account).where(Account.id == account_id, Account.webhook_secret.is_(None))
                          .values(webhook_secret=new_secret()))
    secret = await session.scalar(select(Account.webhook_secret).where(Account.id == account_id))
    assert secret is not None
    return secret


async def settings_of(session: AsyncSession, account_id: str) -> dict[str, str | None]:
    row = (await session.execute(select(Account.webhook_url, Account.webhook_secret)
                                 .where(Account.id == account_id))).one()
    return {"url": row[0], "secret": row[1]}


async def set_default_url(session: AsyncSession, account_id: str, url: str | None) -> dict[str, str | None]:
    """Set (or clear, with ``None``) the URL the account's tasks are sent to by default."""
    await session.execute(update(Account).where(Account.id == account_id).values(webhook_url=url))
    await ensure_secret(session, account_id)
    return await settings_of(session, account_id)


async def rotate_secret(session: AsyncSession, account_id: str) -> dict[str, str | None]:
    await session.execute(update(Account).where(Account.id == account_id).values(webhook_secret=new_secret()))
    return await settings_of(session, account_id)


async def deliveries(session: AsyncSession, account_id: str, task_id: str) -> list[WebhookDelivery]:
    return list(await session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.account_id == account_id, WebhookDelivery.task_id == task_id)
        .order_by(WebhookDelivery.created_at)))

"""Sending queued webhooks: claim the due ones, POST each signed, record the outcome, and
schedule the next attempt (about a day of retries). A delivery never touches its task.

Claims are conditional updates like task claims: the claimed row's ``next_attempt_at`` moves
``IN_FLIGHT`` ahead, so another worker does not take it meanwhile, and a worker that dies
mid-send leaves the row to be retried once that passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.abc import ResolveResult
from sqlalchemy import select, update
from standardwebhooks import Webhook

from sfumato import __version__
from sfumato.api.schemas import TaskView
from sfumato.clock import iso_ms
from sfumato.db.models import Account, Task, WebhookDelivery
from sfumato.deps import Deps
from sfumato.webhooks.urls import destination_problem, public_address

log = logging.getLogger("sfumato.webhooks")
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
"""Seconds before each retry after the first attempt: the Standard Webhooks reference schedule
(5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), about 27 hours in all, 8 attempts."""
IN_FLIGHT = timedelta(minutes=2)
BATCH = 32
MAX_RESPONSE = 4096
"""Bytes of a receiver's answer read (and kept in the log); the rest is not waited for."""


class PublicOnlyResolver(aiohttp.ThreadedResolver):
    """Resolves names to public addresses only: a webhook cannot be aimed at the server's
    network through a name that resolves (or re-resolves) to a private address."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = [r for r in await super().resolve(host, port, family) if public_address(r["host"])]
        if not found:
            raise OSError(f"{host} resolves to no public address")
        return found


@dataclass(frozen=True, slots=True)
class Due:
    id: str
    task_id: str
    event_type: str
    url: str
    attempts: int


class Dispatcher:
    def __init__(self, deps: Deps):
        self.deps = deps
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            allow_private = self.deps.settings.webhook_allow_private
            connector = aiohttp.TCPConnector(resolver=None if allow_private else PublicOnlyResolver(), limit=64)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver what is due every ``SFUMATO_WEBHOOK_POLL_SECONDS`` until ``stop``."""
        while not stop.is_set():
            try:
                await self.deliver_due()
            except Exception:
                log.exception("webhook round failed; retrying next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.deps.settings.webhook_poll_seconds)

    async def deliver_due(self) -> int:
        """One round: claim up to ``BATCH`` due deliveries and send them concurrently."""
        due = await self._claim()
        await asyncio.gather(*(self._deliver(d) for d in due))
        return len(due)

    async def _claim(self) -> list[Due]:
        now = self.deps.clock.now()
        async with self.deps.db.read() as session:  # most rounds find nothing: no write for that
            if await session.scalar(select(WebhookDelivery.id).where(
                    WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now).limit(1)) is None:
                return []
        pending = (
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at).limit(BATCH).with_for_update(skip_locked=True)
        )
        stmt = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(pending.scalar_subquery()), WebhookDelivery.status == "pending")
            .values(next_attempt_at=now + IN_FLIGHT, attempts=WebhookDelivery.attempts + 1)
            .returning(WebhookDelivery.id, WebhookDelivery.task_id, WebhookDelivery.event_type,
                       WebhookDelivery.url, WebhookDelivery.attempts)
        )
        async with self.deps.db.write() as session:
            return [Due(*row) for row in (await session.execute(stmt)).all()]

    async def _message(self, due: Due, now: datetime) -> tuple[str, str]:
        """The body (the task object as the API shows it now) and the account's secret."""
        async with self.deps.db.read() as session:
            task, secret = (await session.execute(
                select(Task, Account.webhook_secret).join(Account, Account.id == Task.account_id)
                .where(Task.id == due.task_id))).one()
        settings = self.deps.settings
        view = TaskView(self.deps.signer, settings.public_url or "http://127.0.0.1:8000",
                        timedelta(seconds=settings.media_url_ttl_seconds), now)
        body = {"type": due.event_type, "timestamp": iso_ms(now), "data": view.task(task)}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False), secret or ""

    async def _deliver(self, due: Due) -> None:
        now = self.deps.clock.now()
        started = time.perf_counter()
        entry: dict[str, Any] = {"at": iso_ms(now), "attempt": due.attempts}
        try:
            body, secret = await self._message(due, now)
            entry.update(await self._post(due, body, secret, now))
        except Exception as exc:  # any failure is this attempt's outcome, recorded and retried
            entry["error"] = f"{exc.__class__.__name__}: {exc}"[:300]
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000)
        await self._record(due, entry, delivered=200 <= entry.get("status_code", 0) < 300)

    async def _post(self, due: Due, body: str, secret: str, now: datetime) -> dict[str, Any]:
        refused = destination_problem(due.url, self.deps.settings.webhook_allow_private)
        if refused:
            return {"error": refused}
        headers = {
            "content-type": "application/json", "user-agent": f"sfumato-webhooks/{__version__}",
            "webhook-id": due.id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(due.id, now, body),
        }
        timeout = aiohttp.ClientTimeout(total=self.deps.settings.webhook_timeout_seconds)
        async with self._http().post(due.url, data=body.encode(), headers=headers, timeout=timeout,
                                     allow_redirects=False) as response:
            answer = await response.content.read(MAX_RESPONSE)
            return {"status_code": response.status, "response": answer.decode("utf-8", "replace")[:300]}

    async def _record(self, due: Due, entry: dict[str, Any], *, delivered: bool) -> None:
        now = self.deps.clock.now()
        values: dict[str, Any]
        if delivered:
            values = {"status": "delivered", "delivered_at": now}
        elif due.attempts > len(SCHEDULE):
            values = {"status": "failed"}
            log.warning("webhook %s to %s failed after %d attempts", due.id, due.url, due.attempts)
        else:
            values = {"next_attempt_at": now + timedelta(seconds=SCHEDULE[due.attempts - 1])}
        async with self.deps.db.write() as session:
            row = await session.get(WebhookDelivery, due.id, with_for_update=True)
            if row is None or row.status != "pending" or row.attempts != due.attempts:
                return  # taken over meanwhile (this send outlived IN_FLIGHT)
            row.log = [*row.log, entry]
            for key, value in values.items():
                setattr(row, key, value)

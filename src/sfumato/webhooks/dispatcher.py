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
from aiohttp.abc import AbstractResolver, ResolveResult
from sqlalchemy import select, update
from standardwebhooks import Webhook

from sfumato import __version__
from sfumato.api.schemas import TaskView
from sfumato.clock import iso_ms
from sfumato.db.models import Account, Task, WebhookDelivery
from sfumato.deps import Deps
from sfumato.webhooks import urls

log = logging.getLogger("sfumato.webhooks")
SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000)
"""Seconds before each retry after the first attempt: the Standard Webhooks reference schedule
(5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), about 27 hours in all, 8 attempts."""
IN_FLIGHT = timedelta(minutes=2)
BATCH = 32
MAX_RESPONSE = 4096
"""Bytes of a receiver's answer read (and kept in the log); the rest is not waited for."""


class NoNames(AbstractResolver):
    """The HTTP client's resolver for webhooks: it resolves nothing. A delivery's URL is
    resolved and checked by :func:`urls.resolve` and sent to the checked address, so a name
    reaching the client would be a bug; it fails instead of connecting somewhere unchecked."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        raise OSError(f"webhooks connect to checked addresses only, not to the name {host!r}")

    async def close(self) -> None:
        return None


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
            connector = aiohttp.TCPConnector(resolver=NoNames(), limit=64)
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
        refused = urls.destination_problem(due.url, self.deps.settings.webhook_allow_private)
        try:
            if refused:  # never sent, whatever the time: fails now instead of retrying for a day
                entry["error"] = refused
            else:
                body, secret = await self._message(due, now)
                entry.update(await self._post(due, body, secret, now))
        except Exception as exc:  # any failure is this attempt's outcome, recorded and retried
            entry["error"] = f"{exc.__class__.__name__}: {exc}"[:300]
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000)
        await self._record(due, entry, delivered=200 <= entry.get("status_code", 0) < 300, final=bool(refused))

    async def _post(self, due: Due, body: str, secret: str, now: datetime) -> dict[str, Any]:
        """POST to the address the URL's host was resolved to and checked as, this attempt."""
        target = urls.parse(due.url)
        addresses = await urls.resolve(target, self.deps.settings.webhook_allow_private)
        headers = {
            "host": target.host_header,
            "content-type": "application/json", "user-agent": f"sfumato-webhooks/{__version__}",
            "webhook-id": due.id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(due.id, now, body),
        }
        timeout = aiohttp.ClientTimeout(total=self.deps.settings.webhook_timeout_seconds)
        tls_name = target.host.rstrip(".") if target.literal is None and target.url.scheme == "https" else None
        for address in addresses:  # each one checked; the next only if this one cannot be reached
            try:
                async with self._http().post(target.connect_url(address), data=body.encode(), headers=headers,
                                             timeout=timeout, allow_redirects=False,
                                             server_hostname=tls_name) as response:
                    answer = await response.content.read(MAX_RESPONSE)
                    return {"status_code": response.status, "response": answer.decode("utf-8", "replace")[:300]}
            except aiohttp.ClientConnectorError as exc:
                unreachable = exc
        raise unreachable

    async def _record(self, due: Due, entry: dict[str, Any], *, delivered: bool, final: bool = False) -> None:
        now = self.deps.clock.now()
        values: dict[str, Any]
        if delivered:
            values = {"status": "delivered", "delivered_at": now}
        elif final or due.attempts > len(SCHEDULE):
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

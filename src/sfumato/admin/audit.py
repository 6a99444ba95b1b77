"""The audit log: one append-only row per operator write, in the write's own transaction (a
write that rolls back leaves no entry; one that commits always has one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato import logs, pagination
from sfumato.clock import iso_ms
from sfumato.db.models import AuditEntry

ACTORS = ("admin-key", "cli")
_ID_RANGE = (-(2**31), 2**31 - 1)


async def record(session: AsyncSession, actor: str, action: str, target: str | None, now: datetime,
                 details: dict[str, Any] | None = None) -> None:
    """Append who did what to which, with the request id (over HTTP) from the log context."""
    session.add(AuditEntry(at=now, actor=actor, action=action, target=target,
                           request_id=logs.request_id.get() or None, details=details or {}))
    await session.flush()


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": iso_ms(entry.at), "actor": entry.actor, "action": entry.action,
            "target": entry.target, "request_id": entry.request_id, "details": entry.details}


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str | None

    def as_json(self) -> dict[str, Any]:
        return {"data": [entry_json(e) for e in self.entries], "next_cursor": self.next_cursor,
                "has_more": self.next_cursor is not None}


async def page(session: AsyncSession, cursor: str | None = None, limit: int = 50) -> AuditPage:
    """Newest first, a page at a time (a cursor over the id, like the ledger's)."""
    limit = max(1, min(limit, pagination.MAX_PAGE))
    stmt = select(AuditEntry)
    if cursor is not None:
        stmt = stmt.where(AuditEntry.id < min(max(pagination.decode_id(cursor), _ID_RANGE[0]), _ID_RANGE[1]))
    rows = list(await session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    shown = rows[:limit]
    return AuditPage(shown, pagination.encode_id(shown[-1].id) if len(rows) > limit else None)

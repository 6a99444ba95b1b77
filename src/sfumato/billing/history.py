"""Reading the ledger back: one account's entries, newest first, a page at a time.

The one implementation behind the customer's ``GET /api/v1/account/ledger`` and the operator's
``GET /admin/v1/accounts/{id}/ledger``::

    async def ledger_page(session: AsyncSession, account_id: str, cursor: str | None = None,
                          limit: int = 20) -> LedgerPage

``LedgerPage.as_json()`` is the response body, ``{"data": [entry…], "next_cursor", "has_more"}``;
an entry is ``{id, task_id, kind, amount, balance_after, note, created_at}``. The cursor is over the
entry id alone (opaque, ``pagination.encode_id``): entries are appended, never changed.
A malformed cursor is ``ValidationFailed`` (422, field ``cursor``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato import pagination
from sfumato.clock import iso_ms
from sfumato.db.models import LedgerEntry

_ID_RANGE = (-(2**31), 2**31 - 1)
"""The id column's range on PostgreSQL: a cursor pointing beyond it is clamped, not an error."""


def entry_json(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "task_id": entry.task_id, "kind": entry.kind, "amount": entry.amount,
        "balance_after": entry.balance_after, "note": entry.note, "created_at": iso_ms(entry.created_at),
    }


@dataclass(frozen=True, slots=True)
class LedgerPage:
    entries: list[LedgerEntry]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None

    def as_json(self) -> dict[str, Any]:
        return {"data": [entry_json(e) for e in self.entries], "next_cursor": self.next_cursor,
                "has_more": self.has_more}


async def ledger_page(
    session: AsyncSession, account_id: str, cursor: str | None = None, limit: int = 20
) -> LedgerPage:
    """``account_id``'s entries after ``cursor``, newest first; ``limit`` capped at
    ``pagination.MAX_PAGE``. Another account's entries are never in the page."""
    limit = max(1, min(limit, pagination.MAX_PAGE))
    stmt = select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if cursor is not None:
        before = min(max(pagination.decode_id(cursor), _ID_RANGE[0]), _ID_RANGE[1])
        stmt = stmt.where(LedgerEntry.id < before)
    rows = list(await session.scalars(stmt.order_by(LedgerEntry.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    return LedgerPage(page, pagination.encode_id(page[-1].id) if len(rows) > limit else None)

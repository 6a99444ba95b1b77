"""Usage: tasks by status and credits charged and refunded, per UTC day, model and account.

The one implementation behind the customer's ``GET /api/v1/account/usage`` and the operator's
``GET /admin/v1/usage``::

    async def usage(session: AsyncSession, *, start: date, end: date,
                    group_by: tuple[str, ...] = ("day", "model"),
                    account_id: str | None = None) -> list[UsageRow]
    def to_csv(rows: list[UsageRow], group_by: tuple[str, ...] = ("day", "model")) -> str
    def parse_range(start: str | None, end: str | None, today: date) -> tuple[date, date]
    def parse_group_by(raw: str | None) -> tuple[str, ...]

``start`` and ``end`` are UTC days, both included. A task is counted on the day it was created
(by its status now); credits on the day their ledger entry was written, so the credits of a
range add up to exactly what the ledger (``GET /api/v1/account/ledger``) shows for it. A task
created at 23:59 and charged at 00:01 is one task on the first day and its charge on the second.

*Charged* is what ``settle`` entries made final (the entry moves no credits; its note records the
charge, ``charged N``, written by ``ledger.settle`` and by ``tasks/queries.py``). *Refunded* is
the credits ``release`` entries gave back (a failed or canceled task's reservation, or the part a
success did not use) plus ``refund`` entries (an operator returning a succeeded task's charge).
Grants belong to no task and no model and are not usage.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import BigInteger, Date, case, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from sfumato.db.models import LedgerEntry, Task
from sfumato.errors import FieldError, ValidationFailed
from sfumato.tasks.status import Status

GROUPS = ("day", "model", "account")
"""What rows may be grouped by, in the order a row's keys (and CSV columns) come."""
STATUSES = tuple(s.value for s in (Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.QUEUED, Status.RUNNING))
"""Every status, ended ones first: the order of a row's ``tasks`` and of the CSV's columns."""
DEFAULT_DAYS = 30
"""Without ``from``: the 30 days up to and including ``to`` (today by default)."""
MAX_DAYS = 366
"""The longest range one request may ask for."""
_SETTLE_NOTE = "charged "


@dataclass(slots=True)
class UsageRow:
    """One group. A key not grouped by is ``None`` (and absent from :meth:`as_dict`)."""

    day: date | None = None
    model: str | None = None
    account_id: str | None = None
    tasks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    credits_charged: int = 0
    credits_refunded: int = 0

    def as_dict(self, group_by: tuple[str, ...] = GROUPS) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if "day" in group_by:
            row["day"] = None if self.day is None else self.day.isoformat()
        if "model" in group_by:
            row["model"] = self.model
        if "account" in group_by:
            row["account_id"] = self.account_id
        return {**row, "tasks": dict(self.tasks), "credits_charged": self.credits_charged,
                "credits_refunded": self.credits_refunded}


def parse_group_by(raw: str | None) -> tuple[str, ...]:
    """``"day,model,account"`` (any of them, any order, once each) as a canonical tuple."""
    if raw is None or not raw.strip():
        return ("day", "model")
    asked = [part.strip() for part in raw.split(",")]
    unknown = [part for part in asked if part not in GROUPS]
    if unknown:
        raise ValidationFailed(details=[FieldError(
            "group_by", f"Unknown grouping {unknown[0][:40]!r}; use a comma-separated list of: {', '.join(GROUPS)}.")])
    return tuple(g for g in GROUPS if g in asked)


def _day(raw: str, name: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(details=[FieldError(name, "Expected a date as YYYY-MM-DD (a UTC day).")]) from None


def parse_range(start: str | None, end: str | None, today: date) -> tuple[date, date]:
    """``from``/``to`` as given (ISO dates, both included; either may be left out) checked:
    ``to`` defaults to ``today``, ``from`` to :data:`DEFAULT_DAYS` days before ``to``."""
    last = today if end is None else _day(end, "to")
    default = date.min if (last - date.min).days < DEFAULT_DAYS else last - timedelta(days=DEFAULT_DAYS - 1)
    first = default if start is None else _day(start, "from")
    if first > last:
        raise ValidationFailed(details=[FieldError("from", f"from ({first}) is after to ({last}).")])
    if (last - first).days + 1 > MAX_DAYS:
        raise ValidationFailed(details=[FieldError("to", f"The range spans {(last - first).days + 1} days; "
                                                         f"at most {MAX_DAYS} may be asked for at once.")])
    return first, last


def _utc_day(column: Any, sqlite: bool) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column. SQLite keeps UTC as naive text, whose
    ``date()`` is the day; PostgreSQL's ``timestamptz`` is cast in UTC, not the session's zone."""
    if sqlite:
        return func.date(column)
    # A literal, not a bound parameter: GROUP BY must repeat the SELECT's expression exactly.
    return cast(func.timezone(literal_column("'UTC'"), column), Date)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    since = datetime.combine(start, time(), UTC)
    if end == date.max:
        return since, datetime.max.replace(tzinfo=UTC)
    return since, datetime.combine(end + timedelta(days=1), time(), UTC)


def _keys(group_by: tuple[str, ...], day: ColumnElement[Any], model: Any, account: Any) -> list[Any]:
    columns = {"day": day, "model": model, "account": account}
    return [columns[g].label(g) for g in GROUPS if g in group_by]


async def usage(
    session: AsyncSession, *, start: date, end: date, group_by: tuple[str, ...] = ("day", "model"),
    account_id: str | None = None,
) -> list[UsageRow]:
    """Rows for the UTC days ``start`` to ``end`` (both included), grouped by any of
    :data:`GROUPS` (none: one row of totals, when there is anything), sorted by their keys;
    only groups with a task or a credit movement appear. ``account_id``: one account's only."""
    unknown = [g for g in group_by if g not in GROUPS]
    if unknown:
        raise ValidationFailed(details=[FieldError("group_by", f"Unknown grouping {unknown[0][:40]!r}.")])
    sqlite = session.get_bind().dialect.name == "sqlite"
    since, until = _bounds(start, end)
    rows: dict[tuple[Any, ...], UsageRow] = {}

    def row(key: tuple[Any, ...]) -> UsageRow:
        if key not in rows:
            values = dict(zip([g for g in GROUPS if g in group_by], key, strict=True))
            rows[key] = UsageRow(day=None if values.get("day") is None else _as_date(values["day"]),
                                 model=values.get("model"), account_id=values.get("account"))
        return rows[key]

    keys = _keys(group_by, _utc_day(Task.created_at, sqlite), Task.model, Task.account_id)
    tasks = (select(*keys, Task.status, func.count().label("n"))
             .where(Task.created_at >= since, Task.created_at < until)
             .group_by(*[k.element for k in keys], Task.status))
    if account_id is not None:
        tasks = tasks.where(Task.account_id == account_id)
    for found in await session.execute(tasks):
        *key, status, count = found
        row(_normal(key, group_by)).tasks[status] = int(count)

    keys = _keys(group_by, _utc_day(LedgerEntry.created_at, sqlite), Task.model, LedgerEntry.account_id)
    charged = case((LedgerEntry.kind == "settle",
                    cast(func.substr(LedgerEntry.note, len(_SETTLE_NOTE) + 1), BigInteger)), else_=0)
    refunded = case((LedgerEntry.kind.in_(("release", "refund")), LedgerEntry.amount), else_=0)
    credits = (select(*keys, func.sum(charged), func.sum(refunded))
               .join(Task, Task.id == LedgerEntry.task_id)
               .where(LedgerEntry.created_at >= since, LedgerEntry.created_at < until,
                      LedgerEntry.kind.in_(("settle", "release", "refund")))
               .group_by(*[k.element for k in keys]))
    if account_id is not None:
        credits = credits.where(LedgerEntry.account_id == account_id)
    for found in await session.execute(credits):
        *key, charge, refund = found
        target = row(_normal(key, group_by))
        target.credits_charged += int(charge or 0)
        target.credits_refunded += int(refund or 0)
    return sorted(rows.values(), key=_order)


def _normal(key: list[Any], group_by: tuple[str, ...]) -> tuple[Any, ...]:
    """The same group from either query: the day as a ``date`` (SQLite answers text)."""
    names = [g for g in GROUPS if g in group_by]
    return tuple(_as_date(v) if name == "day" and v is not None else v for name, v in zip(names, key, strict=True))


def _order(row: UsageRow) -> tuple[Any, ...]:
    return (row.day or date.min, row.model or "", row.account_id or "")


def to_csv(rows: list[UsageRow], group_by: tuple[str, ...] = ("day", "model")) -> str:
    """A spreadsheet of the rows: the grouped keys, one column per status, then the credits."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    heads = [{"account": "account_id"}.get(g, g) for g in GROUPS if g in group_by]
    writer.writerow([*heads, *STATUSES, "credits_charged", "credits_refunded"])
    for one in rows:
        shaped = one.as_dict(group_by)
        writer.writerow([*(shaped[h] for h in heads), *(one.tasks[s] for s in STATUSES),
                         one.credits_charged, one.credits_refunded])
    return out.getvalue()

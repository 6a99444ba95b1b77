"""Opaque cursors over (created_at, id), newest first: stable under concurrent inserts."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from sfumato.errors import FieldError, ValidationFailed

MAX_PAGE = 100


def encode(created_at: datetime, row_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, str]:
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValidationFailed(details=[FieldError("cursor", "Not a cursor this API returned.")]) from exc


def page_query(
    stmt: Select[Any], created: InstrumentedAttribute[Any], ident: InstrumentedAttribute[Any],
    cursor: str | None, limit: int,
) -> tuple[Select[Any], int]:
    """``stmt`` ordered newest first, after ``cursor``, fetching one row more than the page."""
    if cursor is not None:
        at, last = decode(cursor)
        stmt = stmt.where(or_(created < at, and_(created == at, ident < last)))
    limit = max(1, min(limit, MAX_PAGE))
    return stmt.order_by(created.desc(), ident.desc()).limit(limit + 1), limit


def encode_id(row_id: int) -> str:
    """A cursor over an integer id alone (an append-only table whose ids only grow)."""
    return base64.urlsafe_b64encode(json.dumps([row_id]).encode()).decode().rstrip("=")


def decode_id(cursor: str) -> int:
    try:
        (row_id,) = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValidationFailed(details=[FieldError("cursor", "Not a cursor this API returned.")]) from exc
    if not isinstance(row_id, int) or isinstance(row_id, bool):
        raise ValidationFailed(details=[FieldError("cursor", "Not a cursor this API returned.")])
    return row_id

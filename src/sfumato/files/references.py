"""Turns ``referenceMediaItems`` into files the account owns. No URL is ever fetched.

An item's ``kind`` and ``mimeType`` may be left out: the file the URL names has them (the server
decided them from its bytes), so they are filled in from it; given, they must be the file's own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.catalog.spec import ReferenceRules
from sfumato.catalog.validate import REFERENCES_KEY, ReferenceItem
from sfumato.db.models import StoredFile
from sfumato.errors import FieldError, ValidationFailed
from sfumato.files.urls import MediaSigner, file_id_from_url

NOT_OURS = "url must be a file URL issued by this server to this account (upload it through /api/v1/files)."


def _duration_problem(item: ReferenceItem, stored: StoredFile, signer: MediaSigner | None, now: datetime) -> str | None:
    """Video and audio need the ``durationToken`` their upload returned, unchanged and unexpired."""
    if stored.kind not in ("video", "audio"):
        return None
    if not item.duration_token:
        return f"A {stored.kind} reference needs the durationToken its upload returned."
    valid = signer is not None and stored.duration_ms is not None and signer.verify_duration_token(
        item.duration_token, stored.id, stored.account_id, stored.duration_ms, now)
    return None if valid else "The durationToken is invalid, expired, or not this file's."


def _mismatches(item: ReferenceItem, stored: StoredFile, path: str) -> list[FieldError]:
    """A ``kind`` or ``mimeType`` given that is not the file's (left out, it is the file's)."""
    wrong = []
    if item.kind is not None and item.kind != stored.kind:
        wrong.append(FieldError(f"{path}.kind", f"kind {item.kind[:40]!r} is not this file's: it is {stored.kind!r} "
                                                "(leave kind out to use the file's own)."))
    if item.mime_type is not None and item.mime_type != stored.mime_type:
        wrong.append(FieldError(f"{path}.mimeType", f"mimeType {item.mime_type[:80]!r} is not this file's: it "
                                                    f"is {stored.mime_type!r} (leave mimeType out to use the "
                                                    "file's own)."))
    return wrong


def _unaccepted(stored: StoredFile, rules: ReferenceRules | None, path: str) -> FieldError | None:
    """Whether the model takes the file, by its own kind and type (checked here, since an item
    that left them out could not be checked against the catalog before)."""
    if rules is None:
        return None
    limit = rules.limit_for(stored.kind)
    if stored.kind not in rules.kinds or limit is None:
        return FieldError(f"{path}.url", f"The file is of kind {stored.kind!r}; this model accepts reference kinds: "
                                         f"{', '.join(rules.kinds)}.")
    if stored.mime_type not in limit.mime_types:
        return FieldError(f"{path}.url", f"The file's type is {stored.mime_type!r}; a {stored.kind} reference must be "
                                         f"one of: {', '.join(limit.mime_types)}.")
    return None


async def resolve(
    session: AsyncSession, account_id: str, items: tuple[ReferenceItem, ...], now: datetime,
    signer: MediaSigner | None = None, rules: ReferenceRules | None = None,
) -> list[StoredFile]:
    """The account's live file for each item, in order, or ``ValidationFailed`` naming each bad one.

    Another account's file is reported exactly like a file that does not exist, before anything
    of it (its kind, its type) is compared or said. ``rules``: the model's, checked against the
    file's own kind and type.
    """
    if not items:
        return []
    wanted = [file_id_from_url(item.url) for item in items]
    found = {
        f.id: f
        for f in await session.scalars(
            select(StoredFile).where(
                StoredFile.id.in_([w for w in wanted if w]),
                StoredFile.account_id == account_id,
                StoredFile.deleted_at.is_(None),
            )
        )
    }
    errors: list[FieldError] = []
    files: list[StoredFile] = []
    for index, (item, file_id) in enumerate(zip(items, wanted, strict=True)):
        path = f"params.{REFERENCES_KEY}[{index}]"
        stored = found.get(file_id) if file_id else None
        if stored is None:
            errors.append(FieldError(f"{path}.url", NOT_OURS))
        elif stored.expires_at is not None and stored.expires_at <= now:
            errors.append(FieldError(f"{path}.url", "This file has expired; upload it again."))
        elif wrong := _mismatches(item, stored, path):
            errors.extend(wrong)
        elif unaccepted := _unaccepted(stored, rules, path):
            errors.append(unaccepted)
        elif problem := _duration_problem(item, stored, signer, now):
            errors.append(FieldError(f"{path}.durationToken", problem))
        else:
            files.append(stored)
    if errors:
        raise ValidationFailed(details=errors)
    return files

"""``/api/v1/files/{id}/content``: media bytes behind a signed, expiring URL (no API key needed)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, Response

from sfumato.api.dependencies import DepsDep
from sfumato.api.schemas import ErrorEnvelope
from sfumato.db.models import StoredFile
from sfumato.errors import LinkExpired, NotFound

router = APIRouter(prefix="/api/v1/files", tags=["files"])


@router.get(
    "/{file_id}/content",
    summary="Download a file through its signed URL",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}, "description": "The bytes."},
        403: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope},
    },
)
async def file_content(
    file_id: str,
    deps: DepsDep,
    expires: Annotated[int, Query(ge=0, le=2**40)],
    signature: Annotated[str, Query(max_length=100)],
) -> Response:
    async with deps.db.read() as session:
        stored = await session.get(StoredFile, file_id)
    if stored is None or stored.deleted_at is not None:
        raise NotFound("No such file.")
    if not deps.signer.verify(file_id, stored.account_id, expires, signature, deps.clock.now()):
        raise LinkExpired()
    headers = {
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(stored.name)}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=300",
    }
    path = deps.storage.local_path(stored.storage_key)
    if path is not None:
        return FileResponse(path, media_type=stored.mime_type, headers=headers)
    data = await deps.storage.get(stored.storage_key)
    return Response(data, media_type=stored.mime_type, headers=headers)

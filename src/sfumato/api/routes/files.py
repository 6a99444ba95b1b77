"""``/api/v1/files``: upload reference files, read, list and delete them, and download any
file (upload or output) through its signed, expiring URL."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from pydantic import WithJsonSchema

from sfumato.api.dependencies import DepsDep, PrincipalDep
from sfumato.api.request_schemas import CURSOR, upload_body
from sfumato.api.schemas import ErrorEnvelope, FileOut, FilePage
from sfumato.clock import iso_ms
from sfumato.db.models import StoredFile
from sfumato.deps import Deps
from sfumato.errors import FileTooLarge, LinkExpired, NotFound
from sfumato.files import multipart, uploads
from sfumato.settings import Settings

router = APIRouter(prefix="/api/v1/files", tags=["files"])
MULTIPART_SLACK = 64 * 1024
"""Room for the multipart boundaries, part headers and small fields around the file itself."""
_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorEnvelope} for code in (401, 404, 422)}


def file_view(deps: Deps, request: Request, stored: StoredFile) -> dict[str, Any]:
    now = deps.clock.now()
    expires = now + timedelta(seconds=deps.settings.media_url_ttl_seconds)
    if stored.expires_at is not None:
        expires = min(expires, stored.expires_at)
    base = deps.settings.public_url or str(request.base_url)
    media: dict[str, Any] = {}
    if stored.duration_ms is not None:
        until = now + timedelta(hours=deps.settings.duration_token_ttl_hours)
        if stored.expires_at is not None:
            until = min(until, stored.expires_at)
        media = {"duration_seconds": stored.duration_ms / 1000,
                 "durationToken": deps.signer.duration_token(stored.id, stored.account_id, stored.duration_ms, until)}
    return {
        "id": stored.id, "url": deps.signer.url(base, stored.id, stored.account_id, expires),
        "kind": stored.kind, "name": stored.name, "mimeType": stored.mime_type, "bytes": stored.bytes,
        "width": stored.width, "height": stored.height, "purpose": stored.purpose,
        "created_at": iso_ms(stored.created_at),
        "expires_at": iso_ms(stored.expires_at) if stored.expires_at else None,
        **media,
    }


def upload_body_limit(settings: Settings) -> int:
    """The hard cap on an upload's body (:mod:`sfumato.api.bodies`): above the route's own
    limits, which answer first with ``file_too_large`` and drain a little before closing."""
    return max(uploads.limits(settings).values()) + MULTIPART_SLACK + multipart.DRAIN + 1024 * 1024


async def _receive_upload(request: Request, deps: Deps, account_id: str) -> StoredFile:
    """Stream the body into a spool file (refused past the limit, whatever it declared), then
    keep it. A declared ``Content-Length`` over every limit is refused before storing a byte."""
    limits = uploads.limits(deps.settings)
    body_cap = max(limits.values()) + MULTIPART_SLACK
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_cap:
        error = FileTooLarge("The upload is over the size limit.")
        if request.headers.get("expect", "").lower() == "100-continue":
            raise multipart.closing(error)  # the client waits for a go-ahead: it sends nothing
        await multipart.drain_or_close(request.stream(), error)
        raise error
    spooled = await multipart.spool_file_part(request.stream(), request.headers.get("content-type"),
                                              deps.storage.temp_dir(), limits, body_cap)
    return await uploads.store_upload(deps, account_id, spooled, deps.clock.now())


@router.post(
    "", summary="Upload a reference file", status_code=201, response_model=FileOut,
    openapi_extra={"requestBody": upload_body(multipart.MAX_PARTS)},
    responses={413: {"model": ErrorEnvelope}, **_errors},
)
async def upload_file(request: Request, deps: DepsDep, who: PrincipalDep) -> JSONResponse:
    stored = await _receive_upload(request, deps, who.account_id)
    return JSONResponse(file_view(deps, request, stored), status_code=201)


@router.get("", summary="List files", response_model=FilePage, responses=_errors)
async def list_files(
    request: Request, deps: DepsDep, who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500), WithJsonSchema(CURSOR)] = None,
) -> JSONResponse:
    async with deps.db.read() as session:
        rows, next_cursor = await uploads.list_files(session, who.account_id, deps.clock.now(),
                                                     limit=limit, cursor=cursor)
    return JSONResponse({"data": [file_view(deps, request, r) for r in rows], "next_cursor": next_cursor,
                         "has_more": next_cursor is not None})


@router.get("/{file_id}", summary="Get a file's metadata and a fresh URL", response_model=FileOut, responses=_errors)
async def get_file(file_id: str, request: Request, deps: DepsDep, who: PrincipalDep) -> JSONResponse:
    async with deps.db.read() as session:
        stored = await uploads.get_file(session, who.account_id, file_id, deps.clock.now())
    return JSONResponse(file_view(deps, request, stored))


@router.delete("/{file_id}", summary="Delete a file", status_code=204, response_class=Response, responses=_errors)
async def delete_file(file_id: str, deps: DepsDep, who: PrincipalDep) -> Response:
    async with deps.db.write() as session:
        await uploads.delete_file(session, who.account_id, file_id, deps.clock.now())
    return Response(status_code=204)


@router.get(
    "/{file_id}/content",
    summary="Download a file through its signed URL",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "video/mp4": {}, "audio/wav": {}},
              "description": "The bytes."},
        403: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope},
    },
)
async def file_content(
    file_id: str,
    deps: DepsDep,
    expires: Annotated[str, Query(description="Unix seconds, exactly as in the issued link.")],
    signature: Annotated[str, Query(max_length=100)],
) -> Response:
    # The link is checked before anything is looked up: a bad one answers alike (and as fast)
    # whether the file exists or not. Only the server can sign, so a 404 tells nothing new.
    if not deps.signer.verify(file_id, expires, signature, deps.clock.now()):
        raise LinkExpired()
    async with deps.db.read() as session:
        stored = await session.get(StoredFile, file_id)
    if stored is None or stored.deleted_at is not None:
        raise NotFound("No such file.")
    headers = {
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(stored.name)}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=300",
    }
    path = deps.storage.local_path(stored.storage_key)
    if path is not None:
        return FileResponse(path, media_type=stored.mime_type, headers=headers)
    if deps.settings.s3_presigned_downloads:
        seconds = max(1, min(300, int(expires) - int(deps.clock.now().timestamp())))
        target = await deps.storage.presigned_url(stored.storage_key, seconds, mime_type=stored.mime_type,
                                                  disposition=headers["Content-Disposition"])
        if target is not None:
            return RedirectResponse(target, status_code=307, headers={"Cache-Control": "no-store"})
    return StreamingResponse(deps.storage.stream(stored.storage_key), media_type=stored.mime_type,
                             headers={**headers, "Content-Length": str(stored.bytes)})

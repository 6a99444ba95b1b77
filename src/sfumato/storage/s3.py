"""Object storage on S3 or anything speaking its API (MinIO, R2, Ceph…), through aioboto3.

Objects are written whole by ``PutObject`` (or a multipart upload for large files), which S3
makes visible all at once: no reader sees half a file. A multipart upload cut short leaves its
parts behind, unlisted but billed; ``sweep_interrupted`` aborts those. Uploads still arrive in a local spool
directory first (they are sniffed there), then stream from it to the bucket. Downloads are
streamed through sfumato (signed sfumato URLs, unchanged), or, with
``SFUMATO_S3_PRESIGNED_DOWNLOADS``, redirected to a short-lived presigned URL of the bucket.
Credentials come from the standard AWS chain (environment, config files, instance roles).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from sfumato.storage.base import StoredKey
from sfumato.storage.spool import sweep

CHUNK = 256 * 1024


class S3Storage:
    def __init__(self, bucket: str, *, spool_dir: Path, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._spool = spool_dir
        self._options: dict[str, Any] = {"endpoint_url": endpoint_url, "region_name": region,
                                         "config": Config(retries={"max_attempts": 3, "mode": "standard"})}
        self._session = aioboto3.Session()
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._opening = asyncio.Lock()

    async def _s3(self) -> Any:
        """One client for the process, opened in the running loop on first use."""
        if self._client is None:
            async with self._opening:
                if self._client is None:
                    stack = contextlib.AsyncExitStack()
                    self._client = await stack.enter_async_context(self._session.client("s3", **self._options))
                    self._stack = stack
        return self._client

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = self._client = None

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def put(self, key: str, data: bytes) -> None:
        await (await self._s3()).put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    async def put_file(self, key: str, source: Path) -> None:
        """Stream the finished spool file to the bucket (multipart when large), then remove it."""
        try:
            await (await self._s3()).upload_file(str(source), self.bucket, self._key(key))
        finally:
            source.unlink(missing_ok=True)  # noqa: ASYNC240 (one unlink; the spool file is ours)

    def temp_dir(self) -> Path:
        self._spool.mkdir(parents=True, exist_ok=True)
        return self._spool

    async def sweep_temp(self, older_than: timedelta) -> int:
        return await asyncio.to_thread(sweep, self.temp_dir(), older_than)

    async def get(self, key: str) -> bytes:
        try:
            answer = await (await self._s3()).get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(key) from exc
            raise
        async with answer["Body"] as body:
            return bytes(await body.read())

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        answer = await (await self._s3()).get_object(Bucket=self.bucket, Key=self._key(key))
        body = answer["Body"]
        try:
            async for chunk in body.iter_chunks(CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await (await self._s3()).delete_object(Bucket=self.bucket, Key=self._key(key))

    async def scan(self, prefix: str) -> AsyncIterator[StoredKey]:
        """One ``ListObjectsV2`` page (up to 1,000 keys) in memory at a time."""
        pages = (await self._s3()).get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix))
        async for page in pages:
            for item in page.get("Contents", []):
                yield StoredKey(item["Key"][len(self.prefix):], item["LastModified"])

    async def sweep_interrupted(self, prefix: str, before: datetime) -> int:
        """Abort the multipart uploads under ``prefix`` begun before ``before``."""
        s3, aborted = await self._s3(), 0
        pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        async for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < before:
                    with contextlib.suppress(ClientError):  # finished or aborted meanwhile
                        await s3.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                        UploadId=upload["UploadId"])
                        aborted += 1
        return aborted

    def local_path(self, key: str) -> Path | None:
        return None

    async def presigned_url(self, key: str, seconds: int, *, mime_type: str, disposition: str) -> str:
        """A GET URL of the bucket itself, valid ``seconds``, answering with these headers."""
        return str(await (await self._s3()).generate_presigned_url("get_object", ExpiresIn=seconds, Params={
            "Bucket": self.bucket, "Key": self._key(key), "ResponseContentType": mime_type,
            "ResponseContentDisposition": disposition}))

    async def check(self) -> None:
        """Readiness: the bucket exists and these credentials may use it."""
        await (await self._s3()).head_bucket(Bucket=self.bucket)

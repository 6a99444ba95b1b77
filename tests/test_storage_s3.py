"""S3-compatible object storage, against moto's S3 server on loopback: the backend itself, and
the whole API on it (uploads, task outputs, downloads streamed or presigned, deletes, readiness)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from sfumato.clock import FrozenClock
from sfumato.files.cleanup import purge_orphans
from tests.conftest import new_customer, serve
from tests.helpers import create, wait_for_task
from tests.processes import free_port
from tests.test_orphans import killed_worker_outputs

BUCKET = "sfumato-test"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - moto is a dev dependency
        pytest.skip(f"moto's S3 server is not installed: {exc}")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Fake credentials (moto takes any) and a fresh, empty bucket."""
    import boto3

    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    if any(b["Name"] == BUCKET for b in client.list_buckets().get("Buckets", [])):
        for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    else:
        client.create_bucket(Bucket=BUCKET)
    return s3_endpoint


def _keys(endpoint: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), "purple").save(buffer, "PNG")
    return buffer.getvalue()


async def test_the_backend_puts_streams_and_deletes(s3: str, tmp_path: Path) -> None:
    from sfumato.storage.s3 import S3Storage

    storage = S3Storage(BUCKET, spool_dir=tmp_path / "spool", prefix="deploy-a", endpoint_url=s3)
    try:
        await storage.put("outputs/acc/a.png", b"abc")
        spooled = storage.temp_dir() / "upload-1.part"
        spooled.write_bytes(b"x" * (6 * 1024 * 1024))  # past boto's multipart threshold? at least streamed
        await storage.put_file("uploads/acc/b.png", spooled)
        assert not spooled.exists()  # the spool file is gone once the object is in
        assert await storage.get("outputs/acc/a.png") == b"abc"
        streamed = b"".join([chunk async for chunk in storage.stream("uploads/acc/b.png")])
        assert len(streamed) == 6 * 1024 * 1024
        assert _keys(s3) == ["deploy-a/outputs/acc/a.png", "deploy-a/uploads/acc/b.png"]
        await storage.delete("outputs/acc/a.png")
        await storage.delete("outputs/acc/never-was.png")  # missing: not an error
        with pytest.raises(FileNotFoundError):
            await storage.get("outputs/acc/a.png")
        await storage.check()
        old = storage.temp_dir() / "upload-old.part"
        old.write_bytes(b"left by a crash")
        assert await storage.sweep_temp(timedelta(seconds=-1)) == 1
    finally:
        await storage.aclose()


@pytest.mark.parametrize("presigned", [False, True], ids=["streamed", "presigned"])
async def test_the_api_on_s3(make_deps: Callable[..., Any], s3: str, presigned: bool) -> None:
    deps = await make_deps(storage_backend="s3", s3_bucket=BUCKET, s3_endpoint_url=s3, s3_region="us-east-1",
                           s3_presigned_downloads=presigned, sandbox_latency_ms="10")
    async with serve(deps) as client:
        who = await new_customer(deps)
        upload = (await client.post("/api/v1/files", files={"file": ("a.png", _png(), "image/png")},
                                    headers=who.headers)).json()
        ref = {"url": upload["url"], "kind": "image", "name": "a.png", "mimeType": "image/png"}
        task = await wait_for_task(client, who, (await create(client, who, model="qwen-image",
                                                              params={"referenceMediaItems": [ref]})).json()["id"])
        [media] = task["result"]["media"]
        answer = await client.get(media["url"])
        if presigned:
            assert answer.status_code == 307 and answer.headers["location"].startswith(s3)
            async with httpx.AsyncClient() as outside:
                fetched = await outside.get(answer.headers["location"])
            assert fetched.headers["content-type"] == media["mimeType"]
            body = fetched.content
        else:
            assert answer.status_code == 200 and answer.headers["x-content-type-options"] == "nosniff"
            body = answer.content
        with Image.open(io.BytesIO(body)) as image:
            assert image.size == (media["width"], media["height"])
        ready = await client.get("/readyz")
        keys = _keys(s3)
        assert await client.delete(f"/api/v1/files/{upload['id']}", headers=who.headers)
    assert ready.status_code == 200
    assert any(k.startswith("uploads/") for k in keys) and any(k.startswith("outputs/") for k in keys)
    assert not list((deps.settings.data_dir / "spool").glob("upload-*"))  # nothing left in the spool


def test_s3_without_a_bucket_is_refused_at_startup() -> None:
    from pydantic import ValidationError

    from sfumato.settings import Settings

    with pytest.raises(ValidationError, match="SFUMATO_S3_BUCKET"):
        Settings(storage_backend="s3")


async def test_the_backend_scans_its_keys_and_aborts_interrupted_uploads(s3: str, tmp_path: Path) -> None:
    import boto3

    from sfumato.storage.s3 import S3Storage

    client = boto3.client("s3", endpoint_url=s3, region_name="us-east-1")
    storage = S3Storage(BUCKET, spool_dir=tmp_path / "spool", prefix="deploy-a", endpoint_url=s3)
    theirs = None
    try:
        for key in ("outputs/acc/a.png", "outputs/acc/b.png", "uploads/acc/c.png"):
            await storage.put(key, b"abc")
        client.put_object(Bucket=BUCKET, Key="deploy-b/outputs/acc/x.png", Body=b"another deployment's")
        listed = [item async for item in storage.scan("outputs/")]
        assert [item.key for item in listed] == ["outputs/acc/a.png", "outputs/acc/b.png"]
        assert all(abs(item.modified - datetime.now(UTC)) < timedelta(minutes=1) for item in listed)

        ours = client.create_multipart_upload(Bucket=BUCKET, Key="deploy-a/uploads/acc/big.mp4")
        client.upload_part(Bucket=BUCKET, Key="deploy-a/uploads/acc/big.mp4", UploadId=ours["UploadId"],
                           PartNumber=1, Body=b"x" * 1024)  # then the process died
        theirs = client.create_multipart_upload(Bucket=BUCKET, Key="deploy-b/uploads/acc/big.mp4")
        # moto dates every upload 2010-11-10, so the cutoffs are set from what the bucket says
        [begun] = [u["Initiated"] for u in client.list_multipart_uploads(Bucket=BUCKET)["Uploads"]
                   if u["Key"].startswith("deploy-a/")]
        assert await storage.sweep_interrupted("uploads/", begun) == 0  # not before: may be live
        assert await storage.sweep_interrupted("uploads/", begun + timedelta(seconds=1)) == 1
        left = [u["Key"] for u in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]
        assert left == ["deploy-b/uploads/acc/big.mp4"]
    finally:
        if theirs is not None:
            client.abort_multipart_upload(Bucket=BUCKET, Key="deploy-b/uploads/acc/big.mp4",
                                          UploadId=theirs["UploadId"])
        await storage.aclose()


async def test_orphans_on_s3_go_after_the_grace_and_nothing_else(make_deps: Callable[..., Any], s3: str) -> None:
    import boto3

    clock = FrozenClock()
    deps = await make_deps(storage_backend="s3", s3_bucket=BUCKET, s3_endpoint_url=s3, s3_region="us-east-1",
                           clock=clock, auth_cache_seconds=0)
    async with serve(deps) as client:
        who = await new_customer(deps)
        await client.post("/api/v1/files", files={"file": ("a.png", _png(), "image/png")}, headers=who.headers)
        task = await wait_for_task(client, who, (await create(client, who, model="qwen-image")).json()["id"])
        assert task["status"] == "succeeded"
    referenced = _keys(s3)
    assert len(referenced) == 2
    orphans = await killed_worker_outputs(deps, who.account_id)
    boto3.client("s3", endpoint_url=s3, region_name="us-east-1").put_object(
        Bucket=BUCKET, Key="backups/notes.png", Body=b"not sfumato's")
    assert await purge_orphans(deps) == 0  # young: perhaps a live worker's, about to commit
    clock.advance(seconds=deps.settings.orphan_grace_seconds + 1)
    assert await purge_orphans(deps) == len(orphans) == 2
    assert _keys(s3) == sorted([*referenced, "backups/notes.png"])
    await deps.storage.aclose()

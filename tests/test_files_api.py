"""The Files API and reference mode (issue: Files API and reference mode)."""

from __future__ import annotations

import io
import struct
import zlib
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from sfumato.clock import FrozenClock
from sfumato.db.models import StoredFile
from sfumato.deps import Deps
from sfumato.files.cleanup import purge_files
from sfumato.files.multipart import DRAIN
from sfumato.worker import lease
from tests.conftest import Customer, new_customer, serve
from tests.helpers import create, wait_for_task


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header declares a huge image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(
        b"IEND", b"")


async def upload(client: httpx.AsyncClient, who: Customer, data: bytes, name: str = "ref.png",
                 content_type: str = "image/png") -> httpx.Response:
    return await client.post("/api/v1/files", files={"file": (name, data, content_type)}, headers=who.headers)


def as_reference(file: dict) -> dict:
    return {"url": file["url"], "kind": file["kind"], "name": file["name"], "mimeType": file["mimeType"]}


def leftovers(deps: Deps) -> list[str]:
    root = deps.settings.storage_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "health" not in p.parts)


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
async def test_upload_records_the_real_type_and_size(client, customer, fmt: str, mime: str) -> None:
    data = image_bytes(fmt, (120, 80))
    response = await upload(client, customer, data, name="photo.bin", content_type="application/octet-stream")
    assert response.status_code == 201, response.text
    file = response.json()
    assert (file["kind"], file["mimeType"], file["bytes"], file["width"], file["height"]) == (
        "image", mime, len(data), 120, 80)
    assert set(file) == {"id", "url", "kind", "name", "mimeType", "bytes", "width", "height", "purpose",
                         "created_at", "expires_at"}
    assert (await client.get(file["url"])).content == data
    got = (await client.get(f"/api/v1/files/{file['id']}", headers=customer.headers)).json()
    assert got["id"] == file["id"]
    listed = (await client.get("/api/v1/files", headers=customer.headers)).json()
    assert [f["id"] for f in listed["data"]] == [file["id"]]


async def test_a_png_sent_as_jpeg_is_stored_as_png(client, customer) -> None:
    file = (await upload(client, customer, image_bytes("PNG"), name="x.jpg", content_type="image/jpeg")).json()
    assert file["mimeType"] == "image/png"


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"just some text, not an image", "text named .png"),
        (b"<html><script>alert(1)</script></html>", "html"),
        (b"GIF89a" + b"\0" * 64, "gif"),
        (b"%PDF-1.4\n" + b"0" * 64, "pdf"),
        (truncated(image_bytes("PNG", (400, 400))), "truncated png"),
        (truncated(image_bytes("JPEG", (400, 400))), "truncated jpeg"),
        (truncated(image_bytes("WEBP", (400, 400))), "truncated webp"),
        (bomb_png(), "decompression bomb"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_bad_files_are_refused_and_leave_nothing(deps, client, customer, data: bytes, why: str) -> None:
    response = await upload(client, customer, data, name="ref.png")
    assert response.status_code == 422, (why, response.text)
    assert response.json()["error"]["code"] == "validation_failed"
    assert leftovers(deps) == []
    async with deps.db.read() as session:
        assert (await session.scalars(select(StoredFile))).all() == []


async def test_a_missing_file_field_is_refused(client, customer) -> None:
    response = await client.post("/api/v1/files", data={"other": "x"}, headers=customer.headers)
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "file"
    not_multipart = await client.post("/api/v1/files", json={"file": "x"}, headers=customer.headers)
    assert not_multipart.status_code == 422


async def test_the_size_limit_is_exact_and_enforced_while_streaming(make_deps) -> None:
    data = image_bytes("PNG", (200, 200), "blue")
    deps = await make_deps(run_worker=False, upload_max_bytes=len(data))
    who = await new_customer(deps)
    async with serve(deps) as client:
        assert (await upload(client, who, data)).status_code == 201
        tight = await make_deps(run_worker=False, upload_max_bytes=len(data) - 1)
        async with serve(tight) as tight_client:
            over = await upload(tight_client, who, data)
            assert over.status_code == 413 and over.json()["error"]["code"] == "file_too_large"

        sent = 0

        async def endless():  # 50 MB with no Content-Length: cut off at the limit
            nonlocal sent
            yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
            for _ in range(50):
                sent += 1024 * 1024
                yield b"\0" * (1024 * 1024)

        streamed = await client.post("/api/v1/files", content=endless(), headers={
            **who.headers, "Content-Type": "multipart/form-data; boundary=b"})
        assert streamed.status_code == 413 and streamed.headers["connection"] == "close"
        assert sent <= len(data) + DRAIN + 2 * 1024 * 1024  # the limit and the dropped grace, each + 1 piece
    assert leftovers(deps) == [f for f in leftovers(deps) if f.startswith("uploads/")]
    assert len(leftovers(deps)) == 1


@pytest.mark.parametrize(
    ("given", "kept"),
    [("../../etc/passwd", "passwd"), ("..\\..\\win.png", "win.png"), ("evil\u202egnp.exe", "evilgnp.exe"),
     ("...", "upload.png")],
)
async def test_file_names_are_only_sanitised_metadata(deps, client, customer, given: str, kept: str) -> None:
    file = (await upload(client, customer, image_bytes(), name=given)).json()
    assert file["name"] == kept
    async with deps.db.read() as session:
        stored = await session.get(StoredFile, file["id"])
    assert stored is not None and stored.storage_key == f"uploads/{customer.account_id}/{file['id']}.png"


async def test_control_characters_sent_raw_are_dropped_from_the_name(client, customer) -> None:
    body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\x01b\x1f\x7f.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + image_bytes() + b"\r\n--b--\r\n")
    response = await client.post("/api/v1/files", content=body,
                                 headers={**customer.headers, "Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "ab.png"


async def test_a_long_thai_name_is_cut_at_a_character_boundary(client, customer) -> None:
    name = "ภาพอ้างอิง" * 30 + ".png"  # 300+ Thai characters, 3 bytes each in UTF-8
    file = (await upload(client, customer, image_bytes(), name=name)).json()
    assert len(file["name"].encode("utf-8")) <= 255
    assert name.startswith(file["name"])


async def test_another_accounts_file_is_not_found(deps, client, customer) -> None:
    other = await new_customer(deps, name="other")
    file = (await upload(client, customer, image_bytes())).json()
    strip = lambda r: {**r.json()["error"], "message": None}  # noqa: E731
    theirs = await client.get(f"/api/v1/files/{file['id']}", headers=other.headers)
    nothing = await client.get("/api/v1/files/file_00000000000000000000000000000000", headers=other.headers)
    assert theirs.status_code == nothing.status_code == 404 and strip(theirs) == strip(nothing)
    assert (await client.delete(f"/api/v1/files/{file['id']}", headers=other.headers)).status_code == 404
    used = await create(client, other, model="qwen-image", params={"referenceMediaItems": [as_reference(file)]})
    unknown = dict(as_reference(file), url=file["url"].replace(file["id"], "file_" + "0" * 32))
    made_up = await create(client, other, model="qwen-image", params={"referenceMediaItems": [unknown]})
    assert used.status_code == made_up.status_code == 422
    assert used.json()["error"]["details"] == made_up.json()["error"]["details"]


async def test_signed_urls_refuse_tampering_and_expiry(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, media_url_ttl_seconds=600)
    who = await new_customer(deps)
    async with serve(deps) as client:
        file = (await upload(client, who, image_bytes())).json()
        parts = urlsplit(file["url"])
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        signature = query["signature"]
        flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
        for changed in ({**query, "signature": flipped}, {**query, "expires": str(int(query["expires"]) + 1)}):
            tampered = await client.get(f"{parts.path}?{urlencode(changed)}")
            assert tampered.status_code == 403 and tampered.json()["error"]["code"] == "link_expired"
        odd = await client.get(f"{parts.path}?{urlencode({**query, 'signature': 'ñ€𝄞'})}")
        assert odd.status_code == 403  # found by Schemathesis: was a 500
        assert (await client.get(file["url"])).status_code == 200
        clock.advance(seconds=601)
        assert (await client.get(file["url"])).status_code == 403


async def test_signed_output_urls_refuse_tampering_and_expiry(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(clock=clock, media_url_ttl_seconds=600, auth_cache_seconds=0)
    who = await new_customer(deps)
    async with serve(deps) as client:
        task = await wait_for_task(client, who, (await create(client, who, model="qwen-image")).json()["id"])
        url = task["result"]["media"][0]["url"]
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        flipped = query["signature"][:-1] + ("A" if query["signature"][-1] != "A" else "B")
        for changed in ({**query, "signature": flipped}, {**query, "expires": str(int(query["expires"]) + 600)}):
            assert (await client.get(f"{parts.path}?{urlencode(changed)}")).status_code == 403
        other = (await upload(client, who, image_bytes())).json()  # a valid signature, another file
        assert (await client.get(url.replace(parts.path, urlsplit(other["url"]).path))).status_code == 403
        assert (await client.get(url)).status_code == 200
        clock.advance(seconds=601)
        expired = await client.get(url)
        assert expired.status_code == 403 and expired.json()["error"]["code"] == "link_expired"


@pytest.mark.parametrize(("model", "maximum"), [("gpt-image-1-5", 16), ("qwen-image", 1), ("grok-imagine", 1)])
async def test_reference_counts_follow_each_model(client, customer, model: str, maximum: int) -> None:
    file = (await upload(client, customer, image_bytes())).json()
    ok = await create(client, customer, model=model, params={"referenceMediaItems": [as_reference(file)] * maximum})
    assert ok.status_code == 202, ok.text
    over = await create(client, customer, model=model,
                        params={"referenceMediaItems": [as_reference(file)] * (maximum + 1)})
    assert over.status_code == 422
    refs = {"referenceMediaItems": [as_reference(file)]}
    imagen = await create(client, customer, model="google-imagen4", params=refs)
    assert imagen.status_code == 422


async def test_a_reference_whose_mime_type_differs_from_the_file_is_refused(client, customer) -> None:
    file = (await upload(client, customer, image_bytes("PNG"))).json()
    wrong = dict(as_reference(file), mimeType="image/jpeg")
    response = await create(client, customer, model="qwen-image", params={"referenceMediaItems": [wrong]})
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["params.referenceMediaItems[0].mimeType"]


async def test_a_reference_task_runs_end_to_end_and_its_output_chains(client, customer) -> None:
    file = (await upload(client, customer, image_bytes("PNG", (300, 300), "red"))).json()
    first = await wait_for_task(client, customer, (await create(
        client, customer, model="qwen-image", params={"referenceMediaItems": [as_reference(file)]})).json()["id"])
    assert first["status"] == "succeeded"
    output = first["result"]["media"][0]
    composed = Image.open(io.BytesIO((await client.get(output["url"])).content)).convert("RGB")
    assert composed.getpixel((40, 40)) == (255, 0, 0)  # the sandbox pasted the reference in
    chained = await wait_for_task(client, customer, (await create(
        client, customer, model="grok-imagine", params={"referenceMediaItems": [
            {k: output[k] for k in ("url", "kind", "name", "mimeType", "width", "height", "bytes")}]})).json()["id"])
    assert chained["status"] == "succeeded"


async def test_deleted_and_expired_files_cannot_be_used(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, upload_retention_hours=1, auth_cache_seconds=0)
    who = await new_customer(deps)
    async with serve(deps) as client:
        gone = (await upload(client, who, image_bytes())).json()
        assert (await client.delete(f"/api/v1/files/{gone['id']}", headers=who.headers)).status_code == 204
        assert (await client.get(f"/api/v1/files/{gone['id']}", headers=who.headers)).status_code == 404
        assert (await client.get(gone["url"])).status_code == 404
        stale = (await upload(client, who, image_bytes())).json()
        clock.advance(hours=1, seconds=1)
        for file in (gone, stale):
            refs = {"referenceMediaItems": [as_reference(file)]}
            refused = await create(client, who, model="qwen-image", params=refs)
            assert refused.status_code == 422


async def test_cleanup_spares_files_that_active_tasks_use(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, upload_retention_hours=1, auth_cache_seconds=0)
    who = await new_customer(deps)
    async with serve(deps) as client:
        used = (await upload(client, who, image_bytes(color="green"))).json()
        idle = (await upload(client, who, image_bytes(color="blue"))).json()
        task = (await create(client, who, model="qwen-image", params={"referenceMediaItems": [as_reference(used)]}))
        assert task.status_code == 202
    clock.advance(hours=2)
    assert await purge_files(deps) == 1
    assert leftovers(deps) == [f"uploads/{who.account_id}/{used['id']}.png"]
    async with serve(await make_deps(clock=clock, auth_cache_seconds=0)) as client:  # now a worker runs it
        done = await wait_for_task(client, who, task.json()["id"])
    assert done["status"] == "succeeded"
    await purge_files(deps)
    assert [f for f in leftovers(deps) if f.startswith("uploads/")] == []
    assert idle["id"] not in str(leftovers(deps))


async def test_cleanup_takes_deleted_files_after_a_grace_but_never_a_running_tasks_input(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, auth_cache_seconds=0)
    who = await new_customer(deps)
    async with serve(deps) as client:
        dropped = (await upload(client, who, image_bytes(color="blue"))).json()
        running = (await upload(client, who, image_bytes(color="green"))).json()
        task = await create(client, who, model="qwen-image", params={"referenceMediaItems": [as_reference(running)]})
        async with deps.db.write() as session:
            claims = await lease.claim(session, 1, clock.now(), deps.lease)
        assert [c.task_id for c in claims] == [task.json()["id"]]
        for file in (dropped, running):  # the client deletes both, one while a task runs on it
            assert (await client.delete(f"/api/v1/files/{file['id']}", headers=who.headers)).status_code == 204
    assert await purge_files(deps) == 0  # a task created just before the delete may still commit
    clock.advance(minutes=11)
    assert await purge_files(deps) == 1
    assert leftovers(deps) == [f"uploads/{who.account_id}/{running['id']}.png"]
    async with deps.db.read() as session:
        gone = await session.get(StoredFile, dropped["id"])
    assert gone is not None and gone.purged_at is not None


async def test_the_list_pages_newest_first_and_shows_only_the_accounts_live_files(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, auth_cache_seconds=0)
    customer, other = await new_customer(deps), await new_customer(deps, name="other")
    async with serve(deps) as client:
        await upload(client, other, image_bytes())
        ids_ = []
        for color in ("red", "green", "blue"):
            clock.advance(seconds=1)
            ids_.append((await upload(client, customer, image_bytes(color=color))).json()["id"])
        await client.delete(f"/api/v1/files/{ids_[1]}", headers=customer.headers)
        first = (await client.get("/api/v1/files", params={"limit": 1}, headers=customer.headers)).json()
        assert [f["id"] for f in first["data"]] == [ids_[2]] and first["has_more"] is True
        rest = (await client.get("/api/v1/files", params={"limit": 1, "cursor": first["next_cursor"]},
                                 headers=customer.headers)).json()
        assert [f["id"] for f in rest["data"]] == [ids_[0]]
        assert (rest["has_more"], rest["next_cursor"]) == (False, None)
        bad = await client.get("/api/v1/files", params={"cursor": "not-a-cursor"}, headers=customer.headers)
        assert bad.status_code == 422


async def test_a_bad_signature_answers_alike_for_known_unknown_and_deleted_files(make_deps) -> None:
    deps = await make_deps(run_worker=False, auth_cache_seconds=0)
    who = await new_customer(deps)
    async with serve(deps) as client:
        known = (await upload(client, who, image_bytes())).json()
        deleted = (await upload(client, who, image_bytes(color="blue"))).json()
        assert (await client.delete(f"/api/v1/files/{deleted['id']}", headers=who.headers)).status_code == 204
        parts = urlsplit(known["url"])
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        bad = {**query, "signature": query["signature"][:-1] + ("A" if query["signature"][-1] != "A" else "B")}
        answers = []
        for file_id in (known["id"], "file_" + "0" * 32, deleted["id"]):
            answer = await client.get(f"/api/v1/files/{file_id}/content?{urlencode(bad)}")
            answers.append((answer.status_code, {k: v for k, v in answer.json().items() if k != "request_id"},
                            {k: v for k, v in answer.headers.items() if k not in ("x-request-id", "content-length")}))
        assert answers[0] == answers[1] == answers[2]
        assert answers[0][0] == 403 and answers[0][1]["error"]["code"] == "link_expired"
        assert (await client.get(known["url"])).status_code == 200


async def test_only_the_canonical_expiry_opens_a_signed_url(make_deps) -> None:
    deps = await make_deps(run_worker=False, auth_cache_seconds=0)
    who = await new_customer(deps)
    async with serve(deps) as client:
        file = (await upload(client, who, image_bytes())).json()
        parts = urlsplit(file["url"])
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        expires = query["expires"]
        for spelled in (f"0{expires}", f"00{expires}", f"+{expires}", f"{expires}.0", f" {expires}", f"{expires} ",
                        f"{expires}\n", f"{int(expires):_}", "-0", "", "1e10", "٣"):
            answer = await client.get(f"{parts.path}?{urlencode({**query, 'expires': spelled})}")
            assert answer.status_code == 403, (spelled, answer.status_code)
            assert answer.json()["error"]["code"] == "link_expired"
        assert (await client.get(f"{parts.path}?{urlencode(query)}")).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/tasks/", "/api/v1/files/", "/api/v1/models/"])
async def test_a_trailing_slash_is_not_found_and_never_redirects_to_the_host_header(client, customer,
                                                                                   path: str) -> None:
    answer = await client.get(path, headers={**customer.headers, "Host": "evil.example"})
    assert "location" not in answer.headers
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"

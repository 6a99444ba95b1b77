"""The upload body is read as it streams: cut off at the limit of the kind its first bytes
announce, one file part only, and nothing left behind on any refusal."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from itertools import chain, repeat
from pathlib import Path

import pytest

from sfumato.errors import FileTooLarge, ValidationFailed
from sfumato.files.cleanup import purge_files
from sfumato.files.multipart import CHUNK, DRAIN, spool_file_part
from sfumato.storage import LocalStorage
from tests.conftest import new_customer, serve
from tests.test_files_api import image_bytes, leftovers, upload
from tests.test_files_media import video_mp4

PNG_HEAD = b"\x89PNG\r\n\x1a\n" + b"\0" * 8
MP4_HEAD = b"\0\0\0\x18ftypisom" + b"\0" * 4
LIMITS = {"image": 1000, "video": 100_000, "audio": 50_000}
MULTIPART = "multipart/form-data; boundary=b"


def part(name: str, data: bytes, filename: str | None = "a.png", extra: bytes = b"") -> bytes:
    file = f'; filename="{filename}"' if filename is not None else ""
    return (f'--b\r\nContent-Disposition: form-data; name="{name}"{file}\r\n'.encode() + extra
            + b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--b--\r\n"


class Feed:
    """An async body that remembers how much of it the reader took."""

    def __init__(self, chunks: Iterable[bytes]):
        self.chunks, self.sent = chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += len(chunk)
            yield chunk


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


async def spool(tmp_path: Path, feed: Feed, content_type: str = MULTIPART, cap: int = 10**9):
    return await spool_file_part(feed.__aiter__(), content_type, tmp_path, LIMITS, cap)


@pytest.mark.parametrize("piece", [1, 7, 64 * 1024])
async def test_the_file_part_is_spooled_whole_however_the_body_is_cut(tmp_path: Path, piece: int) -> None:
    data = PNG_HEAD + bytes(range(256)) * 3
    spooled = await spool(tmp_path, Feed(pieces(body(part("note", b"hello", None), part("file", data)), piece)))
    assert (spooled.filename, spooled.size, spooled.path.read_bytes()) == ("a.png", len(data), data)
    assert spooled.path.parent == tmp_path


async def test_an_image_is_cut_off_at_its_limit_and_the_rest_is_not_stored(tmp_path: Path) -> None:
    exact = await spool(tmp_path, Feed([body(part("file", PNG_HEAD + b"x" * (1000 - 16)))]))
    assert exact.size == 1000
    exact.path.unlink()
    slightly = Feed([body(part("file", PNG_HEAD + b"x" * 5000))])
    with pytest.raises(FileTooLarge) as refused:
        await spool(tmp_path, slightly)
    assert refused.value.headers == {}  # the rest was read and dropped: the client gets the 413
    endless = Feed(chain([part("file", PNG_HEAD)[:-2]], repeat(b"x" * 64 * 1024, 10**5)))  # 6 GiB, lazily
    with pytest.raises(FileTooLarge) as cut:
        await spool(tmp_path, endless)
    assert cut.value.headers == {"Connection": "close"}
    assert endless.sent <= 1000 + DRAIN + 2 * 64 * 1024  # the limit, the discarded grace, one read
    assert list(tmp_path.iterdir()) == []


async def test_the_limit_follows_the_kind_in_the_first_bytes(tmp_path: Path) -> None:
    video = await spool(tmp_path, Feed(pieces(body(part("file", MP4_HEAD + b"v" * 90_000)), 5)))
    assert video.size == 90_016
    with pytest.raises(FileTooLarge):  # the same bytes after an image's signature
        await spool(tmp_path, Feed([body(part("file", PNG_HEAD + b"v" * 90_000))]))
    with pytest.raises(FileTooLarge):  # and the body as a whole has a cap too
        await spool(tmp_path, Feed([body(part("file", MP4_HEAD + b"v" * 90_000))]), cap=50_000)
    assert [p.name for p in tmp_path.iterdir()] == [video.path.name]


@pytest.mark.parametrize(
    ("content", "content_type", "field"),
    [
        (body(part("other", PNG_HEAD)), MULTIPART, "file"),
        (body(part("file", PNG_HEAD, filename=None)), MULTIPART, "file"),
        (b'{"file": "x"}', "application/json", "file"),
        (body(part("file", PNG_HEAD)), "multipart/form-data", "file"),
        (body(part("file", PNG_HEAD), part("file", PNG_HEAD)), MULTIPART, "body"),
        (body(*(part(f"f{i}", b"") for i in range(9)), part("file", PNG_HEAD)), MULTIPART, "body"),
        (body(part("file", PNG_HEAD, extra=b"X-Pad: " + b"p" * 20_000 + b"\r\n")), MULTIPART, "body"),
        (part("file", PNG_HEAD + b"no closing boundary"), MULTIPART, "body"),
        (b"garbage before any boundary" + body(part("file", PNG_HEAD)), MULTIPART, "body"),
    ],
    ids=["no file field", "field without filename", "json", "no boundary", "two files", "too many parts",
         "huge part header", "unterminated", "garbage"],
)
async def test_malformed_bodies_are_refused_and_leave_nothing(
    tmp_path: Path, content: bytes, content_type: str, field: str,
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await spool(tmp_path, Feed(pieces(content, 4096)), content_type)
    assert [d.field for d in refused.value.details] == [field]
    assert list(tmp_path.iterdir()) == []


async def test_a_long_malformed_body_is_cut_off_too(tmp_path: Path) -> None:
    garbage = Feed(repeat(b"not multipart at all " * 3000, 10**5))  # 6 GiB, lazily
    with pytest.raises(ValidationFailed) as refused:
        await spool(tmp_path, garbage)
    assert refused.value.headers == {"Connection": "close"}
    assert garbage.sent <= DRAIN + 2 * 63_000
    assert list(tmp_path.iterdir()) == []


async def test_a_client_that_goes_away_mid_body_leaves_nothing(tmp_path: Path) -> None:
    async def vanishing() -> AsyncIterator[bytes]:
        yield part("file", PNG_HEAD + b"x" * 500)[:-2]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await spool_file_part(vanishing(), MULTIPART, tmp_path, LIMITS, 10**9)
    assert list(tmp_path.iterdir()) == []


async def test_a_video_may_pass_the_image_limit_but_an_image_may_not(make_deps) -> None:
    deps = await make_deps(run_worker=False, upload_max_bytes=500)
    who = await new_customer(deps)
    clip = video_mp4(2.0, noise=True)
    assert len(clip) > 500 + 64 * 1024  # larger than the image limit and all multipart slack
    async with serve(deps) as client:
        video = await upload(client, who, clip, name="clip.mp4", content_type="video/mp4")
        assert video.status_code == 201, video.text
        assert video.json()["bytes"] == len(clip)
        picture = image_bytes("JPEG", (300, 300))
        assert len(picture) > 500
        image = await upload(client, who, picture, name="a.jpg")
        assert image.status_code == 413 and image.json()["error"]["code"] == "file_too_large"
    assert leftovers(deps) == [f"uploads/{who.account_id}/{video.json()['id']}.mp4"]


async def test_a_lying_content_length_does_not_raise_the_limit(make_deps) -> None:
    deps = await make_deps(run_worker=False, upload_max_bytes=100_000)
    who = await new_customer(deps)
    feed = Feed(chain([part("file", PNG_HEAD)[:-2]], repeat(b"\0" * CHUNK, 200)))  # 50 MB
    multipart = {**who.headers, "Content-Type": MULTIPART}
    async with serve(deps) as client:
        declared_small = await client.post("/api/v1/files", content=feed, headers={
            **multipart, "Content-Length": "1000"})
        assert declared_small.status_code == 413
        assert declared_small.headers["connection"] == "close"  # so the server stops reading too
        assert feed.sent <= 100_000 + DRAIN + 2 * CHUNK
        slightly_over = await upload(client, who, PNG_HEAD + b"\0" * 100_000)
        assert slightly_over.status_code == 413 and "connection" not in slightly_over.headers
        waiting = await client.post("/api/v1/files", content=b"", headers={
            **multipart, "Content-Length": str(10**12), "Expect": "100-continue"})
        assert waiting.status_code == 413 and waiting.headers["connection"] == "close"
    assert leftovers(deps) == []


async def test_cleanup_sweeps_spool_files_an_interrupted_server_left(deps) -> None:
    storage = deps.storage
    assert isinstance(storage, LocalStorage)
    old, fresh = storage.temp_dir() / "upload-old.part", storage.temp_dir() / "upload-new.part"
    for path in (old, fresh):
        path.write_bytes(b"half an upload")
    two_hours_ago = time.time() - timedelta(hours=2).total_seconds()
    os.utime(old, (two_hours_ago, two_hours_ago))
    await purge_files(deps)
    assert sorted(p.name for p in storage.temp_dir().iterdir()) == ["upload-new.part"]

"""Video and audio uploads: probed duration and the signed durationToken that references need."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
from PIL import Image

from sfumato.clock import FrozenClock
from sfumato.files.urls import MediaSigner
from tests.conftest import new_customer, serve
from tests.helpers import create
from tests.test_files_api import image_bytes, leftovers, upload

MEDIA_MODEL = """
id: media-edit
name: Media Edit (test)
summary: A test model that takes video and audio references.
capability: image
inputs: [text, file]
files_api: required_for_reference
billing: FIXED
base_credits: 2
prompt_max_chars: 1000
references:
  max_files: 2
  kinds: [video, audio]
  limits:
    - {kind: video, max_bytes: 104857600, mime_types: [video/mp4, video/webm]}
    - {kind: audio, max_bytes: 26214400, mime_types: [audio/wav, audio/mpeg]}
output:
  sizes: {default: [256, 256]}
"""


def video_mp4(seconds: float = 1.5, noise: bool = False) -> bytes:
    """A small MP4 at 10 fps; with ``noise`` its 160x120 frames do not compress (a larger file)."""
    size = (160, 120) if noise else (64, 48)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        (stream.width, stream.height), stream.pix_fmt = size, "yuv420p"
        for _ in range(int(seconds * 10)):
            picture = (Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)) if noise
                       else Image.new("RGB", size, "red"))
            for packet in stream.encode(av.VideoFrame.from_image(picture)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def audio_wav(seconds: float = 2.0) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame(format="s16", layout="mono", samples=int(8000 * seconds))
        frame.sample_rate = 8000
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return buffer.getvalue()


async def test_video_and_audio_get_their_probed_duration_and_a_token(client, customer) -> None:
    video = (await upload(client, customer, video_mp4(1.5), name="clip.mp4", content_type="video/mp4")).json()
    assert (video["kind"], video["mimeType"], video["width"], video["height"]) == ("video", "video/mp4", 64, 48)
    assert video["duration_seconds"] == pytest.approx(1.5, abs=0.05)
    assert video["durationToken"].startswith("dt1.")
    audio = (await upload(client, customer, audio_wav(2.0), name="voice.wav", content_type="audio/wav")).json()
    assert (audio["kind"], audio["mimeType"], audio["width"]) == ("audio", "audio/wav", None)
    assert audio["duration_seconds"] == pytest.approx(2.0, abs=0.05)
    assert "durationToken" not in (await upload(client, customer, image_bytes())).json()


async def test_each_kind_has_its_own_size_limit_and_length_limit(make_deps) -> None:
    wav = audio_wav(2.0)
    deps = await make_deps(run_worker=False, upload_max_bytes_audio=len(wav) - 1, max_media_seconds=1.0)
    who = await new_customer(deps)
    async with serve(deps) as client:
        too_big = await upload(client, who, wav, name="a.wav", content_type="audio/wav")
        assert too_big.status_code == 413
        too_long = await upload(client, who, video_mp4(1.5), name="v.mp4", content_type="video/mp4")
        assert too_long.status_code == 422 and "lasts" in too_long.json()["error"]["message"]
        broken = await upload(client, who, video_mp4(1.5)[:40] + b"\0" * 500, name="v.mp4")
        assert broken.status_code == 422
    assert leftovers(deps) == []


def _ref(file: dict, token: str | None) -> dict:
    item = {"url": file["url"], "kind": file["kind"], "name": file["name"], "mimeType": file["mimeType"]}
    return {**item, "durationToken": token} if token is not None else item


async def test_media_references_need_their_own_valid_unexpired_token(make_deps, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "media-edit.yaml").write_text(MEDIA_MODEL)
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, catalog_dir=catalog, clock=clock, duration_token_ttl_hours=1,
                           auth_cache_seconds=0)
    who = await new_customer(deps)
    async with serve(deps) as client:
        video = (await upload(client, who, video_mp4(1.5), name="v.mp4")).json()
        audio = (await upload(client, who, audio_wav(2.0), name="a.wav")).json()

        async def task_with(*refs: dict) -> tuple[int, list[str]]:
            response = await create(client, who, model="media-edit", params={"referenceMediaItems": list(refs)})
            return response.status_code, [d["field"] for d in (response.json().get("error") or {}).get("details", [])]

        assert (await task_with(_ref(video, video["durationToken"]), _ref(audio, audio["durationToken"])))[0] == 202
        token = video["durationToken"]
        prefix, duration, expires, mac = token.split(".")
        field = ["params.referenceMediaItems[0].durationToken"]
        assert await task_with(_ref(video, None)) == (422, field)
        assert await task_with(_ref(video, f"{prefix}.{int(duration) // 10}.{expires}.{mac}")) == (422, field)
        assert await task_with(_ref(video, f"{prefix}.{duration}.{int(expires) + 3600}.{mac}")) == (422, field)
        assert await task_with(_ref(video, audio["durationToken"])) == (422, field)  # another file's token
        clock.advance(hours=1, seconds=1)
        assert await task_with(_ref(video, token)) == (422, field)


def test_a_duration_token_has_exactly_one_spelling() -> None:
    signer = MediaSigner(b"test-secret")
    now = datetime.now(UTC)
    token = signer.duration_token("file_" + "a" * 32, "acct_1", 1500, now + timedelta(hours=1))
    assert signer.verify_duration_token(token, "file_" + "a" * 32, "acct_1", 1500, now)
    prefix, duration, expires, mac = token.split(".")
    arabic = duration.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    for spelled in (f"0{duration}", f"+{duration}", arabic):
        assert not signer.verify_duration_token(f"{prefix}.{spelled}.{expires}.{mac}", "file_" + "a" * 32,
                                                "acct_1", 1500, now), spelled
    for spelled in (f"0{expires}", f"+{expires}"):
        assert not signer.verify_duration_token(f"{prefix}.{duration}.{spelled}.{mac}", "file_" + "a" * 32,
                                                "acct_1", 1500, now), spelled

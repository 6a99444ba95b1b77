"""What an upload really is, decided from its bytes: magic numbers, then a real decode
(images) or a probe by FFmpeg (video and audio, which also gives their duration).

Only JPEG, PNG and WebP are opened, and only by their own Pillow plugins, so no other image
parser ever sees client bytes. The pixel count is checked from the header before any decode
(a decompression bomb is a small file declaring a huge image). Truncation is caught cheaply:
PNG by ``verify()`` (every chunk's CRC, no pixel decode), JPEG by decoding at 1/8 scale, WebP
by a full decode, one at a time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sfumato.errors import FieldError, ValidationFailed

SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "PNG"),
)
_WEBP_DECODES = threading.Semaphore(1)


@dataclass(frozen=True, slots=True)
class Sniffed:
    kind: str
    mime_type: str
    width: int
    height: int
    duration_ms: int | None = None


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed(message, [FieldError("file", message)])


def _format_of(head: bytes) -> tuple[str, str]:
    for magic, mime, fmt in SIGNATURES:
        if head.startswith(magic):
            return mime, fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "WEBP"
    raise _refuse("Unsupported file type: only JPEG, PNG and WebP images are accepted.")


def _decode(path: Path, fmt: str) -> None:
    with Image.open(path, formats=[fmt]) as image:
        if fmt == "PNG":
            image.verify()
        elif fmt == "JPEG":
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
        else:
            with _WEBP_DECODES:
                image.load()


def sniff_image(path: Path, max_pixels: int) -> Sniffed:
    """The upload's real type and size, or ``ValidationFailed`` saying why it is refused."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if not head:
        raise _refuse("The file is empty.")
    mime, fmt = _format_of(head)
    try:
        with Image.open(path, formats=[fmt]) as image:
            width, height = image.size
        if width * height > max_pixels:
            raise _refuse(f"The image is {width}x{height} pixels; at most {max_pixels} pixels are accepted.")
        _decode(path, fmt)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise _refuse(f"The file is not a readable {fmt} image ({exc.__class__.__name__}).") from exc
    return Sniffed("image", mime, width, height)


# --- video and audio ------------------------------------------------------------------------

MEDIA = {
    # first bytes → (kind, MIME type, the one FFmpeg demuxer allowed to read it)
    "webm": ("video", "video/webm", "matroska"),
    "wav": ("audio", "audio/wav", "wav"),
    "ogg": ("audio", "audio/ogg", "ogg"),
    "flac": ("audio", "audio/flac", "flac"),
    "mp3": ("audio", "audio/mpeg", "mp3"),
}


def media_format(head: bytes) -> tuple[str, str, str] | None:
    """``(kind, mime, demuxer)`` for the video/audio containers we accept, from magic numbers."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return ("audio", "audio/mp4", "mp4") if brand in (b"M4A ", b"M4B ") else ("video", "video/mp4", "mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MEDIA["webm"]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return MEDIA["wav"]
    if head.startswith(b"OggS"):
        return MEDIA["ogg"]
    if head.startswith(b"fLaC"):
        return MEDIA["flac"]
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return MEDIA["mp3"]
    return None


def kind_of(head: bytes) -> str:
    """``image``, ``video`` or ``audio``: which size limit applies while the rest arrives."""
    media = media_format(head)
    return media[0] if media else "image"


def probe_media(path: Path, max_seconds: float) -> Sniffed:
    """Duration (and video size) read by FFmpeg through PyAV. FFmpeg reads from a Python file
    object with the demuxer forced, so it can neither open URLs nor guess another format, and
    MP4 external data references stay disabled (FFmpeg's default)."""
    import av  # imported here: only video/audio uploads need FFmpeg

    with path.open("rb") as handle:
        head = handle.read(16)
        found = media_format(head)
        if found is None:
            raise _refuse("Unsupported file type.")
        kind, mime, demuxer = found
        handle.seek(0)
        try:
            with av.open(handle, mode="r", format=demuxer, timeout=10) as container:
                streams = container.streams.video if kind == "video" else container.streams.audio
                if not streams:
                    raise _refuse(f"The file has no {kind} stream.")
                seconds = (container.duration or 0) / 1_000_000
                width = getattr(streams[0].codec_context, "width", None) if kind == "video" else None
                height = getattr(streams[0].codec_context, "height", None) if kind == "video" else None
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise _refuse(f"The file is not a readable {mime} file ({exc.__class__.__name__}).") from exc
    if not 0 < seconds <= max_seconds:
        raise _refuse(f"The {kind} lasts {seconds:.1f} s; between 0 and {max_seconds:g} s are accepted.")
    return Sniffed(kind, mime, width or 0, height or 0, round(seconds * 1000))

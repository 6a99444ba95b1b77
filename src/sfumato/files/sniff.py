"""What an upload really is, decided from its bytes: magic numbers, then a real decode.

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

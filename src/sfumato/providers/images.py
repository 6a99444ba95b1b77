"""Upstream image bytes into ``OutputImage``: decoded (so garbage never becomes a result), with
the pixel size and type read from the image itself, never from what the upstream claims."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import warnings

from PIL import Image

from sfumato.providers.base import OutputImage
from sfumato.providers.errors import UpstreamBadResponse

FORMATS = ("PNG", "JPEG", "WEBP")
MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
MAX_PIXELS = 64_000_000


def _decode(data: bytes, *, pixel_limit: int = MAX_PIXELS) -> OutputImage | None:
    """The image, fully decoded (a truncated or corrupt file fails here, not in a client's
    browser); ``None``, undecoded, if it has more than ``pixel_limit`` pixels (≤ ``MAX_PIXELS``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise UpstreamBadResponse("The upstream image is implausibly large.")
                if image.width * image.height > pixel_limit:
                    return None
                image.load()
                return OutputImage(data, MIME[str(image.format)], image.width, image.height)
    except UpstreamBadResponse:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UpstreamBadResponse("The upstream returned bytes that are not a PNG, JPEG or WebP image.") from exc


INLINE_PIXELS = 512 * 512
"""Images up to this many pixels are decoded right on the event loop: well under a millisecond,
less than the hop to a thread costs; the header (read first, cheaply) says how many there are.
Larger ones, milliseconds of CPU, are decoded in a thread."""


async def decode_image(data: bytes) -> OutputImage:
    image = _decode(data, pixel_limit=INLINE_PIXELS)
    if image is None:
        image = await asyncio.to_thread(_decode, data)
    assert image is not None
    return image


def b64_bytes(value: object) -> bytes:
    """Base64 text into bytes, tolerating a ``data:image/…;base64,`` prefix (xAI sends one)."""
    if not isinstance(value, str) or not value:
        raise UpstreamBadResponse("The upstream sent no image data.")
    _, marker, tail = value.partition("base64,")
    try:
        return base64.b64decode(tail if marker else value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UpstreamBadResponse("The upstream sent image data that is not valid base64.") from exc


def data_url(data: bytes, mime_type: str) -> str:
    """A reference as a ``data:`` URL, how xAI, fal and the relay take inline images."""
    return f"data:{mime_type};base64,{base64.b64encode(data).decode()}"


def _reencode(image: OutputImage, fmt: str) -> OutputImage:
    with Image.open(io.BytesIO(image.data)) as source:
        converted = source.convert("RGB") if fmt == "jpeg" else source
        buffer = io.BytesIO()
        converted.save(buffer, PIL_FORMAT[fmt], **({"quality": 92} if fmt != "png" else {}))
    return OutputImage(buffer.getvalue(), f"image/{fmt}", image.width, image.height)


async def in_format(image: OutputImage, fmt: str) -> OutputImage:
    """The image in the format the client asked for, re-encoded only when an upstream cannot
    produce it (DashScope answers PNG only); the pixel size never changes."""
    if image.mime_type == f"image/{fmt}":
        return image
    return await asyncio.to_thread(_reencode, image, fmt)

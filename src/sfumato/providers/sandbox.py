"""The sandbox provider: the offline default, for demos and tests. Labelled as such in results.

It draws real image files that honour the params: the pixel size the real upstream returns for
the chosen aspect ratio or preset (from the catalog's ``output`` table), the output format, and
the seed (same seed, prompt and params: the same bytes). Reference images are composed into the
output, so reference mode is visible end to end. Latency and failures are configurable.

Of the request options (``Job.options``) it honours what changes the file: ``output_format``,
``output_compression`` (the encoder's quality for jpeg and webp: lower is smaller) and a
``transparent`` background (a real alpha channel: the picture is a disc on a clear ground).
``input_fidelity``, ``moderation`` and ``user`` steer a real model or its abuse monitoring;
offline there is nothing for them to change.

With ``Job.partial_images`` N it shows what a streaming upstream shows: N progressive previews
of the final picture (coarse blocks, then finer), the same size, format and alpha, paced evenly
through the configured latency (``SFUMATO_SANDBOX_LATENCY_MS``), then the final image.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import random

from PIL import Image, ImageDraw, ImageFont, ImageOps

from sfumato.providers.base import Job, OutputImage, Outputs, ProviderError

MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


def parse_latency(spec: str) -> tuple[int, int]:
    """``"500"`` or ``"200-800"`` milliseconds."""
    low, _, high = spec.partition("-")
    lo, hi = int(low), int(high or low)
    if lo < 0 or hi < lo:
        raise ValueError(f"bad sandbox latency {spec!r}")
    return lo, hi


def _seed_digest(job: Job) -> bytes:
    if job.params.get("seed"):
        options = job.options.image_options()
        material = json.dumps([job.model.id, job.prompt, job.params, *([options] if options else [])], sort_keys=True)
    else:
        material = f"{job.task_id}:{random.random()}"
    return hashlib.sha256(material.encode()).digest()


def _color(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


@functools.lru_cache(maxsize=64)
def _mask(width: int, height: int, angle: int) -> Image.Image:
    """The gradient of one size and direction, drawn once per process (read-only after)."""
    return Image.linear_gradient("L").rotate(angle).resize((width, height))


@functools.lru_cache(maxsize=64)
def _label_bar(width: int, height: int, text: str) -> tuple[Image.Image, ImageFont.FreeTypeFont | ImageFont.ImageFont]:
    """The bottom bar with the first label line, rendered once per size and label."""
    size = max(14, min(width, height) // 32)
    font = ImageFont.load_default(size=size)
    bar = Image.new("RGBA", (width, 3 * size), (0, 0, 0, 140))
    ImageDraw.Draw(bar).text((12, 0.4 * size), text, font=font, fill="white")
    return bar, font


def _blend(mask: Image.Image, near: tuple[int, int, int], far: tuple[int, int, int]) -> Image.Image:
    """``near`` where the mask is white, ``far`` where it is black: one lookup table per
    channel, instead of compositing two full-size solid images."""
    bands = [mask.point([b + (a - b) * v // 255 for v in range(256)]) for a, b in zip(near, far, strict=True)]
    return Image.merge("RGB", bands)


def _cut_out(image: Image.Image) -> Image.Image:
    """The picture as a disc on a fully transparent ground: an alpha channel a client can see."""
    alpha = Image.new("L", image.size, 0)
    width, height = image.size
    ImageDraw.Draw(alpha).ellipse((width // 10, height // 10, width * 9 // 10, height * 9 // 10), fill=255)
    image.putalpha(alpha)
    return image


def _encoded(image: Image.Image, fmt: str, compression: int | None) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        options: dict[str, int] = {"compress_level": 1}
    else:  # OpenAI's output_compression scale is the encoders' quality: 100 least compressed
        options = {"quality": 90 if compression is None else compression}
    image.save(buffer, PIL_FORMAT[fmt], **options)
    return buffer.getvalue()


def render(job: Job, references: list[bytes]) -> OutputImage:
    image, fmt = picture(job, references)
    return OutputImage(_encoded(image, fmt, job.options.output_compression), MIME[fmt], *image.size)


def previews(image: Image.Image, fmt: str, count: int, compression: int | None) -> list[OutputImage]:
    """``count`` renderings of ``image``, each finer than the last (blocks of 1/8, 1/16, 1/32 of
    the shorter side for three), none as sharp as the image itself."""
    width, height = image.size
    made = []
    for step in range(count):
        block = max(2, min(width, height) // (8 * 2 ** (step + 3 - count)))
        coarse = image.resize((max(1, width // block), max(1, height // block)), Image.Resampling.BOX)
        shown = coarse.resize((width, height), Image.Resampling.NEAREST)
        made.append(OutputImage(_encoded(shown, fmt, compression), MIME[fmt], width, height))
    return made


def picture(job: Job, references: list[bytes]) -> tuple[Image.Image, str]:
    """The final picture and its format."""
    width, height = job.model.output.size_for(job.params)
    fmt = job.model.output.format_for(job.params, job.options.output_format)
    rng = random.Random(_seed_digest(job))
    mask = _mask(width, height, rng.choice((0, 90, 180, 270)))
    image = _blend(mask, _color(rng), _color(rng))
    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(rng.randint(4, 9)):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randint(min(width, height) // 12, min(width, height) // 4)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(*_color(rng), 150))
    for index, data in enumerate(references[:4]):
        with Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"]) as ref:
            side = min(width, height) // 3
            thumb = ImageOps.contain(ref.convert("RGB"), (side, side))
            image.paste(thumb, (16 + index * (side // 4), 16 + index * (side // 4)))
    if job.options.transparent and fmt != "jpeg":  # jpeg has no alpha (the doors refuse asking it)
        image = _cut_out(image)
        draw = ImageDraw.Draw(image)
    bar, font = _label_bar(width, height, f"SANDBOX  {job.model.id}  {width}x{height}  {fmt}")
    image.paste(bar, (0, height - bar.height), bar)
    size = bar.height // 3
    draw.text((12, height - 1.4 * size), job.prompt[:120], font=font, fill=(230, 230, 230))
    return image, fmt


class SandboxProvider:
    name = "sandbox"
    supports_cancel = True

    def __init__(self, latency_ms: tuple[int, int] = (300, 900), failure_rate: float = 0.0):
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self._rng = random.Random()

    async def run(self, job: Job) -> Outputs:
        latency = self._rng.uniform(*self.latency_ms) / 1000
        if not job.partial_images:
            await asyncio.sleep(latency)
        if self._rng.random() < self.failure_rate:
            raise ProviderError("sandbox_failure", "Simulated failure (SFUMATO_SANDBOX_FAILURE_RATE).")
        references = [await ref.load() for ref in job.references if ref.kind == "image"]
        if not job.partial_images:
            image = await asyncio.to_thread(render, job, references)
            return Outputs([image], provider=self.name, sandbox=True)
        return await self._progressive(job, references, latency)

    async def _progressive(self, job: Job, references: list[bytes], latency: float) -> Outputs:
        """The picture drawn first (off the loop), its previews handed out one per slice of the
        latency, the picture itself after the last slice."""
        def draw() -> tuple[OutputImage, list[OutputImage]]:
            image, fmt = picture(job, references)
            compression = job.options.output_compression
            final = OutputImage(_encoded(image, fmt, compression), MIME[fmt], *image.size)
            return final, previews(image, fmt, job.partial_images, compression)

        final, shown = await asyncio.to_thread(draw)
        pace = latency / (len(shown) + 1)
        for index, preview in enumerate(shown):
            await asyncio.sleep(pace)
            await job.on_partial(index, preview)
        await asyncio.sleep(pace)
        return Outputs([final], provider=self.name, sandbox=True)

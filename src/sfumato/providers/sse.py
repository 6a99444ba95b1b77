"""Reading an upstream's server-sent events (the WHATWG ``text/event-stream`` format) from an
aiohttp response, each event capped in size.

aiohttp's ``readline`` refuses lines over 128 KiB, and an image event is one ``data:`` line of a
few megabytes of base64, so lines are cut from the raw chunks here. Only what the image APIs
send is kept: ``event`` and ``data`` (joined by newlines); comments and ``id``/``retry`` lines are
skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from sfumato.providers.errors import UpstreamBadResponse


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    """``message`` when the stream named none."""
    data: str


async def events(response: aiohttp.ClientResponse, max_event_bytes: int) -> AsyncIterator[Event]:
    """The events of ``response`` as they arrive; a pending event the stream did not end with a
    blank line is dropped (it was cut)."""
    pending = bytearray()
    name, size = "", 0
    data: list[str] = []
    async for chunk in response.content.iter_any():
        pending += chunk
        start = 0
        while (newline := pending.find(b"\n", start)) >= 0:
            line = bytes(pending[start:newline]).removesuffix(b"\r")
            start = newline + 1
            if not line:
                if data:
                    yield Event(name or "message", "\n".join(data))
                name, data, size = "", [], 0
                continue
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"event":
                name = value.decode("utf-8", "replace")
            elif field == b"data":
                size += len(value)
                data.append(value.decode("utf-8", "replace"))
        del pending[:start]
        if size + len(pending) > max_event_bytes:
            raise UpstreamBadResponse(f"An upstream event is larger than {max_event_bytes} bytes.")

"""Reads an upload's multipart/form-data body as it arrives, straight into one spool file.

Starlette's ``request.form()`` would first copy each file part into a ``SpooledTemporaryFile``
(1 MiB in memory per upload, then the system temp dir, which may itself be RAM) and its limits
do not cap file parts. Here python-multipart's streaming parser hands the file part's bytes
over chunk by chunk; they go to a temporary file in the storage's own temp dir, counted
against the limit of the kind its first bytes announce, and nothing more is stored once the
count passes that limit (``DRAIN`` says what happens to the rest of the body). Every refusal
removes the spool file.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from sfumato.errors import FieldError, FileTooLarge, SfumatoError, ValidationFailed
from sfumato.files.sniff import kind_of

CHUNK = 256 * 1024
"""Bytes gathered before one write to disk: each upload holds at most this (plus one network
read) in memory; smaller writes cost throughput in thread hops. See docs/benchmarks.md."""
FIELD = "file"
MAX_HEADER_BYTES = 16 * 1024
HEAD = 16
"""How many first bytes decide the kind (and so the size limit) of the file."""
DRAIN = 16 * 1024 * 1024
"""After refusing an upload (too large or malformed), how much more of its body is read and
dropped so that a client still sending gets the answer: closing a connection with unread data
resets it, and the answer is lost (nginx reads on for the same reason, its "lingering close").
A body longer still is cut off: the connection is closed and the rest never read."""
MAX_PARTS = 8
"""Parts other than ``file`` are allowed (and ignored), but not thousands of them."""


@dataclass(frozen=True, slots=True)
class SpooledFile:
    path: Path
    filename: str | None
    size: int


def _malformed(why: str) -> ValidationFailed:
    return ValidationFailed("The multipart body is malformed.", [FieldError("body", why)])


def _missing() -> ValidationFailed:
    return ValidationFailed("Send the file as multipart form field `file`.",
                            [FieldError(FIELD, "A file part named `file` is required.")])


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` body, or 422 for any other body."""
    ctype, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary", b"")
    if ctype != b"multipart/form-data" or not 0 < len(boundary) <= 200:
        raise _missing()
    return boundary


class _FilePartReader:
    """python-multipart callbacks (synchronous) that keep the one ``file`` part's bytes in a
    small buffer and its size, checked against its kind's limit as each piece arrives."""

    def __init__(self, limits: dict[str, int]):
        self.limits = limits
        self.limit = max(limits.values())
        self.parts = 0
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.disposition = b""
        self.in_file = False
        self.filename: str | None = None
        self.found = self.ended = False
        self.size = 0
        self.head = b""
        self.buffer = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {"on_part_begin": self.on_part_begin, "on_header_begin": self.on_header_begin,
                "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
                "on_part_end": self.on_part_end, "on_end": self.on_end}

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise _malformed(f"At most {MAX_PARTS} parts are accepted.")
        self.disposition = b""

    def on_header_begin(self) -> None:
        self.header_name.clear()
        self.header_value.clear()

    def _header_piece(self, into: bytearray, data: bytes, start: int, end: int) -> None:
        into += data[start:end]
        if len(self.header_name) + len(self.header_value) > MAX_HEADER_BYTES:
            raise _malformed("A part header is too long.")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_piece(self.header_name, data, start, end)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_piece(self.header_value, data, start, end)

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition.decode("latin-1"))
        self.in_file = options.get(b"name") == FIELD.encode() and b"filename" in options
        if self.in_file:
            if self.found:
                raise _malformed("Send exactly one file part named `file`.")
            self.found = True
            self.filename = options[b"filename"].decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.in_file:
            return  # other fields are allowed but ignored (their size counts against the body)
        piece = data[start:end]
        if len(self.head) < HEAD:
            self.head += piece[: HEAD - len(self.head)]
            if len(self.head) == HEAD:
                self.limit = self.limits[kind_of(self.head)]
        self.size += len(piece)
        if self.size > self.limit:
            raise FileTooLarge(f"The file is over {self.limit} bytes.")
        self.buffer += piece

    def on_part_end(self) -> None:
        self.in_file = False

    def on_end(self) -> None:
        self.ended = True


async def _flush(reader: _FilePartReader, out: IO[bytes], at_least: int) -> None:
    if len(reader.buffer) >= max(at_least, 1):
        data = bytes(reader.buffer)
        reader.buffer.clear()
        await asyncio.to_thread(out.write, data)


async def _pump(body: AsyncIterator[bytes], parser: MultipartParser, reader: _FilePartReader,
                out: IO[bytes], body_cap: int) -> None:
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > body_cap:
            raise FileTooLarge("The upload is over the size limit.")
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise _malformed(str(exc)) from exc
        await _flush(reader, out, CHUNK)
    await _flush(reader, out, 0)


def closing(error: SfumatoError) -> SfumatoError:
    """``error``, answered with ``Connection: close``: the HTTP server would otherwise read (and
    drop) the rest of the body to reuse the connection. The body is cut off instead."""
    error.headers = {**error.headers, "Connection": "close"}
    return error


async def drain_or_close(body: AsyncIterator[bytes], error: SfumatoError) -> None:
    """Before answering a refused upload, read and drop at most ``DRAIN`` more bytes of its body
    so the client, still sending, gets the answer; if the body goes on, close the connection."""
    left = DRAIN
    async for chunk in body:
        left -= len(chunk)
        if left < 0:
            closing(error)
            return


async def _spool(body: AsyncIterator[bytes], content_type: str | None, directory: Path,
                 limits: dict[str, int], body_cap: int) -> SpooledFile:
    reader = _FilePartReader(limits)
    parser = MultipartParser(boundary_of(content_type), reader.callbacks())  # type: ignore[arg-type]
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            await _pump(body, parser, reader, out, body_cap)
        if not reader.found:
            raise _missing()
        if not reader.ended:
            raise _malformed("The body ended before its closing boundary.")
    except BaseException:
        # Synchronous on purpose: an await here could itself be cancelled and leave the file.
        path.unlink(missing_ok=True)  # noqa: ASYNC240
        raise
    return SpooledFile(path, reader.filename, reader.size)


async def spool_file_part(body: AsyncIterator[bytes], content_type: str | None, directory: Path,
                          limits: dict[str, int], body_cap: int) -> SpooledFile:
    """Write the body's ``file`` part to a new file in ``directory`` and return it; 413 as soon
    as the part passes its kind's limit (or the body ``body_cap``), 422 for a malformed body or
    no ``file`` part. On any failure nothing is left in ``directory``."""
    try:
        return await _spool(body, content_type, directory, limits, body_cap)
    except SfumatoError as error:
        await drain_or_close(body, error)
        raise

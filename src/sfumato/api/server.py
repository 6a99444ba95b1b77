"""The HTTP server ``sfumato serve`` runs: uvicorn with time limits on receiving a request, and
the requests its parser rejects answered in the error envelope.

uvicorn bounds only the idle time between two requests (``timeout_keep_alive``): a client that
stops half way through a request head or body, or trickles it a byte at a time, holds its
connection (and a file descriptor) for ever, and ASGI middleware cannot help with a head, which
the app never sees. So each connection gets one timer, armed while the client owes the server
bytes:

- the **head** must be complete within ``header_timeout_seconds`` of the connection opening (or
  of the first byte of the next request on a kept-alive connection);
- the **body** may pause at most ``body_timeout_seconds`` between two reads, and on average must
  arrive at ``body_min_bytes_per_second`` or faster once that grace is spent (Apache's
  mod_reqtimeout ``MinRate``), so a large upload over a slow link fits but a trickle does not.

The clock stops while the server, not the client, is what holds things up: reading paused by
flow control because the app has not taken the last chunk, a client waiting for its
``100 Continue``, or the next request's head while the previous response is still being sent.
A request that runs out of time is answered ``408 request_timeout`` in the envelope when nothing
of its response has been sent yet, and its connection is closed; an idle connection that never
began a request is just closed.

The same protocol classes answer the requests uvicorn's parsers reject (``400 bad_request`` in
the envelope rather than uvicorn's plain text), and on h11 refuse two things llhttp already
refuses: control bytes in a header value, and ``Transfer-Encoding`` together with
``Content-Length`` (a request two parsers could frame differently is a smuggling vector).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal, Protocol, cast

import h11
import uvicorn
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from starlette.requests import Request
from starlette.types import ASGIApp, Scope
from uvicorn._types import HTTPScope
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from sfumato import ids, logs
from sfumato.api.errors import envelope, request_id_of
from sfumato.settings import Settings

log = logging.getLogger("sfumato.server")

Phase = Literal["head", "body"]
Headers = list[tuple[bytes, bytes]]
HELD_POLL_SECONDS = 1.0
"""While the clock is held, how often to look whether it may run again (flow control also tells)."""


@dataclass(frozen=True)
class RequestLimits:
    header_seconds: float = 10.0
    body_seconds: float = 30.0
    body_min_bytes_per_second: int = 1024

    @classmethod
    def of(cls, settings: Settings) -> RequestLimits:
        return cls(settings.header_timeout_seconds, settings.body_timeout_seconds,
                   settings.body_min_bytes_per_second)


class ServerConfig(Config):
    """uvicorn's configuration, carrying the request limits to the protocol instances."""

    def __init__(self, app: ASGIApp, limits: RequestLimits, **kwargs: Any):
        super().__init__(app, **kwargs)
        self.request_limits = limits


def serve(app: ASGIApp, settings: Settings, host: str, port: int) -> None:
    """Run ``app`` until a signal stops it (what ``uvicorn.run`` does, with sfumato's protocol)."""
    limits = RequestLimits.of(settings)
    config = ServerConfig(app, limits, host=host, port=port, http=PROTOCOLS[settings.http_parser],
                          log_level="info", proxy_headers=True, log_config=None, access_log=settings.access_log)
    log.info("HTTP parser: %s; request head within %g s, body idle at most %g s and at least %d bytes/s",
             settings.http_parser, limits.header_seconds, limits.body_seconds, limits.body_min_bytes_per_second)
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the SIGINT it caught once it has shut down
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def envelope_parts(status: int, code: str, message: str, scope: HTTPScope | None) -> tuple[str, Headers, bytes]:
    """Request id, content headers and body of an error the app did not answer itself: through the
    app's one mapping (:func:`sfumato.api.errors.envelope`, so each door keeps its envelope and the
    request keeps its id) when the request got that far, else the envelope with a new id."""
    if scope is not None:
        request = Request(cast(Scope, scope))
        request_id = request_id_of(request)
        if request_id:
            response = envelope(request, status, code, message)
            return request_id, response.raw_headers, bytes(response.body)
    request_id = ids.request_id()
    body = json.dumps({"error": {"code": code, "message": message, "details": []}, "request_id": request_id},
                      ensure_ascii=False, separators=(",", ":")).encode()
    return request_id, [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))], body


def raw_response(status: int, headers: Headers, body: bytes) -> bytes:
    """A whole HTTP/1.1 response that ends its connection."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode(), *(n + b": " + v for n, v in headers),
             b"connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _warn(request_id: str, message: str, *args: object) -> None:
    """Log with ``request_id`` on the record, without leaking it into the connection's context."""

    def emit() -> None:
        logs.request_id.set(request_id)
        log.warning(message, *args)

    contextvars.copy_context().run(emit)


class _Cycle(Protocol):
    """What the timer reads and sets on uvicorn's RequestResponseCycle (the same on both parsers)."""

    response_started: bool
    response_complete: bool
    disconnected: bool
    waiting_for_100_continue: bool
    message_event: asyncio.Event
    scope: HTTPScope


@dataclass
class _Owed:
    """What the client owes on one connection, and since when (client clock)."""

    phase: Phase
    begun: bool
    """For a head: some of it has arrived (an idle connection is closed without an answer)."""
    since: float
    last: float
    """When the last body bytes arrived."""
    mark: int
    """Bytes received on the connection when the phase began."""


class _Clock:
    """The loop's clock, standing still while it is held (the server, not the client, is waiting)."""

    def __init__(self, time: Callable[[], float]):
        self._time = time
        self._held_for = 0.0
        self._held_since: float | None = None

    @property
    def held(self) -> bool:
        return self._held_since is not None

    def now(self) -> float:
        now = self._time()
        return now - self._held_for - (now - self._held_since if self._held_since is not None else 0.0)

    def hold(self, held: bool) -> None:
        if held and self._held_since is None:
            self._held_since = self._time()
        elif not held and self._held_since is not None:
            self._held_for += self._time() - self._held_since
            self._held_since = None


class _Flow(FlowControl):
    """uvicorn's flow control, telling the connection when reading pauses or resumes."""

    def __init__(self, transport: asyncio.Transport, changed: Callable[[], None]):
        super().__init__(transport)
        self._changed = changed

    def pause_reading(self) -> None:
        super().pause_reading()
        self._changed()

    def resume_reading(self) -> None:
        super().resume_reading()
        self._changed()


class _ReceiveDeadlines(asyncio.Protocol):
    """Mixed in before uvicorn's protocol class: one timer per connection while the client owes bytes."""

    config: Config
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    flow: FlowControl
    server_state: ServerState
    _limits: RequestLimits
    _clock: _Clock
    _owed: _Owed | None
    _received: int
    _timer: asyncio.TimerHandle | None
    _due: float

    def _cycle(self) -> _Cycle | None:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limits = getattr(self.config, "request_limits", None)
        self._limits = limits if isinstance(limits, RequestLimits) else RequestLimits()
        self._clock = _Clock(self.loop.time)
        self.flow = _Flow(transport, self._sync_hold)
        self._owed, self._received, self._timer, self._due = None, 0, None, 0.0
        self._owe("head", begun=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owe(None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._received += len(data)
        if self.transport.is_closing() or self.transport.get_protocol() is not self:  # answered, or a WebSocket now
            self._owe(None)
            return
        owed = self._owed
        if owed is not None and owed.phase == "body":
            owed.last = self._clock.now()
        elif owed is None and self._between_requests():
            self._owe("head", begun=False)  # bytes that began no request (a blank line, an unread body's tail)

    def send_400_response(self, msg: str) -> None:
        self._answer(400, "bad_request", "The request is not valid HTTP/1.1: bad request line, header or framing.")

    def _between_requests(self) -> bool:
        cycle = self._cycle()
        return cycle is None or cycle.response_complete

    def _owe(self, phase: Phase | None, begun: bool = True) -> None:
        owed = self._owed
        if phase is None:
            self._owed = None  # a pending timer finds nothing owed and stops
        elif owed is not None and owed.phase == phase:
            owed.begun = owed.begun or begun  # the same phase goes on, on the same clock
        else:
            now = self._clock.now()
            self._owed = _Owed(phase, begun, now, now, self._received)
            self._sync_hold()
            self._schedule()

    def _sync_hold(self) -> None:
        owed, cycle = self._owed, self._cycle()
        held = not self.transport.is_reading()
        if owed is not None and cycle is not None and not cycle.response_complete:
            held = held or owed.phase == "head" or (owed.phase == "body" and cycle.waiting_for_100_continue)
        self._clock.hold(held)

    def _deadline(self, owed: _Owed) -> float:
        limits = self._limits
        if owed.phase == "head":
            return owed.since + limits.header_seconds
        deadline = owed.last + limits.body_seconds
        if limits.body_min_bytes_per_second > 0:
            budget = limits.body_seconds + (self._received - owed.mark) / limits.body_min_bytes_per_second
            deadline = min(deadline, owed.since + budget)
        return deadline

    def _schedule(self) -> None:
        """Make sure a check runs by the deadline; an earlier pending check is kept (it re-arms)."""
        owed = self._owed
        if owed is None:
            return
        delay = HELD_POLL_SECONDS if self._clock.held else max(self._deadline(owed) - self._clock.now(), 0.0)
        due = self.loop.time() + delay
        if self._timer is not None:
            if self._due <= due:
                return
            self._timer.cancel()
        self._timer, self._due = self.loop.call_later(delay, self._check), due

    def _check(self) -> None:
        self._timer = None
        owed = self._owed
        if owed is None or self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        self._sync_hold()
        if self._clock.held or self._deadline(owed) > self._clock.now():
            self._schedule()
            return
        self._owed = None
        self._expire(owed)

    def _expire(self, owed: _Owed) -> None:
        cycle, limits = self._cycle(), self._limits
        if owed.phase == "head" and owed.begun:
            self._answer(408, "request_timeout",
                         f"The request head did not arrive within {limits.header_seconds:g} s.")
        elif owed.phase == "body" and cycle is not None and not cycle.response_started:
            self._answer(408, "request_timeout",
                         f"The request body did not arrive in time: at most {limits.body_seconds:g} s without "
                         f"data, and at least {limits.body_min_bytes_per_second} bytes/s on average.", cycle.scope)
        else:
            self.transport.close()  # nothing to answer: an idle connection, or a response already sent

    def _answer(self, status: int, code: str, message: str, scope: HTTPScope | None = None) -> None:
        """Answer in the envelope and close, unless a response is already under way (then only close)."""
        cycle = self._cycle()
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                self.transport.close()
                return
            cycle.disconnected = True  # the app's receive() now returns http.disconnect, its send() is dropped
            cycle.message_event.set()
        try:
            request_id, headers, body = envelope_parts(status, code, message, scope)
            headers = [*self.server_state.default_headers, *headers, (b"x-request-id", request_id.encode())]
            client = self.transport.get_extra_info("peername")
            _warn(request_id, "answered %d %s to %s and closed the connection", status, code, client)
            self.transport.write(raw_response(status, headers, body))
        finally:  # whatever happens, the connection does not outlive its answer
            self.transport.close()


class HttpToolsServerProtocol(_ReceiveDeadlines, HttpToolsProtocol):
    """uvicorn's httptools (llhttp) protocol, with request deadlines and the 400 envelope."""

    def _cycle(self) -> _Cycle | None:
        return self.cycle

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._owe("head", begun=True)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._owe("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._owe(None)


_CONTROL_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class _StrictH11Connection(h11.Connection):
    """h11, refusing what llhttp refuses and h11 lets through."""

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = {name for name, _ in event.headers}
            if b"transfer-encoding" in names and b"content-length" in names:
                raise h11.RemoteProtocolError("Transfer-Encoding together with Content-Length")
            if any(_CONTROL_BYTE.search(value) for _, value in event.headers):
                raise h11.RemoteProtocolError("a control byte in a header value")
        return event


class H11ServerProtocol(_ReceiveDeadlines, H11Protocol):
    """uvicorn's h11 protocol, with request deadlines, the 400 envelope and llhttp's strictness."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None):
        super().__init__(config, server_state, app_state, _loop)
        size = config.h11_max_incomplete_event_size
        self.conn = _StrictH11Connection(h11.SERVER, DEFAULT_MAX_INCOMPLETE_EVENT_SIZE if size is None else size)

    def _cycle(self) -> _Cycle | None:
        return self.cycle

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if self.transport.is_closing():
            self._owe(None)
        elif state is h11.SEND_BODY:
            self._owe("body")
        elif state is h11.IDLE and self.conn.trailing_data[0]:
            self._owe("head", begun=True)  # part of the next head is buffered
        elif not (state is h11.IDLE and self._owed is not None and self._owed.phase == "head"):
            self._owe(None)


PROTOCOLS: dict[str, type[asyncio.Protocol]] = {"httptools": HttpToolsServerProtocol, "h11": H11ServerProtocol}

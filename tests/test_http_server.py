"""The HTTP server itself, over raw sockets against a real ``sfumato serve`` process, once per
parser (httptools and h11): a stalled or trickled request head or body is cut off (408 in the
error envelope where an answer can still be sent, else the connection is closed), a slow but
steady upload is not, and requests the parser rejects get a 400 in the envelope. A server
running a deliberately slow app in this process shows that time the server makes the client
wait (flow control, ``100 Continue``) is never held against the client."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from sfumato.api.server import PROTOCOLS, RequestLimits, ServerConfig
from tests.processes import Processes, wait_until

pytestmark = pytest.mark.slow

HEADER_TIMEOUT, BODY_TIMEOUT, MIN_RATE = 1.0, 1.0, 100
SLACK = 3.0
"""Seconds a test waits past a limit before it calls the connection held."""
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")


@dataclass
class Server:
    host: str
    port: int
    key: str
    parser: str
    processes: Processes

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port))
        sock.settimeout(HEADER_TIMEOUT + BODY_TIMEOUT + SLACK)
        return sock

    def authorized_post(self, length: int) -> bytes:
        return (f"POST /api/v1/tasks HTTP/1.1\r\nHost: sfumato.test\r\nAuthorization: Bearer {self.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"http-{request.param}")
    env = {
        "SFUMATO_DATA_DIR": str(tmp / "data"), "SFUMATO_DATABASE_URL": "", "SFUMATO_SECRET_KEY": "test-secret",
        "SFUMATO_HTTP_PARSER": request.param, "SFUMATO_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "SFUMATO_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT), "SFUMATO_BODY_MIN_BYTES_PER_SECOND": str(MIN_RATE),
    }
    processes = Processes(env, tmp)
    _, url = processes.api("serve", extra=("--demo",))
    host, port = url.removeprefix("http://").split(":")
    try:
        yield Server(host, int(port), (tmp / "data" / "demo_api_key").read_text().strip(), request.param, processes)
    finally:
        processes.stop_all()


def _answer(sock: socket.socket) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()  # the whole body, so what follows on the socket is the next answer or EOF
    return response


def _read_answer(sock: socket.socket) -> tuple[http.client.HTTPResponse, dict[str, Any]]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response, json.loads(response.read())


def _closed(sock: socket.socket) -> bool:
    """True once the server closes the connection; False if it is still open after the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _assert_envelope(response: http.client.HTTPResponse, body: dict[str, Any], status: int, code: str) -> None:
    assert response.status == status
    assert response.getheader("content-type") == "application/json"
    assert response.getheader("connection") == "close"
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["details"] == []
    assert REQUEST_ID.fullmatch(body["request_id"])
    assert response.getheader("x-request-id") == body["request_id"]


def test_the_server_runs_the_configured_parser(server: Server) -> None:
    assert f"HTTP parser: {server.parser}" in server.processes.log_text("serve", tail=100_000)


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server: Server) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        assert _closed(sock)
        assert HEADER_TIMEOUT * 0.8 < time.monotonic() - started < HEADER_TIMEOUT + SLACK


def test_a_stalled_request_head_gets_408_in_the_envelope_then_a_close(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: sfumato.test\r\nX-Slow: ")
        started = time.monotonic()
        response, body = _read_answer(sock)
        assert time.monotonic() - started < HEADER_TIMEOUT + SLACK
        _assert_envelope(response, body, 408, "request_timeout")
        assert _closed(sock)


def test_a_head_trickled_byte_by_byte_is_cut_at_the_header_timeout(server: Server) -> None:
    with server.connect() as sock:
        started = time.monotonic()
        for byte in b"GET /healthz HTTP/1.1\r\nHost: sfumato.test\r\nX-Slow: " + b"x" * 200:
            if select.select([sock], [], [], 0.1)[0]:
                break
            sock.sendall(bytes([byte]))
        response, body = _read_answer(sock)
        assert time.monotonic() - started < HEADER_TIMEOUT + SLACK
        _assert_envelope(response, body, 408, "request_timeout")


def test_a_stalled_body_gets_408_in_the_envelope_then_a_close(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(server.authorized_post(20) + b'{"model":')  # 9 of the 20 bytes declared
        started = time.monotonic()
        response, body = _read_answer(sock)
        assert BODY_TIMEOUT * 0.8 < time.monotonic() - started < BODY_TIMEOUT + SLACK
        _assert_envelope(response, body, 408, "request_timeout")
        assert _closed(sock)


def test_a_stalled_body_on_the_openai_door_gets_that_doors_envelope(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(server.authorized_post(20).replace(b"/api/v1/tasks", b"/v1/images/generations") + b'{"model":')
        response, body = _read_answer(sock)
        assert response.status == 408
        assert body["error"]["code"] == "request_timeout"
        assert body["error"]["type"] == "invalid_request_error"
        assert REQUEST_ID.fullmatch(response.getheader("x-request-id") or "")
        assert _closed(sock)


def test_a_stalled_body_after_an_early_answer_is_closed(server: Server) -> None:
    """Without a key the app answers 401 before reading the body; the connection still must not linger."""
    with server.connect() as sock:
        sock.sendall(b"POST /api/v1/tasks HTTP/1.1\r\nHost: sfumato.test\r\nContent-Length: 20\r\n\r\n{\"model\":")
        assert _answer(sock).status == 401
        started = time.monotonic()
        assert _closed(sock)
        assert time.monotonic() - started < BODY_TIMEOUT + SLACK


def test_a_body_trickled_below_the_minimum_rate_is_cut(server: Server) -> None:
    """One byte every 0.2 s never trips the inactivity limit, but is far below the minimum rate."""
    with server.connect() as sock:
        sock.sendall(server.authorized_post(1000))
        started = time.monotonic()
        while not select.select([sock], [], [], 0.2)[0]:
            assert time.monotonic() - started < BODY_TIMEOUT + SLACK, "the trickle was never cut"
            sock.sendall(b" ")
        response, body = _read_answer(sock)
        _assert_envelope(response, body, 408, "request_timeout")


def test_a_slow_but_steady_body_is_read_to_the_end(server: Server) -> None:
    """6 KB at 1.5 KB/s: longer than the body timeout in total, but never idle and above the minimum rate."""
    payload = json.dumps({"model": "no-such-model", "prompt": "x"}).encode().ljust(6000)
    with server.connect() as sock:
        sock.sendall(server.authorized_post(len(payload)))
        started = time.monotonic()
        for offset in range(0, len(payload), 300):
            time.sleep(0.2)
            sock.sendall(payload[offset:offset + 300])
        response, body = _read_answer(sock)
        assert time.monotonic() - started > BODY_TIMEOUT * 2
        assert response.status == 422, body
        assert body["error"]["code"] == "validation_failed"


MALFORMED = {
    "control byte in a header value": b"GET /healthz HTTP/1.1\r\nHost: sfumato.test\r\nX-Bad: a\x01b\r\n\r\n",
    "NUL in the request line": b"GET /heal\x00thz HTTP/1.1\r\nHost: sfumato.test\r\n\r\n",
    "Transfer-Encoding with Content-Length": (
        b"POST /healthz HTTP/1.1\r\nHost: sfumato.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
        b"0\r\n\r\n"),
    "negative Content-Length": b"POST /healthz HTTP/1.1\r\nHost: sfumato.test\r\nContent-Length: -1\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_gets_400_in_the_envelope_then_a_close(server: Server, raw: bytes) -> None:
    with server.connect() as sock:
        sock.sendall(raw)
        response, body = _read_answer(sock)
        _assert_envelope(response, body, 400, "bad_request")
        assert _closed(sock)


def test_a_well_formed_request_on_the_same_server_still_works(server: Server) -> None:
    with server.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: sfumato.test\r\n\r\n")
        assert _answer(sock).status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: sfumato.test\r\nConnection: close\r\n\r\n")
        assert _answer(sock).status == 200


PAUSE = BODY_TIMEOUT * 2.5
"""How long the slow app below leaves the body unread, each time."""


async def _slow_reader(scope: Scope, receive: Receive, send: Send) -> None:
    """Leaves the body unread for longer than the body timeout, before its first read and after it."""
    await asyncio.sleep(PAUSE)
    total, more, first = 0, True, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        total, more = total + len(message.get("body", b"")), message.get("more_body", False)
        if first:
            first = False
            await asyncio.sleep(PAUSE)
    answer = str(total).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(params=["httptools", "h11"])
def slow_app_port(request: pytest.FixtureRequest) -> Iterator[int]:
    config = ServerConfig(_slow_reader, RequestLimits(HEADER_TIMEOUT, BODY_TIMEOUT, MIN_RATE), host="127.0.0.1",
                          port=0, http=PROTOCOLS[request.param], lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "the in-process server did not start")
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(10)


def _slow_app_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(PAUSE * 2 + SLACK)
    return sock


def test_a_client_held_back_by_flow_control_is_not_timed_out(slow_app_port: int) -> None:
    """The app leaves 4 MiB unread for 2.5 body timeouts: reading pauses, and so does the clock."""
    size = 4 * 1024 * 1024
    with contextlib.closing(_slow_app_socket(slow_app_port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size)
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert (response.status, response.read()) == (200, b"%d" % size)


def test_a_client_waiting_for_100_continue_is_not_timed_out(slow_app_port: int) -> None:
    with contextlib.closing(_slow_app_socket(slow_app_port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")  # sent once the app reads, after PAUSE
        sock.sendall(b"0123456789")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert (response.status, response.read()) == (200, b"10")

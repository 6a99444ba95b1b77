"""``sfumato.Client``: the task API from ordinary (blocking) code. The same calls as
``AsyncClient`` (``calls.py`` holds them both); used by ``sfumato generate``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import SSEError, connect_sse

from sfumato.client import calls
from sfumato.client.config import connection
from sfumato.client.errors import APIError, TaskFailed, WaitTimeout
from sfumato.client.types import Account, File, Media, Model, Task
from sfumato.client.waiting import EVENTS_PATH, NO_EVENTS, PollSchedule

T = TypeVar("T")
OnUpdate = Callable[[Task], None]


class Client:
    """``Client(base_url, api_key)``; both default to ``SFUMATO_BASE_URL`` (or ``SFUMATO_URL``) and
    ``SFUMATO_API_KEY``. Use it as ``with`` or call ``close()``."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0,
                 http_client: httpx.Client | None = None):
        url, self._auth = connection(base_url, api_key)
        self.base_url = url
        self._http = http_client or httpx.Client(base_url=url, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: calls.Call[T]) -> T:
        return call.answer(self._http.send(call.request(self._http, self._auth)))

    def models(self) -> list[Model]:
        return self._send(calls.models())

    def model(self, model_id: str) -> Model:
        return self._send(calls.model(model_id))

    def account(self) -> Account:
        return self._send(calls.account())

    def create(self, model: str, prompt: str, params: Mapping[str, Any] | None = None, *,
               client_request_id: str | None = None) -> Task:
        """Create a task; it comes back ``queued`` with its credits reserved."""
        return self._send(calls.create_task(model, prompt, params, client_request_id))

    def get(self, task_id: str) -> Task:
        return self._send(calls.get_task(task_id))

    def list(self, *, limit: int = 20, status: str | None = None, model: str | None = None) -> list[Task]:
        return self._send(calls.list_tasks(limit, status, model))

    def cancel(self, task_id: str) -> Task:
        return self._send(calls.cancel_task(task_id))

    def upload(self, source: str | Path | bytes, name: str | None = None) -> File:
        return self._send(calls.upload(source, name))

    def file(self, file_id: str) -> File:
        return self._send(calls.get_file(file_id))

    def delete_file(self, file_id: str) -> None:
        self._send(calls.delete_file(file_id))

    def generate(self, model: str, prompt: str, params: Mapping[str, Any] | None = None, *,
                 client_request_id: str | None = None, timeout: float = 600.0,
                 on_update: OnUpdate | None = None) -> Task:
        """Create a task and wait for it; raises ``TaskFailed`` unless it succeeds."""
        task = self.create(model, prompt, params, client_request_id=client_request_id)
        return self.wait(task, timeout=timeout, on_update=on_update)

    def wait(self, task: Task | str, *, timeout: float = 600.0, on_update: OnUpdate | None = None,
             raise_on_failure: bool = True) -> Task:
        """Follow the task until it ends: its event stream, or polling where the server has none
        (reconnecting with ``Last-Event-ID`` when the stream breaks)."""
        current = task if isinstance(task, Task) else self.get(task)
        deadline = time.monotonic() + timeout
        for seen in self._follow(current, deadline):
            current = seen
            if on_update is not None:
                on_update(seen)
        if not current.done:
            raise WaitTimeout(current, timeout)
        if raise_on_failure and current.status != "succeeded":
            raise TaskFailed(current)
        return current

    def _follow(self, task: Task, deadline: float) -> Iterator[Task]:
        yield task
        use_events, last_id, schedule = True, None, PollSchedule()
        while not task.done and time.monotonic() < deadline:
            if use_events:
                try:
                    for seen, seen_id in self._events(task, last_id, deadline):
                        task, last_id = seen, seen_id
                        yield seen
                    if task.done:
                        return
                except _NoEvents:
                    use_events = False
                except (httpx.TransportError, SSEError):
                    pass  # the stream broke or went quiet until the deadline: reconnect or give up
            time.sleep(max(0.0, min(schedule.next(), deadline - time.monotonic())))
            if not use_events and time.monotonic() < deadline:
                task = self.get(task.id)
                yield task

    def _events(self, task: Task, last_id: str | None, deadline: float) -> Iterator[tuple[Task, str | None]]:
        headers = {**self._auth, **({"Last-Event-ID": last_id} if last_id else {})}
        read = max(0.1, deadline - time.monotonic())  # no event before the deadline ends the wait
        with connect_sse(self._http, "GET", EVENTS_PATH.format(id=task.id), headers=headers,
                         timeout=httpx.Timeout(30.0, read=read)) as source:
            if source.response.status_code in NO_EVENTS:
                self.get(task.id)  # a task that is not there (or not ours) raises here
                raise _NoEvents
            if source.response.status_code != 200:
                source.response.read()
                raise APIError.from_response(source.response)
            for event in source.iter_sse():
                last_id = event.id or last_id
                if event.event == "status" and (seen := calls.event_task(event.data)) is not None:
                    yield seen, last_id
                    if seen.done:
                        return

    def download(self, media: Media | File | str, path: str | Path | None = None) -> bytes:
        """The bytes behind a signed URL (no key is sent with it); written to ``path`` if given."""
        url = media if isinstance(media, str) else media.url
        response = self._http.get(url, follow_redirects=True)
        if response.status_code != 200:
            raise APIError.from_response(response)
        if path is not None:
            Path(path).write_bytes(response.content)
        return response.content


class _NoEvents(Exception):
    """The server has no event stream: poll."""

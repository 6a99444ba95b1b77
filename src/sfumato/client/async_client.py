"""``sfumato.AsyncClient``: the task API from asyncio code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import SSEError, aconnect_sse

from sfumato.client import calls
from sfumato.client.config import connection
from sfumato.client.errors import APIError, TaskFailed, WaitTimeout
from sfumato.client.types import Account, File, Media, Model, Task
from sfumato.client.waiting import EVENTS_PATH, NO_EVENTS, PollSchedule

T = TypeVar("T")
OnUpdate = Callable[[Task], None]


class AsyncClient:
    """``AsyncClient(base_url, api_key)``; both default to ``SFUMATO_BASE_URL`` (or ``SFUMATO_URL``) and
    ``SFUMATO_API_KEY``. Use it as ``async with`` or call ``aclose()``."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0,
                 http_client: httpx.AsyncClient | None = None):
        url, self._auth = connection(base_url, api_key)
        self._http = http_client or httpx.AsyncClient(base_url=url, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: calls.Call[T]) -> T:
        return call.answer(await self._http.send(call.request(self._http, self._auth)))

    async def models(self) -> list[Model]:
        return await self._send(calls.models())

    async def model(self, model_id: str) -> Model:
        return await self._send(calls.model(model_id))

    async def account(self) -> Account:
        return await self._send(calls.account())

    async def create(self, model: str, prompt: str, params: Mapping[str, Any] | None = None, *,
                     client_request_id: str | None = None) -> Task:
        """Create a task; it comes back ``queued`` with its credits reserved."""
        return await self._send(calls.create_task(model, prompt, params, client_request_id))

    async def get(self, task_id: str) -> Task:
        return await self._send(calls.get_task(task_id))

    async def list(self, *, limit: int = 20, status: str | None = None, model: str | None = None) -> list[Task]:
        return await self._send(calls.list_tasks(limit, status, model))

    async def cancel(self, task_id: str) -> Task:
        return await self._send(calls.cancel_task(task_id))

    async def upload(self, source: str | Path | bytes, name: str | None = None) -> File:
        return await self._send(await asyncio.to_thread(calls.upload, source, name))

    async def file(self, file_id: str) -> File:
        return await self._send(calls.get_file(file_id))

    async def delete_file(self, file_id: str) -> None:
        await self._send(calls.delete_file(file_id))

    async def generate(self, model: str, prompt: str, params: Mapping[str, Any] | None = None, *,
                       client_request_id: str | None = None, timeout: float = 600.0,  # noqa: ASYNC109
                       on_update: OnUpdate | None = None) -> Task:
        """Create a task and wait for it; raises ``TaskFailed`` unless it succeeds."""
        task = await self.create(model, prompt, params, client_request_id=client_request_id)
        return await self.wait(task, timeout=timeout, on_update=on_update)

    async def wait(self, task: Task | str, *, timeout: float = 600.0,  # noqa: ASYNC109 (like openai's SDK)
                   on_update: OnUpdate | None = None, raise_on_failure: bool = True) -> Task:
        """Follow the task until it ends: its event stream, or polling where the server has none
        (reconnecting with ``Last-Event-ID`` when the stream breaks)."""
        current = task if isinstance(task, Task) else await self.get(task)
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                async for seen in self._follow(current):
                    current = seen
                    if on_update is not None:
                        on_update(seen)
        except TimeoutError:
            raise WaitTimeout(current, timeout) from None
        if raise_on_failure and current.status != "succeeded":
            raise TaskFailed(current)
        return current

    async def _follow(self, task: Task) -> AsyncIterator[Task]:
        yield task
        use_events, last_id, schedule = True, None, PollSchedule()
        while not task.done:
            if use_events:
                try:
                    async for seen, seen_id in self._events(task, last_id):
                        task, last_id = seen, seen_id
                        yield seen
                    if task.done:
                        return
                except _NoEvents:
                    use_events = False
                except (httpx.TransportError, SSEError):
                    pass  # the stream broke: reconnect after a pause, from the last event seen
            await asyncio.sleep(schedule.next())
            if not use_events:
                task = await self.get(task.id)
                yield task

    async def _events(self, task: Task, last_id: str | None) -> AsyncIterator[tuple[Task, str | None]]:
        headers = {**self._auth, **({"Last-Event-ID": last_id} if last_id else {})}
        path = EVENTS_PATH.format(id=task.id)
        async with aconnect_sse(self._http, "GET", path, headers=headers,
                                timeout=httpx.Timeout(30.0, read=None)) as source:
            if source.response.status_code in NO_EVENTS:
                await self.get(task.id)  # a task that is not there (or not ours) raises here
                raise _NoEvents
            if source.response.status_code != 200:
                await source.response.aread()
                raise APIError.from_response(source.response)
            async for event in source.aiter_sse():
                last_id = event.id or last_id
                if event.event == "status" and (seen := calls.event_task(event.data)) is not None:
                    yield seen, last_id
                    if seen.done:
                        return

    async def download(self, media: Media | File | str, path: str | Path | None = None) -> bytes:
        """The bytes behind a signed URL (no key is sent with it); written to ``path`` if given."""
        url = media if isinstance(media, str) else media.url
        response = await self._http.get(url, follow_redirects=True)
        if response.status_code != 200:
            raise APIError.from_response(response)
        if path is not None:
            await asyncio.to_thread(Path(path).write_bytes, response.content)
        return response.content


class _NoEvents(Exception):
    """The server has no event stream: poll."""

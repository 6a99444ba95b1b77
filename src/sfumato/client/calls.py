"""Each API operation as data: what to send and how to read the answer. The sync and async
clients only differ in how they send, so neither holds any of this logic (sans-I/O)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from sfumato.client.errors import APIError
from sfumato.client.types import Account, File, Model, Task

T = TypeVar("T")
Upload = tuple[str, bytes, str | None]
"""``(file name, bytes, content type)``; the server decides the type from the bytes anyway."""


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    json: Any = None
    params: Mapping[str, str] | None = None
    files: Mapping[str, Upload] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = (200, 201, 202)

    def request(self, client: httpx.Client | httpx.AsyncClient, auth: Mapping[str, str]) -> httpx.Request:
        return client.build_request(self.method, self.path, json=self.json, params=self.params,
                                    files=self.files, headers={**auth, **self.headers})

    def answer(self, response: httpx.Response) -> T:
        if response.status_code not in self.ok:
            raise APIError.from_response(response)
        return self.read(response)


def _task(r: httpx.Response) -> Task:
    return Task.model_validate(r.json())


def _tasks(r: httpx.Response) -> list[Task]:
    return [Task.model_validate(t) for t in r.json()["data"]]


def models() -> Call[list[Model]]:
    return Call("GET", "/api/v1/models", lambda r: [Model.model_validate(m) for m in r.json()["data"]])


def model(model_id: str) -> Call[Model]:
    return Call("GET", f"/api/v1/models/{model_id}", lambda r: Model.model_validate(r.json()))


def account() -> Call[Account]:
    return Call("GET", "/api/v1/account", lambda r: Account.model_validate(r.json()))


def create_task(model_id: str, prompt: str, params: Mapping[str, Any] | None, client_request_id: str | None,
                wait_seconds: float | None = None) -> Call[Task]:
    body: dict[str, Any] = {"model": model_id, "prompt": prompt, "params": dict(params or {})}
    if client_request_id is not None:
        body["client_request_id"] = client_request_id
    headers = {"Prefer": f"wait={int(wait_seconds)}"} if wait_seconds else {}
    return Call("POST", "/api/v1/tasks", _task, json=body, headers=headers)


def get_task(task_id: str) -> Call[Task]:
    return Call("GET", f"/api/v1/tasks/{task_id}", _task)


def list_tasks(limit: int = 20, status: str | None = None, model_id: str | None = None) -> Call[list[Task]]:
    params = {"limit": str(limit), **({"status": status} if status else {}),
              **({"model": model_id} if model_id else {})}
    return Call("GET", "/api/v1/tasks", _tasks, params=params)


def cancel_task(task_id: str) -> Call[Task]:
    return Call("POST", f"/api/v1/tasks/{task_id}/cancel", _task)


def upload(source: str | Path | bytes, name: str | None = None) -> Call[File]:
    if isinstance(source, bytes):
        data, filename = source, name or "upload"
    else:
        path = Path(source)
        data, filename = path.read_bytes(), name or path.name
    return Call("POST", "/api/v1/files", lambda r: File.model_validate(r.json()),
                files={"file": (filename, data, None)})


def get_file(file_id: str) -> Call[File]:
    return Call("GET", f"/api/v1/files/{file_id}", lambda r: File.model_validate(r.json()))


def delete_file(file_id: str) -> Call[None]:
    return Call("DELETE", f"/api/v1/files/{file_id}", lambda r: None, ok=(204,))


def event_task(data: str) -> Task | None:
    """The task object an SSE ``status`` event carries (``None`` for anything else)."""
    try:
        return Task.model_validate(json.loads(data))
    except ValueError:
        return None

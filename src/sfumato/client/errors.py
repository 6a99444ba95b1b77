"""Errors the client raises: the API's error envelope, and tasks that did not succeed."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from sfumato.client.types import Task


@dataclass
class FieldProblem:
    field: str
    message: str


class SfumatoClientError(Exception):
    """Base of everything this client raises on purpose."""


@dataclass
class APIError(SfumatoClientError):
    """The server answered with its error envelope (or something else that was not a success)."""

    status: int
    code: str
    message: str
    details: list[FieldProblem] = field(default_factory=list)
    request_id: str | None = None
    retry_after: float | None = None

    def __str__(self) -> str:
        lines = [f"{self.code} (HTTP {self.status}): {self.message}"]
        lines += [f"  {d.field}: {d.message}" for d in self.details]
        return "\n".join(lines)

    @classmethod
    def from_response(cls, response: httpx.Response) -> APIError:
        retry_after = response.headers.get("retry-after")
        try:
            body = response.json()
            error = body["error"]
            details = [FieldProblem(str(d["field"]), str(d["message"])) for d in error.get("details") or []]
            return cls(response.status_code, str(error["code"]), str(error["message"]), details,
                       body.get("request_id"), float(retry_after) if retry_after and retry_after.isdigit() else None)
        except (ValueError, KeyError, TypeError):
            return cls(response.status_code, "http_error", response.text[:300] or response.reason_phrase)


class TaskFailed(SfumatoClientError):
    """``wait`` ended with a task that failed or was canceled; ``task`` says why."""

    def __init__(self, task: Task):
        self.task = task
        reason = f"{task.error.code}: {task.error.message}" if task.error else task.status
        super().__init__(f"task {task.id} {task.status}: {reason}")


class WaitTimeout(SfumatoClientError):
    def __init__(self, task: Task, seconds: float):
        self.task = task
        super().__init__(f"task {task.id} still {task.status} after {seconds:g} s")

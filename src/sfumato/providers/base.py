"""The provider interface: ``async run(job) -> Outputs``. Routing, retries and timeouts wrap
it from outside; an adapter only translates one upstream's wire protocol and its errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfumato.catalog.spec import ModelSpec


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference file handed to an adapter: metadata plus a loader for its bytes."""

    file_id: str
    kind: str
    mime_type: str
    name: str
    width: int | None
    height: int | None
    load: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Job:
    task_id: str
    model: ModelSpec
    prompt: str
    params: dict[str, str]
    references: tuple[Reference, ...] = ()
    request_id: str = ""
    """The API request that created the task, for adapters to forward upstream (x-request-id)."""


@dataclass(frozen=True, slots=True)
class OutputImage:
    data: bytes
    mime_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Outputs:
    images: list[OutputImage]
    provider: str
    sandbox: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    """Provider facts worth keeping in the task result (upstream model, request id, ...)."""


class ProviderError(Exception):
    """An upstream refused or failed. ``code`` lands in the task's ``error.code``."""

    def __init__(self, code: str, message: str, *, retryable: bool = False):
        self.code = code
        self.message = message
        self.retryable = retryable
        super().__init__(message)


class Provider(Protocol):
    name: str
    supports_cancel: bool
    """True when canceling the ``run`` coroutine really stops the work (and its cost)."""

    async def run(self, job: Job) -> Outputs: ...

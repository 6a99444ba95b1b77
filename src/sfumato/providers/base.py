"""The provider interface: ``async run(job) -> Outputs``. Routing, retries and timeouts wrap
it from outside; an adapter only translates one upstream's wire protocol and its errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfumato.catalog.options import NO_OPTIONS, RequestOptions
from sfumato.catalog.spec import ModelSpec


async def _no_checkpoint(state: dict[str, Any]) -> None:
    """The default ``Job.checkpoint``: nothing persists the state (yet)."""


async def _no_partials(index: int, image: OutputImage) -> None:
    """The default ``Job.on_partial``: previews are dropped."""


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
    resume: dict[str, Any] | None = None
    """State an earlier attempt checkpointed (``route``, upstream request id, poll URLs): an
    asynchronous adapter polls that upstream request again instead of submitting a new one."""
    checkpoint: Callable[[dict[str, Any]], Awaitable[None]] = _no_checkpoint
    """Called by asynchronous adapters right after a successful submit, so that a crash after it
    does not cost a second upstream submit (reliability §3, scenario 5)."""
    options: RequestOptions = NO_OPTIONS
    """Request options a door set (output format and compression, background, input fidelity,
    moderation, user): only those the model declares in the catalog, so every adapter serving
    the model honours each one it is given (``catalog/options.py``)."""
    partial_images: int = 0
    """How many partial images (progressive previews of the final picture) to ask for, 0 to 3.
    An adapter whose upstream streams them (OpenAI) asks for this many and hands each to
    ``on_partial`` as it arrives; the others make none. Previews are never billed."""
    on_partial: Callable[[int, OutputImage], Awaitable[None]] = _no_partials
    """Called with each preview (the upstream's ``partial_image_index``, the image) before the
    final outputs are returned."""


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
    """An upstream refused or failed. ``code`` lands in the task's ``error.code``.

    ``retryable``: the same route may succeed if asked again (after ``retry_after`` seconds when
    the upstream said so). ``route_fault``: this route is broken (bad key, retired model, garbage
    answers) but another route may serve the job. Neither: the request itself was refused
    (validation, content policy), so no route will do better and the router stops.
    """

    route_fault: bool = False

    def __init__(self, code: str, message: str, *, retryable: bool = False, retry_after: float | None = None):
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)

    @property
    def failover(self) -> bool:
        """Whether the next route should be tried after this error."""
        return self.retryable or self.route_fault


class Provider(Protocol):
    name: str
    supports_cancel: bool
    """True when canceling the ``run`` coroutine really stops the work (and its cost)."""

    async def run(self, job: Job) -> Outputs: ...

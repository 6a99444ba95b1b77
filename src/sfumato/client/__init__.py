"""The Python client of sfumato's task API: ``Client`` (blocking) and ``AsyncClient``.

    from sfumato import Client

    with Client("http://127.0.0.1:8000", api_key="sk-sf_...") as client:
        task = client.generate("qwen-image", "A lighthouse at dusk", {"image_size": "landscape_16_9"})
        client.download(task.result.media[0], "lighthouse.png")
"""

from typing import TYPE_CHECKING, Any

from sfumato.client.errors import APIError, FieldProblem, SfumatoClientError, TaskFailed, WaitTimeout
from sfumato.client.sync_client import Client
from sfumato.client.types import Account, File, Media, Model, Task, TaskError, TaskResult

if TYPE_CHECKING:
    from sfumato.client.async_client import AsyncClient

__all__ = ["APIError", "Account", "AsyncClient", "Client", "FieldProblem", "File", "Media", "Model",
           "SfumatoClientError", "Task", "TaskError", "TaskFailed", "TaskResult", "WaitTimeout"]


def __getattr__(name: str) -> Any:
    """``AsyncClient`` on first use: it brings asyncio, which blocking code (and ``sfumato
    generate``) never needs."""
    if name == "AsyncClient":
        from sfumato.client.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'sfumato.client' has no attribute {name!r}")

"""sfumato: a self-hosted gateway for AI image generation.

``sfumato.Client`` and ``sfumato.AsyncClient`` are the Python client of its API (imported on
first use, so that ``import sfumato`` stays light for the server and the CLI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from sfumato.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from sfumato import client

        return getattr(client, name)
    raise AttributeError(f"module 'sfumato' has no attribute {name!r}")

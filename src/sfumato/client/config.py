"""Where the server is and which key to use: arguments first, then the environment."""

from __future__ import annotations

import os

from sfumato import __version__
from sfumato.client.errors import SfumatoClientError

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def connection(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    """``(base URL, headers every API call carries)``."""
    key = api_key or os.environ.get("SFUMATO_API_KEY", "")
    if not key:
        raise SfumatoClientError("No API key: pass api_key= or set SFUMATO_API_KEY.")
    url = (base_url or os.environ.get("SFUMATO_BASE_URL") or os.environ.get("SFUMATO_URL") or DEFAULT_BASE_URL)
    url = url.rstrip("/")
    return url, {"Authorization": f"Bearer {key}", "User-Agent": f"sfumato-python/{__version__}"}

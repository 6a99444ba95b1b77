"""The routing file: per model, an ordered list of upstream routes. Secrets never live in it,
only the names of the environment variables that hold them.

``SFUMATO_ROUTES_FILE`` points at an operator's file; unset, the packaged
``default_routes.yaml`` applies, so that setting one provider key is enough for real images.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sfumato.catalog.loader import load_yaml

DEFAULT_FILE = Path(__file__).with_name("default_routes.yaml")
ProviderName = Literal["openai", "xai", "vertex", "fal", "dashscope", "relay"]
OptionValue = str | int | float | bool


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Config):
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts on one route before failing over (reliability §3 scenario 9 proposes ≤ 5 in all)."""
    base_seconds: float = Field(default=0.5, ge=0)
    max_seconds: float = Field(default=8.0, ge=0)
    max_retry_after_seconds: float = Field(default=30.0, ge=0)
    """A longer ``Retry-After`` is not waited for: the next route is tried instead."""


class BreakerConfig(_Config):
    failures: int = Field(default=5, ge=1)
    """Consecutive failed attempts that open the circuit."""
    reset_seconds: float = Field(default=30.0, gt=0)
    """How long an open circuit skips the route before one trial request is let through."""


class Route(_Config):
    provider: ProviderName
    name: str | None = None
    """Names the route where two share a provider and upstream model (default: ``provider:model``)."""
    upstream_model: str
    edit_model: str | None = None
    """Upstream model for requests with references, where the upstream uses another app (fal)."""
    base_url: str | None = None
    """Unset: the provider's documented API base."""
    base_url_env: str | None = None
    """Environment variable holding the base URL (a relay has no default; the route is live
    only when it is set)."""
    credentials_env: str
    timeout_seconds: float = Field(default=120.0, gt=0)
    """Time limit of one attempt: submit, polling and the output download together."""
    weight: float = Field(default=1.0, gt=0)
    """Spreads jobs among routes of equal ``priority`` (weighted random order)."""
    priority: int | None = None
    """Routes are tried in ascending priority; unset: the position in the list."""
    allowed_download_hosts: tuple[str, ...] | None = None
    """Hosts output URLs may be fetched from; unset: the provider's documented CDN hosts."""
    max_download_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    poll_seconds: float = Field(default=1.0, gt=0)
    """First interval between status polls of an asynchronous upstream (it grows to 5 s)."""
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    options: dict[str, OptionValue] = {}
    """Adapter-specific knobs (see docs/providers.md)."""

    @property
    def key(self) -> str:
        """Stable name of the route inside its model, e.g. ``fal:fal-ai/qwen-image``."""
        return self.name or f"{self.provider}:{self.upstream_model}"


class RoutesFile(_Config):
    models: dict[str, Annotated[tuple[Route, ...], Field(min_length=1)]]

    @model_validator(mode="after")
    def _unique_keys(self) -> RoutesFile:
        for model_id, routes in self.models.items():
            keys = [route.key for route in routes]
            if len(keys) != len(set(keys)):
                raise ValueError(f"{model_id}: two routes with the same key; give one a name")
        return self


class RoutesFileError(ValueError):
    """The routing file cannot be read or does not validate; raised at startup, never later."""


def load_routes(path: Path | None) -> RoutesFile:
    path = path or DEFAULT_FILE
    try:
        raw = load_yaml(path.read_text())
        return RoutesFile.model_validate(raw or {"models": {}})
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise RoutesFileError(f"Cannot use the routes file {path}: {exc}") from exc


def credentials(route: Route, env: Mapping[str, str]) -> str | None:
    """The route's secret, or ``None`` when its environment variable is unset or empty."""
    value = env.get(route.credentials_env, "").strip()
    return value or None


def base_url(route: Route, env: Mapping[str, str], default: str | None) -> str | None:
    if route.base_url_env:
        value = env.get(route.base_url_env, "").strip()
        if value:
            return value.rstrip("/")
    return (route.base_url or default or "").rstrip("/") or None

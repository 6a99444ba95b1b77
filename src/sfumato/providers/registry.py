"""Which provider serves a model. Until upstream routes are configured, all go to the sandbox."""

from __future__ import annotations

from sfumato.providers.base import Provider


class ProviderRegistry:
    def __init__(self, default: Provider, routes: dict[str, Provider] | None = None):
        self._default = default
        self._routes = routes or {}

    def for_model(self, model_id: str) -> Provider:
        return self._routes.get(model_id, self._default)

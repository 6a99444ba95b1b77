"""Which provider serves a model: its ``RoutedProvider`` when it has a route with credentials,
else the default (the sandbox). Also what ``/api/v1/models`` and ``sfumato providers`` show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sfumato.providers.base import Provider
from sfumato.providers.breaker import State
from sfumato.providers.http import UpstreamHttp
from sfumato.providers.router import RoutedProvider
from sfumato.providers.routes import Route


@dataclass(frozen=True, slots=True)
class RouteStatus:
    """One configured route as an operator sees it; ``missing`` names what keeps it offline."""

    model_id: str
    route: Route
    live: bool
    missing: str | None
    state: State | None
    host: str | None = None
    """The API host the route talks to (its base URL's, or the provider's documented one)."""
    region: str | None = None
    """DashScope's region, or a Vertex route's location: an API key works in one region only."""

    @property
    def where(self) -> str:
        """``host (region)`` for a table."""
        return f"{self.host} ({self.region})" if self.host and self.region else self.host or "-"

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model_id, "route": self.route.key, "provider": self.route.provider,
                "upstream_model": self.route.upstream_model, "host": self.host, "region": self.region,
                "live": self.live, "missing": self.missing, "breaker": self.state.value if self.state else None}


class ProviderRegistry:
    def __init__(self, default: Provider, routes: dict[str, Provider] | None = None, *,
                 configured: dict[str, list[tuple[Route, str | None]]] | None = None,
                 http: UpstreamHttp | None = None,
                 endpoints: dict[tuple[str, str], tuple[str | None, str | None]] | None = None):
        self._default = default
        self._routes = routes or {}
        self._configured = configured or {}
        """Every configured route per model, with what is missing for it to be live (or None)."""
        self._endpoints = endpoints or {}
        """``(model, route key)`` → ``(host, region)``."""
        self._http = http

    def for_model(self, model_id: str) -> Provider:
        return self._routes.get(model_id, self._default)

    def statuses(self, model_id: str | None = None) -> list[RouteStatus]:
        result: list[RouteStatus] = []
        for mid, routes in self._configured.items():
            if model_id is not None and mid != model_id:
                continue
            routed = self._routes.get(mid)
            breakers = ({live.key: live.breaker.state for live in routed.routes}
                        if isinstance(routed, RoutedProvider) else {})
            result.extend(RouteStatus(mid, route, missing is None, missing, breakers.get(route.key),
                                      *self._endpoints.get((mid, route.key), (None, None)))
                          for route, missing in routes)
        return result

    def route_view(self, model_id: str) -> dict[str, Any]:
        """The ``route`` field of a model in ``/api/v1/models``: the first live route (the one a
        task tries first), or the sandbox. No URLs, no credential names."""
        for status in self.statuses(model_id):
            if status.live:
                return {"provider": status.route.provider, "upstream_model": status.route.upstream_model,
                        "live": True, "health": status.state.value if status.state else "closed"}
        return {"provider": self._default.name, "upstream_model": None, "live": False, "health": None}

    async def aclose(self) -> None:
        """Close the shared upstream client (the app's lifespan calls this)."""
        if self._http is not None:
            await self._http.aclose()

"""Builds the registry from settings, the routing file and the environment (secrets only come
from environment variables). Called once by ``app.build_deps``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from sfumato.providers import dashscope, fal_queue, openai_images, vertex_imagen, xai
from sfumato.providers.base import Provider
from sfumato.providers.breaker import CircuitBreaker
from sfumato.providers.http import UpstreamHttp
from sfumato.providers.registry import ProviderRegistry
from sfumato.providers.relay_image_edit import RelayImageEditProvider
from sfumato.providers.router import Adapter, LiveRoute, RoutedProvider
from sfumato.providers.routes import Route, RoutesFile, base_url, credentials, load_routes
from sfumato.providers.sandbox import SandboxProvider, parse_latency
from sfumato.providers.upstream import Upstream
from sfumato.settings import Settings

ADAPTERS: dict[str, Callable[[Upstream], Adapter]] = {
    "openai": openai_images.OpenAIImagesProvider,
    "xai": xai.XaiProvider,
    "vertex": vertex_imagen.VertexImagenProvider,
    "fal": fal_queue.FalQueueProvider,
    "dashscope": dashscope.DashScopeProvider,
    "relay": RelayImageEditProvider,
}
DEFAULT_BASE_URLS = {
    "openai": openai_images.DEFAULT_BASE_URL, "xai": xai.DEFAULT_BASE_URL, "vertex": vertex_imagen.DEFAULT_BASE_URL,
    "fal": fal_queue.DEFAULT_BASE_URL, "dashscope": dashscope.DEFAULT_BASE_URL,
}
DOWNLOAD_HOSTS: dict[str, tuple[str, ...]] = {
    "xai": xai.DOWNLOAD_HOSTS, "fal": fal_queue.DOWNLOAD_HOSTS, "dashscope": dashscope.DOWNLOAD_HOSTS,
}


def _default_base(route: Route) -> str | None:
    if route.provider == "vertex" and route.options.get("auth") == "gemini":
        return vertex_imagen.GEMINI_BASE_URL
    return DEFAULT_BASE_URLS.get(route.provider)


def _download_hosts(route: Route, base: str) -> tuple[str, ...]:
    if route.allowed_download_hosts is not None:
        return route.allowed_download_hosts
    if route.provider == "relay":
        return (urlsplit(base).netloc,)  # an unknown relay: its own host only
    return DOWNLOAD_HOSTS.get(route.provider, ())


def live_route(route: Route, http: UpstreamHttp, env: Mapping[str, str]) -> LiveRoute | str:
    """The route ready to use, or what is missing (an environment variable's name)."""
    secret = credentials(route, env)
    if secret is None:
        return route.credentials_env
    project_env = str(route.options.get("project_env", ""))
    if project_env and not route.options.get("project") and not env.get(project_env, "").strip():
        return project_env  # a Vertex route with an OAuth token also needs its project
    base = base_url(route, env, _default_base(route))
    if base is None:
        return route.base_url_env or "base_url"
    upstream = Upstream(route, http, secret, base, _download_hosts(route, base), env)
    breaker = CircuitBreaker(route.breaker.failures, route.breaker.reset_seconds)
    return LiveRoute(route, ADAPTERS[route.provider](upstream), breaker)


def build_routed(routes: RoutesFile, http: UpstreamHttp, env: Mapping[str, str], default: Provider,
                 ) -> ProviderRegistry:
    routed: dict[str, Provider] = {}
    configured: dict[str, list[tuple[Route, str | None]]] = {}
    for model_id, model_routes in routes.models.items():
        lives: list[LiveRoute] = []
        for route in model_routes:
            made = live_route(route, http, env)
            configured.setdefault(model_id, []).append((route, made if isinstance(made, str) else None))
            if isinstance(made, LiveRoute):
                lives.append(made)
        if lives:
            routed[model_id] = RoutedProvider(model_id, lives)
    return ProviderRegistry(default, routed, configured=configured, http=http)


def build_registry(settings: Settings, env: Mapping[str, str] | None = None) -> ProviderRegistry:
    """The sandbox for every model without a live route; ``SFUMATO_SANDBOX_ONLY`` forces it."""
    sandbox = SandboxProvider(parse_latency(settings.sandbox_latency_ms), settings.sandbox_failure_rate)
    routes = load_routes(settings.routes_file)
    return build_routed(routes, UpstreamHttp(), {} if settings.sandbox_only else (env or os.environ), sandbox)

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
"""Each provider's documented API base, used where a route sets no ``base_url``."""
DOWNLOAD_HOSTS: dict[str, tuple[str, ...]] = {
    "xai": xai.DOWNLOAD_HOSTS, "fal": fal_queue.DOWNLOAD_HOSTS, "dashscope": dashscope.DOWNLOAD_HOSTS,
}


def default_bases(settings: Settings) -> dict[str, str]:
    """``DEFAULT_BASE_URLS`` with DashScope's host for ``SFUMATO_DASHSCOPE_REGION`` (keys are per region)."""
    return {**DEFAULT_BASE_URLS, "dashscope": dashscope.REGION_BASE_URLS[settings.dashscope_region]}


def _default_base(route: Route, bases: Mapping[str, str]) -> str | None:
    if route.provider == "vertex" and route.options.get("auth") == "gemini":
        return vertex_imagen.GEMINI_BASE_URL
    if route.provider == "vertex" and route.options.get("auth") == "bearer":
        return vertex_imagen.regional_base_url(str(route.options.get("location", vertex_imagen.DEFAULT_LOCATION)))
    return bases.get(route.provider)


def endpoint(route: Route, env: Mapping[str, str], bases: Mapping[str, str] = DEFAULT_BASE_URLS,
             ) -> tuple[str | None, str | None]:
    """``(host, region)`` the route talks to, for ``sfumato providers``: DashScope's region for
    its regional hosts, the location of a Vertex route; ``(None, None)`` while its base is unset."""
    base = base_url(route, env, _default_base(route, bases))
    if base is None:
        return None, None
    region = None
    if route.provider == "dashscope":
        region = next((name for name, url in dashscope.REGION_BASE_URLS.items() if url == base), None)
    elif route.provider == "vertex" and route.options.get("auth") == "bearer":
        region = str(route.options.get("location", vertex_imagen.DEFAULT_LOCATION))
    elif route.provider == "vertex" and route.options.get("auth", "api_key") == "api_key":
        region = "global"  # express mode has no location
    return urlsplit(base).netloc, region


def _download_hosts(route: Route, base: str) -> tuple[str, ...]:
    if route.allowed_download_hosts is not None:
        return route.allowed_download_hosts
    if route.provider == "relay":
        return (urlsplit(base).netloc,)  # an unknown relay: its own host only
    return DOWNLOAD_HOSTS.get(route.provider, ())


def live_route(route: Route, http: UpstreamHttp, env: Mapping[str, str],
               bases: Mapping[str, str] = DEFAULT_BASE_URLS) -> LiveRoute | str:
    """The route ready to use, or what is missing (an environment variable's name)."""
    secret = credentials(route, env)
    if secret is None:
        return route.credentials_env
    project_env = str(route.options.get("project_env", ""))
    if project_env and not route.options.get("project") and not env.get(project_env, "").strip():
        return project_env  # a Vertex route with an OAuth token also needs its project
    base = base_url(route, env, _default_base(route, bases))
    if base is None:
        return route.base_url_env or "base_url"
    upstream = Upstream(route, http, secret, base, _download_hosts(route, base), env)
    breaker = CircuitBreaker(route.breaker.failures, route.breaker.reset_seconds)
    return LiveRoute(route, ADAPTERS[route.provider](upstream), breaker)


def build_routed(routes: RoutesFile, http: UpstreamHttp, env: Mapping[str, str], default: Provider,
                 bases: Mapping[str, str] = DEFAULT_BASE_URLS) -> ProviderRegistry:
    routed: dict[str, Provider] = {}
    configured: dict[str, list[tuple[Route, str | None]]] = {}
    endpoints: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    for model_id, model_routes in routes.models.items():
        lives: list[LiveRoute] = []
        for route in model_routes:
            made = live_route(route, http, env, bases)
            configured.setdefault(model_id, []).append((route, made if isinstance(made, str) else None))
            endpoints[model_id, route.key] = endpoint(route, env, bases)
            if isinstance(made, LiveRoute):
                lives.append(made)
        if lives:
            routed[model_id] = RoutedProvider(model_id, lives)
    return ProviderRegistry(default, routed, configured=configured, http=http, endpoints=endpoints)


def build_registry(settings: Settings, env: Mapping[str, str] | None = None) -> ProviderRegistry:
    """The sandbox for every model without a live route; ``SFUMATO_SANDBOX_ONLY`` forces it."""
    sandbox = SandboxProvider(parse_latency(settings.sandbox_latency_ms), settings.sandbox_failure_rate)
    routes = load_routes(settings.routes_file)
    return build_routed(routes, UpstreamHttp(), {} if settings.sandbox_only else (env or os.environ), sandbox,
                        default_bases(settings))

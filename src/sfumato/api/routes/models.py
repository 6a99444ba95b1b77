"""``/api/v1/models``: the catalog, machine-readable. Public: the model pages are public too."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sfumato.api.dependencies import DepsDep
from sfumato.api.schemas import ErrorEnvelope
from sfumato.catalog.spec import ModelSpec
from sfumato.errors import NotFound

router = APIRouter(prefix="/api/v1/models", tags=["models"])


def model_view(spec: ModelSpec, server_prompt_cap: int, route: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every field of the spec, absent ones as ``null`` (a missing key would hide that the page
    documents no limit), plus the prompt limit this server actually enforces and the route a
    task goes to first (``live: false`` means the sandbox)."""
    return {"object": "model", **spec.model_dump(mode="json"),
            "effective_prompt_max_chars": spec.prompt_max_chars or server_prompt_cap,
            **({"route": route} if route is not None else {})}


@router.get("", summary="List models")
async def list_models(deps: DepsDep) -> dict[str, Any]:
    cap = deps.settings.max_prompt_chars
    return {"data": [model_view(spec, cap, deps.providers.route_view(spec.id)) for spec in deps.catalog]}


@router.get("/{model_id}", summary="Get a model", responses={404: {"model": ErrorEnvelope}})
async def get_model(model_id: str, deps: DepsDep) -> dict[str, Any]:
    spec = deps.catalog.get(model_id)
    if spec is None:
        raise NotFound(f"No model {model_id[:100]!r}; known: {', '.join(deps.catalog.ids)}.")
    return model_view(spec, deps.settings.max_prompt_chars, deps.providers.route_view(spec.id))

"""``GET /v1/models`` and ``GET /v1/models/{id}`` of the OpenAI-compatible door: the image models
this server serves, under their catalog ids and the OpenAI names it also takes
(``gpt-image-1.5``), so that ``client.models.list()`` of the official SDKs works here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sfumato.api.dependencies import DepsDep, PrincipalDep
from sfumato.api.schemas import OpenAIErrorEnvelope
from sfumato.api.surfaces.openai_params import MODEL_ALIASES
from sfumato.deps import Deps
from sfumato.errors import NotFound

router = APIRouter(prefix="/v1/models", tags=["openai-compatible"])
_responses: dict[int | str, dict[str, Any]] = {code: {"model": OpenAIErrorEnvelope} for code in (401, 404)}


def _listed(deps: Deps) -> dict[str, dict[str, Any]]:
    names = [*deps.catalog.ids, *(alias for alias, target in MODEL_ALIASES.items() if deps.catalog.get(target))]
    # ``created`` is OpenAI's release date of a model; the catalog has none, so 0 says "unknown".
    return {name: {"id": name, "object": "model", "created": 0, "owned_by": "sfumato"} for name in names}


@router.get("", summary="List models (OpenAI-compatible)", responses=_responses)
async def list_models(deps: DepsDep, who: PrincipalDep) -> JSONResponse:
    return JSONResponse({"object": "list", "data": list(_listed(deps).values())})


@router.get("/{model_id}", summary="Retrieve a model (OpenAI-compatible)", responses=_responses)
async def get_model(model_id: str, deps: DepsDep, who: PrincipalDep) -> JSONResponse:
    found = _listed(deps).get(model_id)
    if found is None:
        raise NotFound(f"The model {model_id[:80]!r} does not exist here.")
    return JSONResponse(found)

"""Reads the model files into typed specs, once, at start-up."""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sfumato.catalog.spec import ModelSpec

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it (several times faster at start-up), else the pure one."""


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 (a SafeLoader, only faster)


class CatalogError(Exception):
    """A model file is malformed: the server refuses to start rather than serve a wrong contract."""


class Catalog:
    def __init__(self, models: list[ModelSpec]):
        self._models = {m.id: m for m in models}

    def get(self, model_id: str) -> ModelSpec | None:
        return self._models.get(model_id)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    @property
    def ids(self) -> list[str]:
        return list(self._models)


def _parse(name: str, text: str) -> ModelSpec:
    try:
        return ModelSpec.model_validate(load_yaml(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise CatalogError(f"model file {name}: {exc}") from exc


def load_catalog(extra_dir: Path | None = None) -> Catalog:
    """Built-in models first, then ``extra_dir/*.yaml`` (which may add or replace models)."""
    models: dict[str, ModelSpec] = {}
    builtin = resources.files("sfumato.catalog") / "models"
    for entry in sorted(builtin.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            spec = _parse(entry.name, entry.read_text(encoding="utf-8"))
            models[spec.id] = spec
    if extra_dir is not None:
        for path in sorted(extra_dir.glob("*.yaml")):
            spec = _parse(str(path), path.read_text(encoding="utf-8"))
            models[spec.id] = spec
    return Catalog(list(models.values()))

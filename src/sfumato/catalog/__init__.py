"""Model specs as data: the files in ``models/``, their typed form, and the request validator."""

from sfumato.catalog.loader import Catalog, load_catalog
from sfumato.catalog.spec import ModelSpec, ParamSpec
from sfumato.catalog.validate import TaskRequest, validate_task_request

__all__ = ["Catalog", "ModelSpec", "ParamSpec", "TaskRequest", "load_catalog", "validate_task_request"]

"""A quote: what a create would make of a request and what it would reserve, reserving nothing.

It takes the request a create takes (``catalog.validate_task_request``, the same header and
webhook checks in ``api/routes/tasks.py``), checks the key's model list as a create does
(``tasks.service.allowed``: 403) and the references (``files.references.resolve``, read only), so
a request a create refuses is refused here with the same error. What depends on the moment (the
balance, the key's credit limit) is not checked: a quote is a price, not a promise.
The price is ``TaskRequest.price``: exactly what ``create_task`` reserves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.accounts.queries import KeyPolicy
from sfumato.catalog.validate import TaskRequest
from sfumato.files import references
from sfumato.files.urls import MediaSigner
from sfumato.tasks import service


@dataclass(frozen=True, slots=True)
class Quote:
    model: str
    params: dict[str, Any]
    """As the task would keep them: normalised, defaults applied."""
    price: int

    def as_json(self) -> dict[str, Any]:
        return {"model": self.model, "params": self.params, "price": self.price}


async def quote(
    session: AsyncSession, account_id: str, request: TaskRequest, now: datetime, signer: MediaSigner | None = None,
    api_key: KeyPolicy | None = None,
) -> Quote:
    """Writes nothing; raises what ``create_task`` would for the key's models and the references."""
    service.allowed(service.key_policy(account_id, api_key), request, now)
    await references.resolve(session, account_id, request.references, now, signer, request.model.references)
    return Quote(request.model.id, request.stored_params(), request.price)

"""Everything the services need, built once (``app.build_deps``) and passed in, never imported."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sfumato.catalog import Catalog
from sfumato.clock import Clock
from sfumato.db.database import Database
from sfumato.files.urls import MediaSigner
from sfumato.providers.registry import ProviderRegistry
from sfumato.settings import Settings
from sfumato.storage import Storage
from sfumato.worker.signal import Signals


@dataclass
class Deps:
    settings: Settings
    db: Database
    catalog: Catalog
    storage: Storage
    signer: MediaSigner
    providers: ProviderRegistry
    clock: Clock
    signals: Signals

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_seconds)

    @property
    def idempotency_window(self) -> timedelta:
        return timedelta(hours=self.settings.idempotency_window_hours)

"""Settings: environment variables, URL drivers, and docs that list every knob."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfumato.settings import Settings

DOCS = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    missing = [name for name in Settings.model_fields if f"`SFUMATO_{name.upper()}`" not in text]
    assert missing == []


@pytest.mark.parametrize(
    ("given", "used"),
    [("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
     ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
     ("sqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
     ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db")],
)
def test_database_urls_get_the_async_driver(given: str, used: str) -> None:
    assert Settings(database_url=given).resolved_database_url == used


def test_defaults_live_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFUMATO_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SFUMATO_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'sfumato.db'}"
    assert settings.storage_dir == tmp_path / "storage"

"""The CLI's tables never cut an identifier, however narrow the terminal or pipe: ids are what
users copy into the next command (``sfumato models`` used to print ``gpt-ima…`` at 60 columns)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sfumato.catalog import load_catalog
from sfumato.settings import Settings


@pytest.mark.parametrize("columns", ["40", "60", "200"])
def test_model_ids_are_whole_at_any_width(columns: str, tmp_path) -> None:
    env = {**os.environ, "COLUMNS": columns, "SFUMATO_DATA_DIR": str(tmp_path)}
    shown = subprocess.run([sys.executable, "-m", "sfumato.cli", "models"], env=env, capture_output=True,
                           text=True, check=True).stdout
    for model_id in load_catalog(Settings().catalog_dir).ids:
        assert any(model_id in line for line in shown.splitlines()), (model_id, shown)

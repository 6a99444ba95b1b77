"""The CLI's admin commands call the admin services (one implementation with /admin/v1) and
need no running server: unique names, the ids a name matches, idempotent grants, disabling,
the admin key, and an audit entry with the actor ``cli`` for each write."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sfumato.cli import app

runner = CliRunner()


@pytest.fixture(params=["sqlite", "postgres"])
def cli_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {"SFUMATO_DATA_DIR": str(tmp_path / "data"), "SFUMATO_ADMIN_KEY": ""}
    if request.param == "postgres":
        env["SFUMATO_DATABASE_URL"] = request.getfixturevalue("pg_database")  # shared: names made unique
    return env


def invoke(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_second_account_with_the_same_name_is_refused(cli_env: dict[str, str], tmp_path: Path) -> None:
    name = f"acme-{os.urandom(3).hex()}"
    first = json.loads(invoke(cli_env, "accounts", "create", name, "--json"))
    again = runner.invoke(app, ["accounts", "create", name], env=cli_env)
    assert again.exit_code == 1
    assert f"An account named {name!r} exists already: {first['account_id']}" in " ".join(again.output.split())
    invoke(cli_env, "accounts", "grant", name, "10", "--idempotency-key", "evt-1")
    replay = invoke(cli_env, "accounts", "grant", name, "10", "--idempotency-key", "evt-1")
    assert "nothing granted" in replay
    assert json.loads(invoke(cli_env, "accounts", "show", name, "--json"))["balance"] == 10
    assert "disabled; 0 queued" in invoke(cli_env, "accounts", "disable", name)
    invoke(cli_env, "accounts", "enable", first["account_id"])


def test_a_name_matching_two_accounts_names_their_ids(cli_env: dict[str, str]) -> None:
    one = json.loads(invoke(cli_env, "accounts", "create", f"first-{os.urandom(3).hex()}", "--json"))
    # An account may be named like another's id: the name then matches both.
    two = json.loads(invoke(cli_env, "accounts", "create", one["account_id"], "--json"))
    result = runner.invoke(app, ["accounts", "grant", one["account_id"], "5"], env=cli_env)
    assert result.exit_code == 1
    flat = "".join(result.output.split())
    assert "Nosingleaccount" in flat and one["account_id"] in flat and two["account_id"] in flat


def test_admin_key_is_made_once_and_kept(tmp_path: Path) -> None:
    env = {"SFUMATO_DATA_DIR": str(tmp_path / "data"), "SFUMATO_ADMIN_KEY": ""}
    key = invoke(env, "admin-key").strip()
    assert key.startswith("sk-admin_") and invoke(env, "admin-key").strip() == key
    assert (tmp_path / "data" / "admin_key").stat().st_mode & 0o777 == 0o600
    assert invoke({**env, "SFUMATO_ADMIN_KEY": "sk-admin_set"}, "admin-key").strip() == "sk-admin_set"


async def test_cli_writes_are_audited_as_cli(make_deps) -> None:  # type: ignore[no-untyped-def]
    from sfumato.admin import audit
    from sfumato.admin import service as admin

    deps = await make_deps()
    async with deps.db.write() as session:
        account = await admin.create_account(session, "cli", "audited", 5, deps.clock.now())
    async with deps.db.read() as session:
        entries = (await audit.page(session)).entries
    assert [(e.actor, e.action, e.target, e.request_id) for e in entries] == [
        ("cli", "account.create", account.id, None)]

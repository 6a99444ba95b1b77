"""Fixtures. Every test that touches the database runs twice: on SQLite and on PostgreSQL.

PostgreSQL comes from ``SFUMATO_TEST_POSTGRES_URL`` (default: the local server with trust auth);
each test session makes its own database, ``SFUMATO_TEST_PG_PREFIX`` (default ``sfumato_test_``)
and eight hex digits, and drops it afterwards. If the server cannot be reached the PostgreSQL
variants are skipped with the reason, never passed silently.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from sfumato.accounts import service as accounts
from sfumato.app import build_deps, create_app
from sfumato.clock import Clock
from sfumato.db import migrate
from sfumato.db.models import Base
from sfumato.deps import Deps
from sfumato.settings import Settings
from tests.upstreams.openai import FakeOpenAI


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that restart services run last, so nothing else sees the restart."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_services") is not None)


PG_ADMIN_URL = os.environ.get("SFUMATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_prefix(spec: str | None) -> str:
    """The test databases' name prefix: lower-case letters, digits and ``_`` (it is written into
    ``CREATE DATABASE``), short enough for PostgreSQL's 63-byte names with the hex suffix."""
    prefix = spec or "sfumato_test_"
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,54}", prefix):
        raise ValueError(f"SFUMATO_TEST_PG_PREFIX={spec!r}: expected [a-z_][a-z0-9_]*, at most 55 characters")
    return prefix


PG_PREFIX = database_prefix(os.environ.get("SFUMATO_TEST_PG_PREFIX"))


def database_name(prefix: str = PG_PREFIX) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


async def _pg_admin(sql: str) -> str | None:
    """Run one admin statement; return an error message instead of raising."""
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
    return None


@pytest.fixture(scope="session")
async def pg_database() -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    name = database_name()
    error = await _pg_admin(f'CREATE DATABASE "{name}"')
    if error:
        pytest.skip(error)
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = Settings(database_url=f"{base}/{name}").resolved_database_url
    from sfumato.db.database import Database

    db = Database(url)
    await migrate.upgrade(db)
    await db.dispose()
    yield url
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    if backend == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
async def clean_database(database_url: str | None) -> str | None:
    """PostgreSQL is shared by the session: empty every table before each test."""
    if database_url is not None:
        from sfumato.db.database import Database

        db = Database(database_url)
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with db.engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await db.dispose()
    return database_url


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path, clean_database: str | None) -> SettingsFactory:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "database_url": clean_database,
            "sandbox_latency_ms": "0",
            "rate_limit_create": "100000/minute",
            "worker_poll_seconds": 0.2,
            "secret_key": "test-secret",
        }
        values.update(overrides)
        return Settings(**values)

    return factory


@pytest.fixture
async def make_deps(make_settings: SettingsFactory) -> AsyncIterator[Callable[..., Any]]:
    """``await make_deps(**settings)``: migrated dependencies, disposed after the test."""
    built: list[Deps] = []

    async def factory(clock: Clock | None = None, **overrides: Any) -> Deps:
        deps = build_deps(make_settings(**overrides), clock=clock)
        await migrate.upgrade(deps.db)
        built.append(deps)
        return deps

    yield factory
    for deps in built:
        await deps.providers.aclose()
        await deps.db.dispose()


@pytest.fixture
async def deps(make_deps: Callable[..., Any]) -> Deps:
    result: Deps = await make_deps()
    return result


@dataclass
class Customer:
    account_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def new_customer(deps: Deps, credits: int = 1000, name: str = "customer") -> Customer:
    """An account with a key. Account names are unique: ``name`` gets a random suffix, so a
    test (or a property test's examples) may make as many customers as it likes."""
    async with deps.db.write() as session:
        account = await accounts.create_account(session, f"{name}-{secrets.token_hex(4)}", credits, deps.clock.now())
        issued = await accounts.issue_key(session, account.id, deps.clock.now())
    return Customer(account.id, issued.secret)


@pytest.fixture
async def customer(deps: Deps) -> Customer:
    return await new_customer(deps)


@asynccontextmanager
async def serve(deps: Deps) -> AsyncIterator[httpx.AsyncClient]:
    """The app (worker included unless ``run_worker`` is off) behind an in-process client."""
    app = create_app(deps=deps)
    async with LifespanManager(app) as manager, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=manager.app), base_url="http://sfumato.test"
    ) as client:
        yield client


@pytest.fixture
async def client(deps: Deps) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(deps) as c:
        yield c


@pytest.fixture
async def upstream(make_deps: Callable[..., Any], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeOpenAI, Deps]]:
    """gpt-image-1-5 routed to the OpenAI fake (one attempt); the deps built on it."""
    async with FakeOpenAI() as fake:
        routes = tmp_path / "routes.yaml"
        routes.write_text(yaml.safe_dump({"models": {"gpt-image-1-5": [{
            "provider": "openai", "upstream_model": "gpt-image-1.5", "base_url": f"{fake.url}/v1",
            "credentials_env": "SFUMATO_TEST_OPENAI_KEY", "timeout_seconds": 5, "retry": {"max_attempts": 1}}]}}))
        monkeypatch.setenv("SFUMATO_TEST_OPENAI_KEY", fake.key)
        yield fake, await make_deps(routes_file=routes)

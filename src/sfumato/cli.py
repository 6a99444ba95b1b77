"""The ``sfumato`` command: serve, worker, admin (accounts, keys, credits), models, generate.

Each command imports what it needs when it runs: ``version``, ``--help``, ``demo-key`` and the
client-side ``generate`` must start in a fraction of a second, and the server stack (FastAPI,
SQLAlchemy, the providers, Pillow) costs about 2 s to import. Keep module-level imports light
(tests/test_cli_startup.py checks which modules ``import sfumato.cli`` loads); typing-only
imports go under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Column, Table

from sfumato import __version__
from sfumato.clock import iso_ms

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sfumato.deps import Deps
    from sfumato.providers.health import RouteHealth

app = typer.Typer(help="sfumato: one task API over many image models.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts, balances and the credit ledger.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: issue, list, revoke.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CLI = "cli"
"""The audit log's actor for writes made with these commands."""


def _logging() -> None:
    from sfumato import logs
    from sfumato.settings import Settings

    logs.configure(Settings().log_format)


def _with_deps(work: Callable[[Deps], Awaitable[T]]) -> T:
    """Run ``work`` against a migrated database, then release it; errors become exit code 1."""
    import asyncio

    from sfumato.app import build_deps
    from sfumato.db import migrate
    from sfumato.errors import SfumatoError
    from sfumato.settings import Settings

    async def main() -> T:
        deps = build_deps(Settings())
        try:
            await migrate.upgrade(deps.db)
            return await work(deps)
        finally:
            await deps.db.dispose()

    try:
        return asyncio.run(main())
    except SfumatoError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    demo: Annotated[bool, typer.Option(help="Create (once) a demo account and print its key.")] = False,
    worker: Annotated[bool, typer.Option(help="Run the worker in this process.")] = True,
) -> None:
    """Start the HTTP API (and, by default, the worker) on the configured database."""
    from sfumato.api.server import serve as serve_http
    from sfumato.app import create_app
    from sfumato.demo import KEY_FILE, ensure_demo_key
    from sfumato.settings import Settings

    _logging()
    settings = Settings(run_worker=worker)
    if demo:
        key = _with_deps(ensure_demo_key)
        base = f"http://{host}:{port}"
        console.print(Panel.fit(
            f"Demo API key: [bold]{key}[/bold]\n(kept in {settings.data_dir / KEY_FILE})\n\n"
            f"export SFUMATO_API_KEY=$(sfumato demo-key)\n"
            f"curl -s {base}/api/v1/models | head -c 300",
            title="sfumato demo", border_style="green",
        ))
        # Unwrapped, to stay clickable; the key is in the #fragment, which browsers never send.
        console.print(f"Playground: {base}/playground#key={key}", soft_wrap=True, highlight=False, markup=False)
    serve_http(create_app(settings), settings, host, port)


@app.command(name="demo-key")
def demo_key() -> None:
    """Print the demo key made by `sfumato serve --demo`."""
    from sfumato.demo import KEY_FILE
    from sfumato.settings import Settings

    path = Settings().data_dir / KEY_FILE
    if not path.exists():
        err.print("No demo key yet: start the server once with `sfumato serve --demo`.")
        raise typer.Exit(1)
    sys.stdout.write(path.read_text().strip() + "\n")


@app.command(name="admin-key")
def admin_key_command() -> None:
    """Print the operator's key for /admin/v1 and the console: SFUMATO_ADMIN_KEY, or the one kept
    in the data dir (made now if there is none yet)."""
    from sfumato.admin.key import admin_key
    from sfumato.settings import Settings

    sys.stdout.write(admin_key(Settings()) + "\n")


@app.command(name="worker")
def worker_command() -> None:
    """Run a worker on its own (no HTTP). Stops cleanly on SIGINT or SIGTERM."""
    import asyncio
    import logging
    import signal

    from sfumato.worker.loop import Worker

    _logging()

    async def run(deps: Deps) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if deps.settings.worker_metrics_port:
            from prometheus_client import start_http_server

            start_http_server(deps.settings.worker_metrics_port, addr="127.0.0.1")
        logging.getLogger("sfumato").info("worker started (concurrency %d)", deps.settings.worker_concurrency)
        await Worker(deps).run(stop)

    _with_deps(run)


@app.command(name="migrate")
def migrate_command() -> None:
    """Bring the database schema up to date (serve and worker also do this on start)."""

    async def noop(deps: Deps) -> None:
        # One line, never wrapped at the terminal's width: the URL (a path) is copied from it.
        url = deps.db.engine.url.render_as_string(hide_password=True)
        console.print(f"database is up to date: {url}", soft_wrap=True, highlight=False, markup=False)

    _with_deps(noop)


def _id_column(header: str, values: list[str]) -> Column:
    """A column of identifiers, never cut or wrapped however narrow the terminal (or pipe) is:
    an id is copied into the next command; the other columns wrap instead."""
    return Column(header, no_wrap=True, min_width=max([len(header), *map(len, values)]))


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """List the models in the catalog."""
    from sfumato.catalog import load_catalog
    from sfumato.settings import Settings

    catalog = load_catalog(Settings().catalog_dir)
    if as_json:
        _print_json([spec.model_dump(mode="json", exclude_none=True) for spec in catalog])
        return
    table = Table(_id_column("id", catalog.ids), "name", "credits", "inputs", "prompt limit", "params", "references")
    for spec in catalog:
        params = ", ".join(f"{p.key}={p.default or ''}" for p in spec.params)
        refs = f"{spec.references.max_files} image(s)" if spec.references else "none"
        table.add_row(spec.id, spec.name, str(spec.base_credits), ", ".join(spec.inputs),
                      str(spec.prompt_max_chars or "none documented"), params, refs)
    console.print(table)


@app.command()
def providers(
    server: Annotated[str | None, typer.Option(
        help="Base URL of a running server (or a worker's metrics port) to read each route's circuit "
             "and attempt counts from its /metrics, e.g. http://127.0.0.1:8000.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List each model's upstream routes in the order tasks try them: live (its key is set) or
    what is missing, and with --server their health in that process."""
    import httpx

    from sfumato.catalog import load_catalog
    from sfumato.providers.factory import build_registry
    from sfumato.providers.health import parse as route_health
    from sfumato.settings import Settings

    registry = build_registry(Settings())
    health: dict[tuple[str, str], RouteHealth] = {}
    if server:
        try:
            answer = httpx.get(f"{server.rstrip('/')}/metrics", timeout=5.0)
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            err.print(f"[red]Cannot read {server}/metrics: {exc}[/red]")
            raise typer.Exit(1) from exc
        health = route_health(answer.text)
    rows = []
    for status in registry.statuses():
        seen = health.get((status.model_id, status.route.key))
        rows.append({**status.as_dict(), "breaker": seen.circuit if seen else None,
                     "attempts": seen.attempts if seen else None, "timeout_seconds": status.route.timeout_seconds})
    if as_json:
        _print_json(rows)
        return
    table = Table(_id_column("model", [r["model"] for r in rows]), _id_column("route", [r["route"] for r in rows]),
                  "upstream model", "host", "timeout", "live", "health")
    for row, status in zip(rows, registry.statuses(), strict=True):
        live = "[green]yes[/green]" if status.live else f"[yellow]no: set {status.missing}[/yellow]"
        seen = health.get((status.model_id, status.route.key))
        shown = seen.summary if seen else ("unused" if server else "pass --server to read it")
        table.add_row(row["model"], row["route"], row["upstream_model"], status.where, f"{row['timeout_seconds']:g} s",
                      live, shown if status.live else "-")
    console.print(table)
    for spec in load_catalog(Settings().catalog_dir):
        if not any(s.live for s in registry.statuses(spec.id)):
            console.print(f"{spec.id}: no live route, runs on the sandbox")


@accounts_app.command("create")
def accounts_create(
    name: str,
    credits: Annotated[int, typer.Option(min=0, help="Initial credits.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Create an account with a first API key (shown once)."""

    async def work(deps: Deps) -> tuple[str, str]:
        from sfumato.admin import service as admin

        async with deps.db.write() as session:
            account = await admin.create_account(session, CLI, name, credits, deps.clock.now())
            issued = await admin.issue_key(session, CLI, deps.catalog, account.id, deps.clock.now())
        return account.id, issued.secret

    account_id, secret = _with_deps(work)
    if as_json:
        _print_json({"account_id": account_id, "api_key": secret})
    else:
        console.print(f"account [bold]{account_id}[/bold] ({name}), {credits} credits")
        console.print(f"API key (shown once): [bold]{secret}[/bold]")


@accounts_app.command("list")
def accounts_list(as_json: JsonOpt = False) -> None:
    """List accounts and balances."""

    async def work(deps: Deps) -> list[dict[str, Any]]:
        from sfumato.accounts import service as accounts

        async with deps.db.read() as session:
            return [{"account_id": a.id, "name": a.name, "balance": a.balance,
                     "created_at": iso_ms(a.created_at)} for a in await accounts.list_accounts(session)]

    rows = _with_deps(work)
    if as_json:
        _print_json(rows)
        return
    table = Table("account_id", "name", "balance", "created_at")
    for row in rows:
        table.add_row(row["account_id"], row["name"], str(row["balance"]), row["created_at"])
    console.print(table)


@accounts_app.command("grant")
def accounts_grant(
    account: Annotated[str, typer.Argument(help="Account id or unique name.")],
    credits: Annotated[int, typer.Argument(help="Credits to add; negative: a debit (down to zero).")],
    note: Annotated[str | None, typer.Option(help="Why (kept in the ledger).")] = None,
    idempotency_key: Annotated[str | None, typer.Option(
        help="Grant once per key: the same key again grants nothing (default: a new key each time).")] = None,
) -> None:
    """Add credits to an account (the same service as POST /admin/v1/accounts/{id}/grants)."""

    async def work(deps: Deps) -> tuple[int, bool]:
        import uuid

        from sfumato.accounts import service as accounts
        from sfumato.admin import service as admin

        async with deps.db.write() as session:
            found = await accounts.find_account(session, account)
            entry, created = await admin.grant(session, CLI, found.id, credits, deps.clock.now(),
                                               idempotency_key=idempotency_key or f"cli-{uuid.uuid4()}", note=note)
            return entry.balance_after, created

    balance, created = _with_deps(work)
    console.print(f"balance is now {balance}" if created else
                  f"already granted with this idempotency key: nothing granted (balance was {balance} after it)")


def _set_disabled(account: str, disabled: bool) -> list[str]:
    async def work(deps: Deps) -> list[str]:
        from sfumato.accounts import service as accounts
        from sfumato.admin import service as admin

        async with deps.db.write() as session:
            found = await accounts.find_account(session, account)
            _, canceled = await admin.update_account(session, CLI, found.id, deps.clock.now(), disabled=disabled)
        return canceled

    return _with_deps(work)


@accounts_app.command("disable")
def accounts_disable(account: Annotated[str, typer.Argument(help="Account id or name.")]) -> None:
    """Disable an account: its keys are refused, its queued tasks canceled and refunded."""
    canceled = _set_disabled(account, True)
    console.print(f"disabled; {len(canceled)} queued task(s) canceled and refunded")


@accounts_app.command("enable")
def accounts_enable(account: Annotated[str, typer.Argument(help="Account id or name.")]) -> None:
    """Enable a disabled account again."""
    _set_disabled(account, False)
    console.print("enabled")


@accounts_app.command("show")
def accounts_show(
    account: Annotated[str, typer.Argument(help="Account id or unique name.")],
    limit: Annotated[int, typer.Option(help="Ledger entries to show.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Show an account's balance and its latest ledger entries."""

    async def work(deps: Deps) -> dict[str, Any]:
        from sfumato.accounts import service as accounts

        async with deps.db.read() as session:
            found = await accounts.find_account(session, account)
            entries = await accounts.ledger_entries(session, found.id, limit)
            total = await accounts.ledger_sum(session, found.id)
        return {
            "account_id": found.id, "name": found.name, "balance": found.balance, "ledger_sum": total,
            "ledger": [{"id": e.id, "kind": e.kind, "amount": e.amount, "balance_after": e.balance_after,
                        "task_id": e.task_id, "note": e.note, "created_at": iso_ms(e.created_at)}
                       for e in entries],
        }

    data = _with_deps(work)
    if as_json:
        _print_json(data)
        return
    console.print(f"[bold]{data['name']}[/bold] {data['account_id']}: balance {data['balance']} "
                  f"(ledger sum {data['ledger_sum']})")
    table = Table("id", "when", "kind", "amount", "balance after", "task", "note")
    for e in data["ledger"]:
        table.add_row(str(e["id"]), e["created_at"], e["kind"], f"{e['amount']:+d}", str(e["balance_after"]),
                      e["task_id"] or "", e["note"] or "")
    console.print(table)


@keys_app.command("create")
def keys_create(
    account: Annotated[str, typer.Argument(help="Account id or unique name.")],
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue another API key for an account (shown once)."""

    async def work(deps: Deps) -> dict[str, str]:
        from sfumato.accounts import service as accounts
        from sfumato.admin import service as admin

        async with deps.db.write() as session:
            found = await accounts.find_account(session, account)
            issued = await admin.issue_key(session, CLI, deps.catalog, found.id, deps.clock.now(), name=name)
        return {"key_id": issued.key.id, "account_id": found.id, "api_key": issued.secret}

    data = _with_deps(work)
    if as_json:
        _print_json(data)
    else:
        console.print(f"key {data['key_id']} (shown once): [bold]{data['api_key']}[/bold]")


@keys_app.command("list")
def keys_list(
    account: Annotated[str, typer.Argument(help="Account id or unique name.")], as_json: JsonOpt = False
) -> None:
    """List an account's keys (prefix and last four characters only)."""

    async def work(deps: Deps) -> list[dict[str, str | None]]:
        from sfumato.accounts import service as accounts

        async with deps.db.read() as session:
            found = await accounts.find_account(session, account)
            return [{"key_id": k.id, "key": f"{k.prefix}…{k.last4}", "name": k.name,
                     "created_at": iso_ms(k.created_at),
                     "revoked_at": iso_ms(k.revoked_at) if k.revoked_at else None}
                    for k in await accounts.list_keys(session, found.id)]

    rows = _with_deps(work)
    if as_json:
        _print_json(rows)
        return
    table = Table("key_id", "key", "name", "created_at", "revoked_at")
    for row in rows:
        table.add_row(*(row[c] or "" for c in ("key_id", "key", "name", "created_at", "revoked_at")))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (key_…).")]) -> None:
    """Revoke a key: requests with it are refused from now on."""

    async def work(deps: Deps) -> str:
        from sfumato.admin import service as admin

        async with deps.db.write() as session:
            key = await admin.revoke_key(session, CLI, key_id, deps.clock.now())
        return f"{key.prefix}…{key.last4}"

    console.print(f"revoked {_with_deps(work)}")


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--param")
        params[key] = value
    return params


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The text prompt.")],
    model: Annotated[str, typer.Option("-m", "--model", help="Model id (see `sfumato models`).")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, repeatable.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to save the image.")] = None,
    url: Annotated[str, typer.Option(envvar=["SFUMATO_BASE_URL", "SFUMATO_URL"], help="Server base URL.")] = (
        "http://127.0.0.1:8000"),
    api_key: Annotated[str, typer.Option(envvar="SFUMATO_API_KEY", help="API key.", show_default=False)] = "",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the task.")] = 600.0,
) -> None:
    """Create a task over the HTTP API, wait for it with a live status, and save the image."""
    from sfumato.generate import GenerateError, run_generate

    if not api_key:
        err.print("Set SFUMATO_API_KEY (or pass --api-key); `sfumato demo-key` prints the demo key.")
        raise typer.Exit(2)
    try:
        saved = run_generate(url, api_key, model, prompt, _parse_params(param or []), output, timeout, console)
    except GenerateError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    for path in saved:
        console.print(f"saved [bold]{path}[/bold]")


if __name__ == "__main__":
    app()

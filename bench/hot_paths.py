"""Every row of "Hot paths at the speed of the database" in one run, side by side, one report.

  1-3  POST /v1/images/generations (OpenAI-compatible) through sfumato on SQLite and on
       PostgreSQL, next to the LiteLLM proxy, a thin aiohttp pass-through and the fake upstream
       called directly, with the fake answering at once and after 1 s, at c=1, 16 and 64. Driven
       by ../shared/bench-peer/run_peer_baseline.sh (or $BENCH_PEER_DIR), called once per
       sfumato backend with sfumato as its SUT; that script measures, and stops what it starts.
  4-5  POST /api/v1/tasks and GET /api/v1/tasks/{id} against the ceiling (bench/ceiling_app.py):
       bench/api_throughput.py.
  6    one `sfumato worker` draining 2,000 queued tasks on a 2 s sandbox (bench/slow_tasks.py)
       and create-to-start latency on an unloaded server (bench/start_latency.py).
  7    creates of one account at c=64 on PostgreSQL against creates spread over 64 accounts
       (bench/account_spread.py; PostgreSQL only).

Everything listens on 127.0.0.1; PostgreSQL runs get a fresh database on the local server
(SFUMATO_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres), dropped
afterwards. Progress goes to stderr, the markdown report to stdout (and to $OUT_MD if set); raw
data and every server's log stay in $OUT_DIR.

    .venv/bin/python bench/hot_paths.py > report.md           # full run, about 40-45 min on 2 cores
    SMOKE=1 .venv/bin/python bench/hot_paths.py > smoke.md    # smoke run, about 6 min

Knobs (environment; SMOKE=1 makes the defaults REPS=1 DURATION=3 DURATION_SLOW=4 WARMUP=1
SLOW_TASKS=200 START_TASKS=30, every variable below still wins):
  REPS=3 DURATION=10 DURATION_SLOW=20 WARMUP=3 CONCS="1 16 64" SLOW_MS=1000   peer runs (rows 1-3)
  GRANIAN=0 DRIVER=wrk WRK_THREADS=1   passed to run_peer_baseline.sh
  PG_PEER_FULL=0       1: the PostgreSQL peer run re-measures LiteLLM and the thin proxy too
  API_DURATION=$DURATION API_REPS=$REPS API_CONCS=16,64                        rows 4-5
  SLOW_TASKS=2000 SLOW_LATENCY_MS=2000 SLOW_CONCURRENCY=2000 SLOW_PROVIDERS=sandbox   row 6
  START_TASKS=300 START_GAP_MS=10                                              row 6, start latency
  BACKENDS="sqlite postgres"   PARTS="peer api slow start spread"   (run a subset)
  BENCH_PEER_DIR (../shared/bench-peer)  OUT_DIR (/tmp/bench-run/hot-paths-<time>)  OUT_MD
  SUT_PORT (a free port)
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
SFUMATO = str(Path(PY).with_name("sfumato"))
PEER_DIR = Path(os.environ.get("BENCH_PEER_DIR") or ROOT.parent / "shared" / "bench-peer").resolve()
PG_ADMIN = os.environ.get("SFUMATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
Medians = dict[tuple[str, int], dict[str, Any]]


SMOKE = os.environ.get("SMOKE") == "1"
"""SMOKE=1: short defaults (each still overridable by its own variable) to check that it all works."""


def env_int(name: str, default: int, smoke: int | None = None) -> int:
    return int(os.environ.get(name) or (smoke if SMOKE and smoke is not None else default))


REPS = env_int("REPS", 3, 1)
DURATION = env_int("DURATION", 10, 3)
DURATION_SLOW = env_int("DURATION_SLOW", 20, 4)
WARMUP = env_int("WARMUP", 3, 1)
CONCS = os.environ.get("CONCS") or "1 16 64"
SLOW_MS = env_int("SLOW_MS", 1000)
GRANIAN = os.environ.get("GRANIAN") or "0"
PG_PEER_FULL = os.environ.get("PG_PEER_FULL") == "1"
API_DURATION = env_int("API_DURATION", DURATION)
API_REPS = env_int("API_REPS", REPS)
API_CONCS = os.environ.get("API_CONCS") or "16,64"
SLOW_TASKS = env_int("SLOW_TASKS", 2000, 200)
SLOW_LATENCY_MS = env_int("SLOW_LATENCY_MS", 2000)
SLOW_CONCURRENCY = env_int("SLOW_CONCURRENCY", 2000)
SLOW_PROVIDERS = (os.environ.get("SLOW_PROVIDERS") or "sandbox").split()
START_TASKS = env_int("START_TASKS", 300, 30)
START_GAP_MS = float(os.environ.get("START_GAP_MS") or 10)
BACKENDS = (os.environ.get("BACKENDS") or "sqlite postgres").split()
PARTS = (os.environ.get("PARTS") or "peer api slow start spread").split()
OUT_DIR = Path(os.environ.get("OUT_DIR") or f"/tmp/bench-run/hot-paths-{time.strftime('%Y%m%d-%H%M%S')}")
OUT_MD = os.environ.get("OUT_MD")
BACKEND_NAME = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
SUT_MODEL_SLOW = "gpt-image-1-5-slow"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] hot_paths: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any SFUMATO_* setting (each run sets its own), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFUMATO_") or k == "SFUMATO_TEST_POSTGRES_URL"}
    env.update(extra)
    return env


def run_child(cmd: list[str], *, env: dict[str, str], cwd: Path, stdout_path: Path, stderr_path: Path,
              tee_stderr: bool = True) -> int:
    """Run ``cmd`` to its end, stdout to a file, stderr to a file (and to ours). Interrupted, the
    child gets SIGINT (bash traps it and Python raises KeyboardInterrupt, so both stop what they
    started), then SIGTERM, then SIGKILL."""
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.PIPE, start_new_session=True)
        try:
            assert proc.stderr is not None
            for line in iter(proc.stderr.readline, b""):
                err.write(line)
                err.flush()
                if tee_stderr:
                    sys.stderr.buffer.write(line)
                    sys.stderr.flush()
            return proc.wait()
        except BaseException:
            for sig, wait in ((signal.SIGINT, 40), (signal.SIGTERM, 20), (signal.SIGKILL, 5)):
                if proc.poll() is not None:
                    break
                proc.send_signal(sig)
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    continue
            raise


def psql(sql: str) -> str:
    return subprocess.run(["psql", PG_ADMIN, "-qAtc", sql], check=True, capture_output=True, text=True,
                          env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}).stdout.strip()


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not found)"


STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+ ")


def log_errors(path: Path, example_lines: int = 8) -> str:
    """The error records of a server log grouped by kind: a count, first and last time, and one
    example (its first line and the end of its traceback). Empty if there are none."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    records: list[list[str]] = []
    for line in lines:
        if STAMP.match(line) or not records or (line.startswith("Traceback") and not records[-1][-1].strip()):
            records.append([line])
        else:
            records[-1].append(line)
    kinds: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
    for record in records:
        head = record[0]
        if not (re.search(r" (ERROR|CRITICAL) ", head) or any(r.startswith("Traceback") for r in record)):
            continue
        message = re.sub(r"\[[^]]*\]", "", STAMP.sub("", head)).strip()
        last = next((r for r in reversed(record) if r.strip() and not r.startswith(" ")), head)
        kinds[(message, last if last != head else "")].append(record)
    out = []
    for (message, last), found in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        first, final = (STAMP.match(r[0]) for r in (found[0], found[-1]))
        when = f", {first.group(0).strip()} .. {final.group(0).strip()}" if first and final else ""
        out.append(f"{len(found)} x {message}" + (f" -> {last}" if last else "") + when)
        if "ClientDisconnect" in last:
            out.append("    (the client hung up before the server had read the request body: wrk closes its "
                       "connections when a timed run ends, with requests still queued in the server)")
        example = found[0]
        out += ["    " + example[0], *("    " + r for r in example[1:][-example_lines:])]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ setup


def write_catalog(dir_: Path) -> None:
    """Every built-in model file, plus gpt-image-1-5-slow: gpt-image-1-5 under another id."""
    models = ROOT / "src" / "sfumato" / "catalog" / "models"
    dir_.mkdir(parents=True)
    for path in sorted(models.glob("*.yaml")):
        shutil.copy(path, dir_ / path.name)
    text = (models / "gpt-image-1-5.yaml").read_text()
    slow, count = re.subn(r"(?m)^id: gpt-image-1-5\s*$", f"id: {SUT_MODEL_SLOW}", text)
    if count != 1:
        raise RuntimeError("gpt-image-1-5.yaml has no `id: gpt-image-1-5` line to rename")
    slow = slow.replace("name: GPT Image 1.5", "name: GPT Image 1.5 (bench copy, slow upstream)", 1)
    (dir_ / f"{SUT_MODEL_SLOW}.yaml").write_text(slow)


ROUTES = f"""# hot_paths.py: both models on the bench-peer fake upstream (run_peer_baseline.sh exports the bases)
models:
  gpt-image-1-5:
    - {{provider: openai, upstream_model: gpt-image-1.5, base_url_env: FAKE_FAST_BASE,
       credentials_env: BENCH_OPENAI_KEY, timeout_seconds: 60}}
  {SUT_MODEL_SLOW}:
    - {{provider: openai, upstream_model: gpt-image-1.5, base_url_env: FAKE_SLOW_BASE,
       credentials_env: BENCH_OPENAI_KEY, timeout_seconds: 60}}
"""


class Scratch:
    """A data dir, a catalog dir, a routing file and (PostgreSQL) a fresh database; all removed."""

    def __init__(self, backend: str):
        self.backend = backend
        self.dir = Path(tempfile.mkdtemp(prefix=f"sfumato-hotpaths-{backend}-"))
        self.db_name = f"sfumato_hotpaths_{os.getpid()}_{backend}" if backend == "postgres" else None
        self.database_url: str | None = None

    def __enter__(self) -> Scratch:
        write_catalog(self.dir / "catalog")
        (self.dir / "routes.yaml").write_text(ROUTES)
        (self.dir / "data").mkdir()
        if self.db_name:
            psql(f'DROP DATABASE IF EXISTS "{self.db_name}"')
            psql(f'CREATE DATABASE "{self.db_name}"')
            self.database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + self.db_name
            log(f"created database {self.db_name}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.db_name:
            try:
                psql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
                log(f"dropped database {self.db_name}")
            except subprocess.CalledProcessError as error:
                log(f"could not drop {self.db_name}: {error.stderr}")
        shutil.rmtree(self.dir, ignore_errors=True)

    def sfumato_env(self) -> dict[str, str]:
        env = {"SFUMATO_DATA_DIR": str(self.dir / "data"), "SFUMATO_ROUTES_FILE": str(self.dir / "routes.yaml"),
               "SFUMATO_CATALOG_DIR": str(self.dir / "catalog"), "SFUMATO_SECRET_KEY": "bench-hot-paths",
               "SFUMATO_RATE_LIMIT_CREATE": "100000000/minute", "BENCH_OPENAI_KEY": "sk-fake-upstream"}
        if self.database_url:
            env["SFUMATO_DATABASE_URL"] = self.database_url
        return env


# ------------------------------------------------------------------------------------------------ parts

RESULTS: dict[str, Any] = {"peer": {}, "problems": [], "timings": {}}


def problem(title: str, detail: str = "") -> None:
    log(f"PROBLEM: {title}")
    RESULTS["problems"].append((title, detail))


def peer_run(backend: str) -> None:
    work = OUT_DIR / f"peer-{backend}"
    with Scratch(backend) as scratch:
        senv = scratch.sfumato_env()
        created = subprocess.run([SFUMATO, "accounts", "create", "bench", "--credits", "100000000", "--json"],
                                 env=clean_env(**senv), capture_output=True, text=True)
        if created.returncode != 0:
            problem(f"sfumato accounts create failed ({backend})", created.stdout + created.stderr)
            return
        key = json.loads(created.stdout)["api_key"]
        port = int(os.environ.get("SUT_PORT") or free_port())
        sut_cmd = "env " + " ".join(shlex.quote(f"{k}={v}") for k, v in senv.items()) + \
            f" {shlex.quote(SFUMATO)} serve --host 127.0.0.1 --port {port}"
        full = backend == BACKENDS[0] or PG_PEER_FULL
        RESULTS.setdefault("sut_ports", []).append(port)
        env = clean_env(
            REPS=str(REPS), DURATION=str(DURATION), DURATION_SLOW=str(DURATION_SLOW), WARMUP=str(WARMUP),
            CONCS=CONCS, SLOW_MS=str(SLOW_MS), GRANIAN=GRANIAN if full else "0", WORK=str(work),
            PEER="1" if full else "0", REF="1" if full else "0",
            SUT_NAME=f"sfumato ({BACKEND_NAME[backend]})", SUT_CMD=sut_cmd,
            SUT_URL=f"http://127.0.0.1:{port}/v1/images/generations",
            SUT_READY_URL=f"http://127.0.0.1:{port}/healthz", SUT_AUTH=key,
            SUT_MODEL_FAST="gpt-image-1.5", SUT_MODEL_SLOW=SUT_MODEL_SLOW)
        for knob in ("DRIVER", "WRK_THREADS", "VENV_BASE", "VENV_LITELLM", "LITELLM_SPEC"):
            if os.environ.get(knob):
                env[knob] = os.environ[knob]
        if not full:
            env["ONLY"] = "^(direct_uvicorn_0|direct_uvicorn_slow|sut_0|sut_slow)$"
        log(f"peer run, sfumato on {BACKEND_NAME[backend]} (port {port}): {PEER_DIR / 'run_peer_baseline.sh'}")
        rc = run_child(["bash", str(PEER_DIR / "run_peer_baseline.sh")], env=env, cwd=PEER_DIR,
                       stdout_path=OUT_DIR / f"peer-{backend}.md", stderr_path=OUT_DIR / f"peer-{backend}.stderr")
    RESULTS["peer"][backend] = {"rc": rc, "work": work, "report": (OUT_DIR / f"peer-{backend}.md").read_text()}
    if rc != 0:
        problem(f"run_peer_baseline.sh exited with {rc} (sfumato on {BACKEND_NAME[backend]})",
                tail(OUT_DIR / f"peer-{backend}.stderr", 30) + "\n--- sut.log (end) ---\n" + tail(work / "sut.log", 40))


def script_run(name: str, args: list[str]) -> Any:
    json_out = OUT_DIR / f"{name}.json"
    log(f"{name}: {' '.join(args)}")
    rc = run_child([PY, str(BENCH / f"{name}.py"), *args, "--json-out", str(json_out), "--log-dir",
                    str(OUT_DIR / "logs")], env=clean_env(SFUMATO_TEST_POSTGRES_URL=PG_ADMIN), cwd=BENCH,
                   stdout_path=OUT_DIR / f"{name}.md", stderr_path=OUT_DIR / f"{name}.stderr")
    if rc != 0:
        problem(f"bench/{name}.py exited with {rc}", tail(OUT_DIR / f"{name}.stderr", 40))
    try:
        return json.loads(json_out.read_text())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------------ peer data


def peer_medians(work: Path) -> Medians:
    """(case, conc) -> medians over repetitions, as run_peer_baseline.sh's summarize.py takes them."""
    by: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    try:
        lines = (work / "raw.jsonl").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        if line.strip():
            r = json.loads(line)
            by[(r["case"], r["conc"])].append(r)
    out = {}
    for key, rs in by.items():
        w = [r["wrk"] for r in rs]
        reqs = sum(x["requests"] for x in w)
        cpu_ms = sum(r["cpu_ticks"] * 1000.0 / r["clk_tck"] for r in rs)
        out[key] = {"rps": statistics.median(x["ok_rps"] for x in w), "p50": statistics.median(x["p50_ms"] for x in w),
                    "p99": statistics.median(x["p99_ms"] for x in w), "reqs": reqs, "n": len(rs),
                    "errs": sum(x.get(k, 0) for x in w for k in ("err_status", "err_timeout", "err_connect",
                                                                  "err_read", "err_write", "err_body")),
                    "cpu": cpu_ms / reqs if reqs else None, "delay": rs[0].get("delay_ms", 0)}
    return out


def fmt(x: float | None, nd: int = 1) -> str:
    if x is None or x != x:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def ratio(a: float | None, b: float | None, nd: int = 3) -> str:
    return f"{a / b:.{nd}f}" if a is not None and b else "-"


# ------------------------------------------------------------------------------------------------ report


def versions() -> dict[str, str]:
    vers: dict[str, str] = {}
    code = ("import importlib.metadata as m, platform, sqlite3, json\n"
            "d = {'python': platform.python_version(), 'sqlite': sqlite3.sqlite_version}\n"
            "for p in %r:\n"
            "    try: d[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: d[p] = 'absent'\n"
            "print(json.dumps(d))")
    pkgs = ["sfumato", "fastapi", "starlette", "sqlalchemy", "asyncpg", "aiosqlite", "uvicorn", "uvloop",
            "httptools", "pydantic", "aiohttp"]
    try:
        vers.update(json.loads(subprocess.run([PY, "-c", code % pkgs], capture_output=True, text=True,
                                              check=True).stdout))
    except (subprocess.CalledProcessError, ValueError) as error:
        vers["python"] = f"? ({error})"
    litellm_py = Path(os.environ.get("VENV_LITELLM") or "/tmp/bench-venv/litellm") / "bin" / "python"
    if litellm_py.exists():
        try:
            lv = json.loads(subprocess.run([str(litellm_py), "-c", code % ["litellm"]], capture_output=True,
                                           text=True, check=True).stdout)
            vers["litellm"] = f"{lv['litellm']} (its own venv, Python {lv['python']})"
        except (subprocess.CalledProcessError, ValueError):
            vers["litellm"] = "?"
    else:
        vers["litellm"] = "not installed"
    git = ["git", "--no-optional-locks", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"
    subject = subprocess.run([*git, "log", "-1", "--format=%cs %s"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True).stdout
    changed = len([line for line in dirty.splitlines() if line.strip()])
    vers["commit"] = f"{commit[:12]} ({subject})" + (
        f" + uncommitted changes to {changed} file(s) under src/ (others are editing the tree)" if changed else "")
    try:
        vers["postgresql"] = psql("SHOW server_version")
    except (subprocess.CalledProcessError, FileNotFoundError):
        vers["postgresql"] = "unreachable"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    vers["wrk"] = ((wrk.stdout or wrk.stderr).split() or ["?", "?"])[1]
    return vers


def machine() -> dict[str, str]:
    def field(path: str, name: str) -> str:
        lines = Path(path).read_text().splitlines()
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), "?")

    cpu, mem = field("/proc/cpuinfo", "model name"), field("/proc/meminfo", "MemTotal")
    mib = f"{int(mem.split()[0]) / 1024 / 1024:.1f} GiB" if mem.split()[0].isdigit() else mem
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {"nproc": nproc, "cpu": cpu, "mem": mib, "kernel": platform.release()}


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def header(started: float, meta: dict[str, Any]) -> list[str]:
    m, v = meta["machine"], meta["versions"]
    timings = ", ".join(f"{k} {s:.0f} s" for k, s in RESULTS["timings"].items())
    busiest = max(float(meta["load_start"].split()[0]), float(meta["load_end"].split()[0]))
    busy = [f"- **the machine was busy: load average {busiest:g} on {m['nproc']} cores. Other work competed for "
            "the CPU during this run; compare the paths with each other within this report, not its absolute "
            "figures with another run's.**"] if busiest > int(m["nproc"] or 1) else []
    return [
        "# Hot paths at the speed of the database: benchmark report\n",
        f"- date: {meta['date']}; wall time {(time.time() - started) / 60:.1f} min ({timings})",
        f"- machine: {m['nproc']} cores ({m['cpu']}), {m['mem']} RAM, kernel {m['kernel']}; load average "
        f"{meta['load_start']} at start, {meta['load_end']} at end. Load generator, servers, fake upstream and "
        "database share these cores (a shared machine: others may be running tests at the same time).",
        *busy,
        f"- sfumato: commit {v.get('commit')}; package version {v.get('sfumato')}",
        f"- versions: Python {v.get('python')}, FastAPI {v.get('fastapi')}, Starlette {v.get('starlette')}, "
        f"SQLAlchemy {v.get('sqlalchemy')}, asyncpg {v.get('asyncpg')}, aiosqlite {v.get('aiosqlite')}, "
        f"uvicorn {v.get('uvicorn')}, uvloop {v.get('uvloop')}, httptools {v.get('httptools')}, "
        f"pydantic {v.get('pydantic')}, aiohttp {v.get('aiohttp')}; SQLite {v.get('sqlite')}, "
        f"PostgreSQL {v.get('postgresql')} (local server, 127.0.0.1:5432); LiteLLM {v.get('litellm')}; "
        f"wrk {v.get('wrk')}",
        f"- settings: SMOKE={int(SMOKE)} REPS={REPS} DURATION={DURATION} DURATION_SLOW={DURATION_SLOW} WARMUP={WARMUP} "
        f'CONCS="{CONCS}" SLOW_MS={SLOW_MS} API_DURATION={API_DURATION} API_REPS={API_REPS} '
        f"API_CONCS={API_CONCS} SLOW_TASKS={SLOW_TASKS} SLOW_LATENCY_MS={SLOW_LATENCY_MS} "
        f'SLOW_CONCURRENCY={SLOW_CONCURRENCY} START_TASKS={START_TASKS} BACKENDS="{" ".join(BACKENDS)}" '
        f'PARTS="{" ".join(PARTS)}"; raw data and logs: `{OUT_DIR}`',
        "- every server runs as 1 process, all on 127.0.0.1; sfumato is `sfumato serve` (API and embedded worker in "
        "one process) with default settings except the routing file, the catalog dir and "
        "SFUMATO_RATE_LIMIT_CREATE=100000000/minute.\n",
    ]


Path_ = tuple[str, Medians, str, Medians]  # label, its run's medians, case prefix, the run of its limit


def lookup(data: Medians, prefix: str, delay: str, c: int) -> dict[str, Any] | None:
    return data.get((f"{prefix}_{delay}", c))


def gateway_table(paths: list[Path_], peer: Medians, delay: str, concs: list[int]) -> list[str]:
    out = ["| path | c | req/s (2xx) | x limit | x LiteLLM | p50 ms | added p50 ms | p99 ms | errors "
           "| server CPU ms/req |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in concs:
        for label, data, prefix, same_run in paths:
            d = lookup(data, prefix, delay, c)
            if d is None:
                continue
            limit, litellm = lookup(same_run, "direct_uvicorn", delay, c), lookup(peer, "litellm", delay, c)
            added = d["p50"] - limit["p50"] if limit and prefix != "direct_uvicorn" else None
            out.append(f"| {label} | {c} | {fmt(d['rps'])} | {ratio(d['rps'], limit['rps'] if limit else None)} "
                       f"| {ratio(d['rps'], litellm['rps'] if litellm else None, 2)} | {fmt(d['p50'], 2)} "
                       f"| {fmt(added, 2)} | {fmt(d['p99'], 2)} | {d['errs']} | {fmt(d['cpu'], 3)} |")
    return out


def gateway_sections() -> list[str]:
    runs = {b: peer_medians(r["work"]) for b, r in RESULTS["peer"].items()}
    if not any(runs.values()):
        return []
    first = runs.get(BACKENDS[0], {})
    paths: list[Path_] = [("fake upstream called directly (limit)", first, "direct_uvicorn", first),
                          ("thin aiohttp pass-through (ref_proxy.py)", first, "ref", first),
                          ("LiteLLM proxy", first, "litellm", first)]
    paths += [(f"sfumato on {BACKEND_NAME[b]}", runs[b], "sut", runs[b]) for b in BACKENDS if b in runs]
    if PG_PEER_FULL:
        for b in BACKENDS[1:]:
            if b in runs:
                paths += [(f"{label} ({BACKEND_NAME[b]} run)", runs[b], prefix, runs[b])
                          for label, _, prefix, _ in paths[:3]]
    present = sorted({c for data in runs.values() for (_, c) in data})
    loaded = [c for c in present if c > 1]
    out = ["## 1. POST /v1/images/generations, fake upstream answering at once\n",
           *gateway_table(paths, first, "0", loaded),
           "\nx limit = req/s over the fake called directly in the same run (each sfumato row: its own run); "
           f"x LiteLLM = over LiteLLM's req/s (measured in the {BACKEND_NAME[BACKENDS[0]]} run unless PG_PEER_FULL=1); "
           "added p50 = p50 minus the direct call's p50 in the same run; server CPU = user+system CPU of the "
           "server's process tree during the runs / requests completed (sfumato's includes its embedded worker, "
           f"which makes the upstream call). Median of {REPS} repetition(s), {DURATION} s each; errors summed.\n",
           f"## 2. Same, upstream takes {SLOW_MS} ms\n",
           *gateway_table(paths, first, "slow", loaded),
           f"\nx limit = req/s over the fake called directly with the same {SLOW_MS} ms delay (the upstream-direct "
           f"limit: a little under c / {SLOW_MS / 1000:g} s in a closed loop); {DURATION_SLOW} s per run.\n"]
    if 1 in present:
        out += ["## 3. Unloaded (c=1): the latency each path adds\n",
                "| path | upstream delay | p50 ms | added p50 ms | p99 ms | req/s | server CPU ms/req |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for delay, shown in (("0", "0 ms"), ("slow", f"{SLOW_MS} ms")):
            for label, data, prefix, same_run in paths:
                d, limit = lookup(data, prefix, delay, 1), lookup(same_run, "direct_uvicorn", delay, 1)
                if d is not None:
                    added = d["p50"] - limit["p50"] if limit and prefix != "direct_uvicorn" else None
                    out.append(f"| {label} | {shown} | {fmt(d['p50'], 2)} | {fmt(added, 2)} | {fmt(d['p99'], 2)} "
                               f"| {fmt(d['rps'])} | {fmt(d['cpu'], 3)} |")
        out.append("")
    return out


def api_sections(api: list[dict[str, Any]] | None) -> list[str]:
    if not api:
        return []
    rows = {(r["name"], r["conc"]): r for r in api}
    out = []
    for op, method, title in (("create", "POST", "## 4. Task create: POST /api/v1/tasks"),
                              ("poll", "GET", "## 5. Task poll: GET /api/v1/tasks/{id}")):
        out += [title + "\n", "| server | c | req/s | % of ceiling | p50 ms | p99 ms | errors | server CPU ms/req "
                "| CPU x ceiling's |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in sorted({c for (_, c) in rows}):
            ceil = rows.get((f"ceiling {method}", c))
            for name, label in ((f"ceiling {method}", f"ceiling (bare Starlette, {method})"),
                                *((f"{op} ({b})", f"sfumato on {BACKEND_NAME[b]}") for b in BACKENDS)):
                r = rows.get((name, c))
                if r is None:
                    continue
                share = f"{100 * r['rps'] / ceil['rps']:.1f} %" if ceil else "-"
                out.append(f"| {label} | {c} | {fmt(r['rps'])} | {share} | {fmt(r['p50'], 2)} | {fmt(r['p99'], 2)} "
                           f"| {r['non2xx'] + r['socket_errors']:.0f} | {fmt(r['cpu_ms_per_req'], 3)} "
                           f"| {ratio(r['cpu_ms_per_req'], ceil['cpu_ms_per_req'] if ceil else None, 1)} |")
        out.append("")
    out.append(f"bench/api_throughput.py: wrk -t2, {API_DURATION} s per run, median of {API_REPS} repetition(s); "
               "`sfumato serve --no-worker` (the created tasks stay queued); create = qwen-image, JPEG; poll = one "
               "task read again and again by its owner; the ceiling = bench/ceiling_app.py (a fixed JSON task) on "
               "uvicorn; errors = non-2xx + socket errors.\n")
    return out


def worker_sections(slow: list[dict[str, Any]] | None, start: list[dict[str, Any]] | None) -> list[str]:
    if not (slow or start):
        return []
    out = [f"## 6. One `sfumato worker`, {SLOW_TASKS:,} queued tasks x {SLOW_LATENCY_MS / 1000:g} s sandbox\n"]
    if slow:
        out += ["| provider | backend | tasks | worker concurrency | all ended after s | ideal s | peak RSS MiB "
                "| ended as |", "|---|---|---:|---:|---:|---:|---:|---|"]
        for r in slow:
            ended = ", ".join(f"{n} {s}" for s, n in sorted(r.get("statuses", {}).items()))
            ideal = int(r["latency_ms"]) / 1000 * -(-r["tasks"] // r["concurrency"])
            out.append(f"| {r['provider']} | {BACKEND_NAME.get(r['backend'], r['backend'])} | {r['tasks']} "
                       f"| {r['concurrency']} | {r['drain_s']:.1f} | {ideal:g} | {r['peak_rss_mb']:.0f} | {ended} |")
        out.append("\nbench/slow_tasks.py: the tasks are queued through the task service before the worker starts; "
                   "the time runs from starting `sfumato worker` (process start and imports included) until no task "
                   "is queued or running; peak RSS = the worker's VmHWM; ideal = the sandbox latency x "
                   "ceil(tasks / concurrency).\n")
    if start:
        out += ["| create-to-start, unloaded | tasks | gap ms | started | p50 ms | p99 ms | max ms |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for r in start:
            out.append(f"| sfumato on {BACKEND_NAME.get(r['backend'], r['backend'])} | {r['tasks']} "
                       f"| {r['gap_ms']:g} | {r['started']} | {fmt(r['p50_ms'], 1)} | {fmt(r['p99_ms'], 1)} "
                       f"| {fmt(r['max_ms'], 1)} |")
        out.append("\nbench/start_latency.py: one `sfumato serve` (embedded worker, 50 ms sandbox) takes creates one "
                   f"at a time, {START_GAP_MS:g} ms apart; the delay is started_at minus created_at of each "
                   "task row.\n")
    return out


def memory_section() -> list[str]:
    mem = []
    for backend, run in RESULTS["peer"].items():
        for name, d in read_json(run["work"] / "meta.json", {}).get("rss", {}).items():
            if backend == BACKENDS[0] or name.startswith("sfumato"):
                mem.append((name, d))
    if not mem:
        return []
    out = ["## Memory during the peer runs (RSS of each server's process tree, MiB)\n",
           "| process | after startup | after warm-up | after all load | peak (VmHWM) |", "|---|---:|---:|---:|---:|"]
    out += [f"| {name} | {fmt(d.get('idle'))} | {fmt(d.get('warm'))} | {fmt(d.get('after'))} | {fmt(d.get('peak'))} |"
            for name, d in mem]
    return [*out, ""]


def peer_issues() -> list[tuple[str, str]]:
    issues = []
    for backend, run in RESULTS["peer"].items():
        name = BACKEND_NAME[backend]
        for note in read_json(run["work"] / "meta.json", {}).get("notes", []):
            if "smoke" in note or "failed" in note:
                issues.append((f"run_peer_baseline.sh note ({name} run): {note}", ""))
        errs = {k: d["errs"] for k, d in peer_medians(run["work"]).items() if d["errs"]}
        if errs:
            issues.append((f"failed requests in the {name} peer run (errors = non-2xx + socket errors + timeouts): "
                           + ", ".join(f"{case} c={c}: {n}" for (case, c), n in sorted(errs.items())), ""))
        excerpt = log_errors(run["work"] / "sut.log")
        if excerpt:
            issues.append((f"sfumato on {name}: errors in its log ({run['work'] / 'sut.log'})", excerpt))
    return issues


def result_issues() -> list[tuple[str, str]]:
    issues = []
    for r in RESULTS.get("api") or []:
        if r["non2xx"] + r["socket_errors"]:
            issues.append((f"api_throughput {r['name']} c={r['conc']}: {r['non2xx']:.0f} non-2xx, "
                           f"{r['socket_errors']:.0f} socket errors", ""))
    for r in RESULTS.get("slow") or []:
        unfinished = {s: n for s, n in r.get("statuses", {}).items() if s != "succeeded"}
        if unfinished:
            issues.append((f"slow_tasks ({r['provider']}, {r['backend']}): tasks not succeeded: {unfinished}", ""))
    for r in RESULTS.get("start") or []:
        if r["started"] < r["tasks"]:
            issues.append((f"start_latency ({r['backend']}): only {r['started']} of {r['tasks']} tasks started", ""))
    for path in sorted((OUT_DIR / "logs").glob("*.log")):
        excerpt = log_errors(path)
        if excerpt:
            issues.append((f"errors in {path}", excerpt))
    return issues


def problems_section(meta: dict[str, Any]) -> list[str]:
    issues = list(RESULTS["problems"]) + peer_issues() + result_issues()
    if meta.get("leftovers"):
        issues.append(("processes still running after the run (now sent SIGTERM by PID)", meta["leftovers"]))
    out = ["## Problems seen\n"]
    if not issues:
        out.append("None: every request succeeded and no server logged an error.\n")
    for title, detail in issues:
        out.append(f"- {title}")
        if detail:
            out.append("\n```\n" + detail.strip()[-6000:] + "\n```\n")
    if not meta.get("leftovers"):
        out.append(f"\nProcesses left running after the run: none (no descendant of this script is alive; ports "
                   f"{', '.join(map(str, meta['ports']))} on 127.0.0.1 refuse connections).\n")
    return out


def spread_section(spread: Any) -> list[str]:
    """Goal 4: creates of one account at c=64 on PostgreSQL against creates spread over 64."""
    if not spread:
        return []
    rows = spread["rows"]
    out = [f"\n## 7. One account against {spread['accounts']} accounts: POST /api/v1/tasks on PostgreSQL, "
           f"c={spread['concurrency']}\n", "| creates from | req/s | p50 ms | errors | server CPU ms/req |",
           "|---|---:|---:|---:|---:|"]
    for name, row in rows.items():
        out.append(f"| {name} | {row['rps']:,.0f} | {row['p50']:.1f} | {row['errors']:.0f} | "
                   f"{row['cpu_ms_per_req']:.3f} |")
    one, many = rows["one account"]["rps"], rows[f"{spread['accounts']} accounts"]["rps"]
    out.append(f"\nbench/account_spread.py: one account / {spread['accounts']} accounts = **{one / many:.2f}** "
               f"(medians of {spread['reps']} alternating rounds of {spread['duration']} s; the requests take the "
               "accounts' keys in turn).")
    return out


def report(started: float, meta: dict[str, Any]) -> str:
    out = [*header(started, meta), *gateway_sections(), *api_sections(RESULTS.get("api")),
           *worker_sections(RESULTS.get("slow"), RESULTS.get("start")), *spread_section(RESULTS.get("spread")),
           *memory_section(), *problems_section(meta)]
    for backend, run in RESULTS["peer"].items():
        out += [f"\n<details><summary>run_peer_baseline.sh's own report, sfumato on {BACKEND_NAME[backend]} "
                f"(exit {run['rc']})</summary>\n", run["report"].replace("\n## ", "\n#### ").replace("# ", "### ", 1),
                "\n</details>\n"]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ main


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry))
    out, queue = [], list(children[pid])
    while queue:
        current = queue.pop()
        out.append(current)
        queue.extend(children[current])
    return out


def leftovers(ports: list[int]) -> str:
    found = []
    for pid in descendants(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if not cmd or "ps -e" in cmd:
            continue
        found.append(f"pid {pid}: {cmd}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for port in ports:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                found.append(f"something still listens on 127.0.0.1:{port}")
    return "\n".join(found)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(name: str, work: Any) -> Any:
    t0 = time.time()
    try:
        return work()
    finally:
        RESULTS["timings"][name] = time.time() - t0


def run_parts() -> None:
    if "peer" in PARTS:
        for backend in BACKENDS:
            timed(f"peer {backend}", lambda b=backend: peer_run(b))
    if "api" in PARTS:
        RESULTS["api"] = timed("api", lambda: script_run("api_throughput", [
            "--duration", str(API_DURATION), "--concurrency", API_CONCS, "--backends", ",".join(BACKENDS),
            "--reps", str(API_REPS)]))
    if "slow" in PARTS:
        RESULTS["slow"] = timed("slow", lambda: script_run("slow_tasks", [
            "--tasks", str(SLOW_TASKS), "--latency-ms", str(SLOW_LATENCY_MS), "--concurrency", str(SLOW_CONCURRENCY),
            "--backend", *BACKENDS, "--provider", *SLOW_PROVIDERS]))
    if "start" in PARTS:
        RESULTS["start"] = timed("start", lambda: script_run("start_latency", [
            "--tasks", str(START_TASKS), "--gap-ms", f"{START_GAP_MS:g}", "--backend", *BACKENDS]))
    if "spread" in PARTS and "postgres" in BACKENDS:
        RESULTS["spread"] = timed("spread", lambda: script_run("account_spread", [
            "--accounts", "64", "--concurrency", "64", "--duration", str(API_DURATION), "--reps", str(API_REPS)]))


def preflight() -> None:
    if urlparse(PG_ADMIN).hostname not in LOOPBACK:
        sys.exit(f"hot_paths: PostgreSQL must be on loopback, not {PG_ADMIN}")
    if "peer" in PARTS and not (PEER_DIR / "run_peer_baseline.sh").exists():
        sys.exit(f"hot_paths: {PEER_DIR}/run_peer_baseline.sh not found (set BENCH_PEER_DIR)")
    if shutil.which("wrk") is None:
        log("installing wrk (apt)")
        subprocess.run(["bash", "-c", "apt-get update -qq && apt-get install -y -qq wrk"], check=True,
                       stdout=sys.stderr)
    if "postgres" in BACKENDS:
        try:
            psql("SELECT 1")
        except (subprocess.CalledProcessError, FileNotFoundError) as error:
            sys.exit(f"hot_paths: PostgreSQL at {PG_ADMIN} is not reachable ({error}); BACKENDS=sqlite skips it")


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    # SIGINT/SIGTERM: stop the children (run_child) and still print what was measured. SIGINT is
    # reset because a shell ignores it in background jobs, and an ignored SIGINT is inherited (bash
    # could then not trap it to stop its servers).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)
    preflight()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    started = time.time()
    meta: dict[str, Any] = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                            "load_start": loadavg(), "machine": machine()}
    log(f"output in {OUT_DIR}; parts {PARTS}; backends {BACKENDS}")
    stopped = False
    try:
        run_parts()
    except KeyboardInterrupt as why:
        stopped = True
        problem(f"the run was interrupted ({why or 'SIGINT'}): the report holds what was measured before")
    finally:
        meta["load_end"] = loadavg()
        meta["versions"] = versions()
        meta["ports"] = [9100, 9101, 9102, 9103, 4000, *RESULTS.get("sut_ports", [])]
        meta["leftovers"] = leftovers(meta["ports"])
        text = report(started, meta)
        print(text, flush=True)
        (OUT_DIR / "report.md").write_text(text + "\n")
        if OUT_MD:
            Path(OUT_MD).write_text(text + "\n")
        log(f"done in {(time.time() - started) / 60:.1f} min; report also in {OUT_DIR / 'report.md'}")
    if stopped:
        sys.exit(130)


if __name__ == "__main__":
    main()

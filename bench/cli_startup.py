"""How long the ``sfumato`` command takes to start: each command run as a whole process, several
times after a warm-up, with its wall and CPU time (``resource.getrusage`` of the finished child),
and the import time of ``sfumato.cli`` (``python -X importtime``). The commands are the ones
a client runs: ``version``, ``--help``, ``demo-key`` (reading a key file in a scratch data dir)
and ``generate`` against a port nothing listens on (so it ends at its first request: start-up
plus the client, without a server's work).

    .venv/bin/python bench/cli_startup.py --runs 10
    .venv/bin/python bench/cli_startup.py --runs 10 --against /tmp/before/src

``--against SRC`` runs every command a second time with ``PYTHONPATH=SRC`` (another checkout's
``src``, e.g. ``git archive <commit> src | tar -x -C /tmp/before``), in turn with this tree's,
and prints the ratio of the medians. ``--json-out FILE`` also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SFUMATO = str(Path(sys.executable).with_name("sfumato"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BARE_TYPER = """
import typer
app = typer.Typer()

@app.command()
def version() -> None:
    print("0")

@app.command()
def other() -> None:
    pass

app()
"""
"""A Typer app with two commands that import nothing: the floor of any Typer CLI (Typer itself
imports pydantic to read the arguments)."""


def commands() -> dict[str, list[str]]:
    url = f"http://127.0.0.1:{closed_port()}"
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "bare typer app": [sys.executable, "-c", BARE_TYPER, "version"],
        "sfumato version": [SFUMATO, "version"],
        "sfumato --help": [SFUMATO, "--help"],
        "sfumato demo-key": [SFUMATO, "demo-key"],
        "sfumato generate (no server)": [SFUMATO, "generate", "-m", "qwen-image", "x", "--url", url, "--api-key", "k"],
    }


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run (CPU: the child's user + system, from the kernel)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def import_ms(env: dict[str, str]) -> float:
    """Cumulative import time of ``sfumato.cli`` in ms (the last line of ``-X importtime``)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import sfumato.cli"], env=env,
                          capture_output=True, text=True, check=True)
    line = next(line for line in reversed(done.stderr.splitlines()) if line.rstrip().endswith("sfumato.cli"))
    match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|", line)
    assert match, line
    return int(match.group(1)) / 1000


def summary(walls: list[float], cpus: list[float]) -> dict[str, float]:
    return {"wall_median_s": round(statistics.median(walls), 3), "wall_min_s": round(min(walls), 3),
            "wall_max_s": round(max(walls), 3), "cpu_median_s": round(statistics.median(cpus), 3)}


def measure(sides: dict[str, dict[str, str]], runs: int, warmup: int) -> list[dict[str, object]]:
    rows = []
    for name, argv in commands().items():
        times: dict[str, tuple[list[float], list[float]]] = {side: ([], []) for side in sides}
        for turn in range(warmup + runs):
            for side, env in sides.items():  # in turn, so a drift in the machine's speed hits both
                wall, cpu = run_once(argv, env)
                if turn >= warmup:
                    times[side][0].append(wall)
                    times[side][1].append(cpu)
        row: dict[str, object] = {"command": name, "runs": runs, **{side: summary(*times[side]) for side in sides}}
        if "against" in sides:
            row["ratio_wall_median"] = round(
                statistics.median(times["this tree"][0]) / statistics.median(times["against"][0]), 3)
        rows.append(row)
    return rows


def report(rows: list[dict[str, object]], imports: dict[str, float]) -> None:
    print(f"{'command':30} {'side':10} {'wall p50 s':>10} {'min':>7} {'max':>7} {'cpu p50 s':>10}")
    for row in rows:
        for side in imports:
            s = row[side]
            assert isinstance(s, dict)
            print(f"{row['command']:30} {side:10} {s['wall_median_s']:>10.3f} {s['wall_min_s']:>7.3f} "
                  f"{s['wall_max_s']:>7.3f} {s['cpu_median_s']:>10.3f}")
        if "ratio_wall_median" in row:
            print(f"{'':30} {'A/B':10} {row['ratio_wall_median']:>10.3f}")
    for side, ms in imports.items():
        print(f"import sfumato.cli ({side}): {ms} ms cumulative (python -X importtime, median of 5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--against", type=Path, help="another checkout's src/, run in turn with this tree's")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sfumato-cli-bench-") as data_dir:
        (Path(data_dir) / "demo_api_key").write_text("sk-sf_bench\n")
        base = {k: v for k, v in os.environ.items() if not k.startswith("SFUMATO_") and k != "PYTHONPATH"}
        sides = {"this tree": {**base, "SFUMATO_DATA_DIR": data_dir}}
        if args.against:
            sides["against"] = {**sides["this tree"], "PYTHONPATH": str(args.against.resolve())}
        rows = measure(sides, args.runs, args.warmup)
        imports = {side: round(statistics.median(import_ms(env) for _ in range(5)), 1) for side, env in sides.items()}
    report(rows, imports)
    if args.json_out:
        args.json_out.write_text(json.dumps({"rows": rows, "import_ms": imports}, indent=2))


if __name__ == "__main__":
    main()

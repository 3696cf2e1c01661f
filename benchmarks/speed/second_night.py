"""A second night over calls already transcribed: what `callqa run` costs when there is nothing to
transcribe (issue 27: under 5 s against a running Prefect server).

Usage:
    python benchmarks/speed/second_night.py [--calls 4] [--runs 3]

Copies the first N demo recordings (and their manifest rows) into a temporary folder, runs one night
to transcribe them, then times `callqa run` again on the same folder and output (every call reused:
its transcript is stored with the same model and options), as a user starts it (a subprocess, from
the interpreter's start to its exit):

- with Prefect's embedded temporary server (what `callqa run` does when no server is configured);
- against a Prefect server started beforehand (`prefect server start`, ``PREFECT_API_URL`` set), as a
  site that runs its nights from a deployment would.

Prints each run's wall time and the night's own summary figures (its clock, its stages).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DEMO = ROOT / "demo" / "recordings"


def copy_calls(count: int, folder: Path) -> list[str]:
    lines = (DEMO / "manifest.csv").read_text(encoding="utf-8").splitlines()
    kept = lines[1: count + 1]
    folder.mkdir(parents=True)
    for line in kept:
        name = line.split(",", 1)[0]
        shutil.copy2(DEMO / name, folder / name)
    (folder / "manifest.csv").write_text("\n".join([lines[0], *kept]) + "\n", encoding="utf-8")
    return [line.split(",", 1)[0] for line in kept]


def night(callqa: str, folder: Path, out: Path, env: dict, summary: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run([callqa, "run", str(folder), "--out", str(out), "--summary-json", str(summary)],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 2):
        raise SystemExit(f"callqa run failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, json.loads(summary.read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    callqa = str(Path(sys.executable).with_name("callqa"))
    work = Path(tempfile.mkdtemp(prefix="callqa-second-night-"))
    folder, out = work / "in", work / "out"
    names = copy_calls(args.calls, folder)
    env = {**os.environ, "CALLQA_RUN_STATE_DIR": str(work / "state")}
    env.pop("PREFECT_API_URL", None)
    first, summary = night(callqa, folder, out, env, work / "first.json")
    console.print(f"first night: {len(names)} calls transcribed in {first:.1f} s "
                  f"({summary['processed']} processed, {summary['cached']} reused)")
    rows = []
    for run in range(args.runs):
        wall, summary = night(callqa, folder, out, env, work / "again.json")
        rows.append(["embedded temporary server", str(run + 1), f"{wall:.2f}", f"{summary['wall_s']:.2f}",
                     str(summary["cached"]), json.dumps(summary["stage_s"])])
    port = free_port()
    server_env = {**env, "PREFECT_HOME": str(work / "server-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                  "PREFECT_LOGGING_LEVEL": "CRITICAL"}
    prefect = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the Prefect server did not start in 120 s") from None
                time.sleep(0.5)
        running = {**env, "PREFECT_API_URL": url}
        for run in range(args.runs):
            wall, summary = night(callqa, folder, out, running, work / "again.json")
            rows.append(["running server (PREFECT_API_URL)", str(run + 1), f"{wall:.2f}", f"{summary['wall_s']:.2f}",
                         str(summary["cached"]), json.dumps(summary["stage_s"])])
    finally:
        server.terminate()
        server.wait(timeout=30)
    table = Table(title=f"A second night over {len(names)} calls already transcribed ({', '.join(names)})")
    for column in ("Prefect", "run", "callqa run, wall s", "the night's own clock s", "reused", "stages s"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

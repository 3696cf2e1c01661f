"""Throughput of the nightly flow on the demo corpus with the Dask runner (1 and 2 worker processes)
and with the default thread runner (1 and 2 threads), each on a fresh output folder (nothing cached).

Usage:
    python benchmarks/runner_benchmark.py

Runs under Prefect's test harness (a temporary local server). Wall time is the flow's own (from
discovery to the written tables), which includes starting the Dask cluster and loading the model in
every worker process.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # local and quiet, as callqa run is

from prefect.testing.utilities import prefect_test_harness  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from flows.nightly import configured_flow  # noqa: E402
from pipeline.config import load_config  # noqa: E402

SETUPS = [("threads", 1), ("dask", 1), ("threads", 2), ("dask", 2)]


def main() -> int:
    console = Console(width=120)
    table = Table(title="nightly flow on the demo calls")
    for column in ("runner", "workers", "calls", "flow wall s", "x real time"):
        table.add_column(column, justify="right")
    with prefect_test_harness(server_startup_timeout=120):
        for runner, workers in SETUPS:
            work = Path(tempfile.mkdtemp(prefix="callqa-runner-bench-"))
            config_path = work / "callqa.toml"
            key = "dask_workers" if runner == "dask" else "concurrency"
            config_path.write_text(f'[run]\nrunner = "{runner}"\n{key} = {workers}\n', encoding="utf-8")
            flow, concurrency = configured_flow(load_config(config_path))
            summary = flow(input_dir=str(ROOT / "demo" / "recordings"), out_dir=str(work / "out"),
                           config_path=str(config_path), concurrency=concurrency)
            table.add_row(runner, str(workers), str(summary["processed"]), f"{summary['wall_s']:.1f}",
                          f"{summary['speed_x_realtime']:.1f}")
    console.print(table)
    console.print(f"machine: {os.cpu_count()} cpus")
    return 0


if __name__ == "__main__":
    sys.exit(main())

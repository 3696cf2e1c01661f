"""Prefect's own overhead: the nightly flow against the same work done by the library without Prefect.

Usage:
    python benchmarks/prefect_overhead.py [--calls 1000] [--mono]

Makes N short recordings (copies of the 2.5 s two-speaker test clip, or with --mono of the 2.5 s mono
clip, which costs one Whisper window instead of two; every call is transcribed),
then times (a) the library alone: discovery, the same thread pool of process_recording, rules,
scores, writing the tables and agent scores; and (b) the `callqa-transcribe` flow doing the same on a
fresh output folder, under Prefect's test harness (its server is started before the clock starts).
Overhead = (flow - library) / flow.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # local and quiet, as callqa run is

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.transcribe.model import load_model  # noqa: E402
from pipeline.config import load_config, resolve_concurrency  # noqa: E402
from pipeline.night import run_night  # noqa: E402


def library_night(folder: Path, out: Path) -> float:
    started = time.perf_counter()
    run_night(folder, out)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--mono", action="store_true", help="mono 2.5 s calls (half the transcription work)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="callqa-overhead-"))
    folder = work / "in"
    folder.mkdir()
    clip = ROOT / "tests" / "data" / ("mono_8k.wav" if args.mono else "fmt_pcm16_8k_stereo.wav")
    for i in range(args.calls):
        shutil.copy(clip, folder / f"call{i:05d}.wav")
    load_model(load_config().asr, resolve_concurrency(load_config()))  # both sides start with the model loaded
    library_s = library_night(folder, work / "out-library")

    from prefect.testing.utilities import prefect_test_harness

    from flows.nightly import configured_flow

    with prefect_test_harness(server_startup_timeout=120):
        flow, concurrency = configured_flow(load_config())
        started = time.perf_counter()
        summary = flow(input_dir=str(folder), out_dir=str(work / "out-flow"), concurrency=concurrency)
        flow_s = time.perf_counter() - started
    table = Table(title=f"{args.calls} short {'mono' if args.mono else 'stereo'} calls (2.5 s each), "
                                f"{concurrency} in flight")
    for column in ("library alone s", "Prefect flow s", "Prefect overhead", "calls transcribed by the flow"):
        table.add_column(column, justify="right")
    table.add_row(f"{library_s:.1f}", f"{flow_s:.1f}", f"{(flow_s - library_s) / flow_s:.1%}",
                  str(summary["processed"]))
    Console(width=120).print(table)
    print(f"machine: {os.cpu_count()} cpus")
    return 0


if __name__ == "__main__":
    sys.exit(main())

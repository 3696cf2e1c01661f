"""Rescoring speed: a month of stored calls (default 100,000) rescored from Parquet, end to end.

Usage:
    python benchmarks/rescore_benchmark.py [--base OUT_DIR] [--calls N] [--days D] [--agents A]

The stored utterances, words and voice activity are real pipeline output: the demo calls as
transcribed by Whisper base (``--base``: an existing output folder; default: transcribe the demo
corpus first), replicated with new call ids over D days and A agents into N calls (about 10
utterances and 100 words per call). Then ``pipeline.rescore.rescore`` runs exactly as
``callqa rescore OUT_DIR`` does: read, rules, scores, write hits / rule_results / calls, rebuild
agent_scores. The printed time is that whole call, on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.rescore import rescore  # noqa: E402
from pipeline.schemas import PARTITION_COLUMN, TABLES  # noqa: E402
from pipeline.storage.parquet import PART_NAME, read_arrow  # noqa: E402


def build(base: Path, out: Path, n_calls: int, days: int, agents: int) -> dict[str, int]:
    """Replicate the base output's calls into ``n_calls`` calls over ``days`` days (Arrow, vectorised)."""
    tables = {name: read_arrow(base, name) for name in ("calls", "utterances", "voice_activity")}
    calls = tables["calls"].filter(pc.equal(tables["calls"]["status"], "ok"))
    base_ids = calls["call_id"].to_pylist()
    per_day = -(-n_calls // days)
    counts = {"calls": 0, "utterances": 0, "voice_activity": 0}
    first = date(2026, 10, 1)
    for day in range(days):
        date_str = (first + timedelta(days=day)).isoformat()
        todays = min(per_day, n_calls - day * per_day)
        if todays <= 0:
            break
        for name, table in tables.items():
            parts = []
            for copy in range(-(-todays // len(base_ids))):
                k = day * per_day + copy * len(base_ids)
                chunk = calls if name == "calls" else table
                mapping = {cid: f"{cid}-{k + i:07d}" for i, cid in enumerate(base_ids) if k + i < day * per_day + todays}
                keep = pc.is_in(chunk["call_id"], value_set=pa.array(list(mapping)))
                chunk = chunk.filter(keep)
                new_ids = pa.array([mapping[c] for c in chunk["call_id"].to_pylist()], pa.string())
                chunk = chunk.set_column(chunk.schema.get_field_index("call_id"), "call_id", new_ids)
                if name == "calls":
                    agent = pa.array([f"A{(k + i) % agents:03d}" for i in range(chunk.num_rows)], pa.string())
                    chunk = chunk.set_column(chunk.schema.get_field_index("agent_id"), "agent_id", agent)
                parts.append(chunk.drop_columns([PARTITION_COLUMN]))
            merged = pa.concat_tables(parts).cast(TABLES[name])
            target = out / name / f"{PARTITION_COLUMN}={date_str}" / PART_NAME
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(merged, target, compression="zstd")
            counts[name] += merged.num_rows
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=None, help="an output folder with the demo night")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--agents", type=int, default=120)
    args = parser.parse_args()
    console = Console(width=140)
    base = args.base
    if base is None:
        from benchmarks.rules_benchmark import transcribe_demo

        base = Path(tempfile.mkdtemp(prefix="callqa-demo-"))
        transcribe_demo(base)
    out = Path(tempfile.mkdtemp(prefix="callqa-rescore-bench-"))
    started = time.perf_counter()
    counts = build(base, out, args.calls, args.days, args.agents)
    console.print(f"built {counts} in {time.perf_counter() - started:.0f} s under {out}")
    summary = rescore(out)
    table = Table(title=f"callqa rescore of stored calls ({min(os.cpu_count() or 1, max(1, summary.calls // 2000))} worker processes)")
    for column in ("calls", "days", "utterances", "rule results", "findings", "agent score rows", "seconds",
                   "calls per second"):
        table.add_column(column, justify="right")
    table.add_row(str(summary.calls), str(args.days), str(summary.utterances), str(summary.rule_results),
                  str(summary.hits), str(summary.agent_score_rows), f"{summary.seconds:.1f}",
                  f"{summary.calls / summary.seconds:.0f}")
    console.print(table)
    console.print(f"machine: {os.cpu_count()} cpus")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of one long recording through the first half, against its length.

Usage:
    python benchmarks/memory_benchmark.py [--minutes 20,60,120] [--arenas N]

Builds stereo 8 kHz recordings of the given lengths from the demo corpus's stereo calls (played one
after the other), then transcribes each in a fresh process (`process_recording`, the default
configuration: beam 5, batch 8, the model shared by one per-core worker as a night runs) while
sampling the process's resident memory every 100 ms. Prints the peak, the resident memory with the
model loaded, and the speed. ``--arenas`` sets MALLOC_ARENA_MAX for the measured process; 0 (the
default, what a night runs with) leaves glibc's own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROBE = r"""
import json, sys, threading, time
from datetime import datetime, timezone
from pathlib import Path
from pipeline.config import load_config, resolve_concurrency
from pipeline.records import Recording
from pipeline.transcribe.model import load_model
from pipeline.transcribe.recording import process_recording

def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024

peak = [0.0]
def sample():
    while True:
        peak[0] = max(peak[0], rss())
        time.sleep(0.1)

threading.Thread(target=sample, daemon=True).start()
config = load_config()
model = load_model(config.asr, resolve_concurrency(config))
loaded = rss()
path = Path(sys.argv[1])
started = time.perf_counter()
result = process_recording(Recording(path, path.name, path.stem, "A", datetime.now(timezone.utc), "left", "星河通信"),
                           model, config)
wall = time.perf_counter() - started
print(json.dumps({"status": result.status, "minutes": result.duration_s / 60, "utterances": len(result.utterances),
                  "loaded_mb": loaded, "peak_mb": peak[0], "wall_s": wall}))
"""


def build(minutes: float, target: Path) -> None:
    """A stereo 8 kHz WAV of ``minutes`` from the demo's stereo calls, one after the other."""
    import numpy as np

    from pipeline.transcribe.audio import decode_audio

    calls = [decode_audio(p).channels_data for p in sorted((ROOT / "demo" / "recordings").glob("call*.*"))]
    calls = [c for c in calls if c.shape[0] == 2]
    need, written, i = int(minutes * 60 * 8000), 0, 0
    with wave.open(str(target), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        while written < need:
            data = calls[i % len(calls)][:, ::2][:, : need - written]  # 16 kHz -> 8 kHz
            out.writeframes((np.clip(data, -1, 1) * 32767).astype("<i2").T.tobytes())
            written += data.shape[1]
            i += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="20,60,120")
    parser.add_argument("--arenas", type=int, default=0)
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    work = Path(tempfile.mkdtemp(prefix="callqa-memory-"))
    table = Table(title=f"one stereo 8 kHz recording through the first half (MALLOC_ARENA_MAX="
                        f"{args.arenas or 'default'}, {os.cpu_count()} cpus)")
    for column in ("minutes", "status", "utterances", "RSS, model loaded", "peak RSS", "x real time"):
        table.add_column(column, justify="right")
    for minutes in [float(m) for m in args.minutes.split(",")]:
        path = work / f"call_{minutes:g}min.wav"
        build(minutes, path)
        env = {**os.environ, **({"MALLOC_ARENA_MAX": str(args.arenas)} if args.arenas else {})}
        done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, cwd=ROOT, env=env)
        if done.returncode != 0:
            print(done.stderr[-3000:])
            return 1
        row = json.loads(done.stdout.strip().splitlines()[-1])
        table.add_row(f"{row['minutes']:.1f}", row["status"], str(row["utterances"]), f"{row['loaded_mb']:.0f} MB",
                      f"{row['peak_mb']:.0f} MB", f"{row['minutes'] * 60 / row['wall_s']:.1f}")
        path.unlink()
    Console(width=120).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

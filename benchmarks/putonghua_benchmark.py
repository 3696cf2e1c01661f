"""How Putonghua and not-Putonghua sound to the bundled model: the signals of pipeline.rules.putonghua
on sets of real clips and on the synthetic calls.

Usage:
    python benchmarks/putonghua_benchmark.py --set mandarin_tel=benchmarks/putonghua/mandarin_tel \\
        --set dialect_tel=benchmarks/putonghua/dialect_tel [--corpus demo] [--csv FEATURES.csv] [--keep DIR]

Each clip of a set (any audio file) is put on the agent (left) channel of a stereo 16 kHz WAV, the
right channel a quiet noise floor, as a user would try callqa on a recording of one speaker; a night
runs on each set (the library's night, Whisper base int8, this machine's threads). ``--corpus DIR``
adds the agent utterances of a night on a synthetic corpus (its recordings as they are). Printed per
set: recordings, agent utterances, and the 10th / 50th / 90th percentile of each signal over the
utterances; ``--csv`` writes one row per agent utterance (set, recording, times, text, every signal)
for fitting a score.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

AUDIO = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"}
NOISE_RMS = 10 ** (-66 / 20)  # the right channel: a quiet line, no speech


def stereo_set(clips: Path, folder: Path) -> int:
    """Each clip of ``clips`` on the left channel of a stereo 16 kHz WAV in ``folder``, with a manifest."""
    from pipeline.review.examples import write_clip
    from pipeline.transcribe.audio import decode_audio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for path in sorted(p for p in clips.iterdir() if p.suffix.lower() in AUDIO):
        audio = decode_audio(path).channels_data
        left = audio.mean(axis=0)
        pad = np.zeros(8000, dtype=np.float32)  # 0.5 s before and after the speech
        left = np.concatenate([pad, left, pad])
        right = rng.normal(0.0, NOISE_RMS, left.size).astype(np.float32)
        left = left + rng.normal(0.0, NOISE_RMS, left.size).astype(np.float32)
        name = f"{path.stem}.wav"
        write_clip(np.stack([left, right]), folder / name)
        rows.append({"file": name, "agent_id": "P0001", "call_id": path.stem,
                     "started_at": "2026-11-23T09:00:00+08:00", "agent_channel": "left", "company": ""})
    with (folder / "manifest.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def agent_features(out: Path, label: str) -> list[dict]:
    import pandas as pd

    from pipeline.rules.putonghua import utterance_features

    utterances = pd.read_parquet(out / "utterances")
    rows = []
    for row in utterances[utterances["speaker"] == "agent"].to_dict("records"):
        rows.append({"set": label, "recording": row["call_id"], "start_s": row["start_s"], "end_s": row["end_s"],
                     "text": row["text"], **utterance_features(row)})
    return rows


def main() -> int:
    from pipeline.night import run_night
    from pipeline.rules.putonghua import FEATURES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=DIR", help="a folder of clips")
    parser.add_argument("--corpus", type=Path, action="append", default=[], help="a synthetic corpus (demo)")
    parser.add_argument("--csv", type=Path, help="write the per-utterance signals here")
    parser.add_argument("--keep", type=Path, help="keep the stereo files and night outputs here")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="callqa-putonghua-"))
    rows: list[dict] = []
    recordings: dict[str, int] = {}
    for spec in args.set:
        name, _, folder = spec.partition("=")
        recordings[name] = stereo_set(Path(folder), work / f"{name}_in")
        run_night(work / f"{name}_in", work / f"{name}_out")
        rows += agent_features(work / f"{name}_out", name)
    for corpus in args.corpus:
        name = corpus.name
        shutil.copytree(corpus / "recordings", work / f"{name}_in", dirs_exist_ok=True)
        recordings[name] = len(list((corpus / "truth").glob("*.json")))
        run_night(work / f"{name}_in", work / f"{name}_out")
        rows += agent_features(work / f"{name}_out", name)

    console = Console(width=230)
    table = Table(title="signals of the agent's utterances, 10th / 50th / 90th percentile")
    for column in ("set", "recordings", "utterances", *FEATURES):
        table.add_column(column, justify="right")
    for name in recordings:
        mine = [r for r in rows if r["set"] == name]
        cells = []
        for feature in FEATURES:
            values = np.array([r[feature] for r in mine if r[feature] is not None], dtype=float)
            cells.append(" / ".join(f"{v:.2f}" for v in np.percentile(values, [10, 50, 90])) if values.size else "-")
        table.add_row(name, str(recordings[name]), str(len(mine)), *cells)
    console.print(table)
    if args.csv:
        with args.csv.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        console.print(f"per-utterance signals: {args.csv} ({len(rows)} rows)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

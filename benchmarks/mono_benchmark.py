"""Mono recordings: who spoke, and the rules' verdicts, against the same calls in stereo.

Usage:
    python benchmarks/mono_benchmark.py [--corpus demo|benchmarks/heldout|benchmarks/heldout2] [--calls call01,...] [--keep DIR]

Mixes every stereo call of a corpus (``demo``, the calls the splitting was tuned on, or
``benchmarks/heldout`` and ``benchmarks/heldout2``, calls it had not seen when each was first measured: see their READMEs) down to mono (the two channels summed, 16 kHz WAV, the manifest row with
``agent_channel = mono``), runs a night on the stereo calls and one on their mixdowns (the library's
night, Whisper base int8), and prints:

- role accuracy: the share of the mono utterances' time whose speaker (agent, customer) is the one
  the script (``truth/<call>.json`` ``turns``) has speaking then, per call and in all (a third voice,
  ``other`` in the script, is right when it is named ``other``);
- per-rule outcome accuracy against the truth's ``expected``, stereo and mono side by side;
- the cost of splitting voices: the seconds spent on it against the seconds spent transcribing, on
  the mixdowns (one process, the default concurrency's threads).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402



def mixdowns(corpus: Path, calls: list[str], folder: Path) -> None:
    """The stereo demo calls, summed to mono, with the demo manifest's rows (agent_channel mono)."""
    from pipeline.review.examples import write_clip
    from pipeline.transcribe.audio import decode_audio

    folder.mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader((corpus / "recordings" / "manifest.csv").open(encoding="utf-8")))
    out = []
    for row in rows:
        if row["call_id"] not in calls:
            continue
        audio = decode_audio(corpus / "recordings" / row["file"]).channels_data
        mono = np.clip(audio.sum(axis=0), -1, 1)
        name = f"{row['call_id']}_mono.wav"
        write_clip(mono[None, :], folder / name)
        out.append({**row, "file": name, "agent_channel": "mono"})
    with (folder / "manifest.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(out[0]))
        writer.writeheader()
        writer.writerows(out)


def stereo_copy(corpus: Path, calls: list[str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [r for r in csv.DictReader((corpus / "recordings" / "manifest.csv").open(encoding="utf-8"))
            if r["call_id"] in calls]
    for row in rows:
        shutil.copy(corpus / "recordings" / row["file"], folder / row["file"])
    with (folder / "manifest.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT / "demo",
                        help="a folder with recordings/ (and its manifest.csv) and truth/")
    parser.add_argument("--calls", default="")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    import pandas as pd

    from pipeline.config import load_config, resolve_concurrency
    from pipeline.night import run_night
    from pipeline.records import Recording
    from pipeline.transcribe.model import load_model
    from pipeline.transcribe.recording import process_recording

    truth = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((args.corpus / "truth").glob("*.json"))}
    stereo_calls = [c for c, t in truth.items() if t["channels"] == 2]
    calls = [c for c in args.calls.split(",") if c] or stereo_calls
    work = args.keep or Path(tempfile.mkdtemp(prefix="callqa-mono-"))
    mixdowns(args.corpus, calls, work / "mono_in")
    stereo_copy(args.corpus, calls, work / "stereo_in")
    console = Console(width=120)

    outcomes = {}
    for kind in ("stereo", "mono"):
        run_night(work / f"{kind}_in", work / f"{kind}_out")
        outcomes[kind] = pd.read_parquet(work / f"{kind}_out" / "rule_results")
    mono_calls = pd.read_parquet(work / "mono_out" / "calls").set_index("call_id")
    utterances = pd.read_parquet(work / "mono_out" / "utterances")

    table = Table(title="mono mixdowns: roles by time against the script")
    for column in ("call", "status", "roles confidence", "utterances", "speech (s)", "on the right speaker"):
        table.add_column(column, justify="right")
    right_all = total_all = 0.0
    for call in calls:
        script = truth[call]["turns"]
        right = total = 0.0
        rows = utterances[utterances["call_id"] == call]
        for u in rows.itertuples():
            said = {}
            for t in script:
                said[t["speaker"]] = said.get(t["speaker"], 0.0) + overlap(u.start_s, u.end_s, t["start_s"], t["end_s"])
            spoken = sum(said.values())
            total += spoken
            right += said.get(u.speaker, 0.0)
        right_all, total_all = right_all + right, total_all + total
        row = mono_calls.loc[call]
        table.add_row(call, row["status"], f"{row['roles_confidence']:.2f}", str(len(rows)), f"{total:.1f}",
                      f"{right / total:.3f}" if total else "-")
    table.add_row("all", "", "", str(len(utterances)), f"{total_all:.1f}", f"{right_all / total_all:.3f}")
    console.print(table)

    table = Table(title="per-rule outcome accuracy against demo/truth: stereo and the same calls in mono")
    for column in ("rule", "stereo", "mono", "mono - stereo"):
        table.add_column(column, justify="right")
    totals = {"stereo": [0, 0], "mono": [0, 0]}
    for rule_id in sorted(outcomes["stereo"]["rule_id"].unique()):
        cells = []
        for kind in ("stereo", "mono"):
            got = outcomes[kind][outcomes[kind]["rule_id"] == rule_id].set_index("call_id")["outcome"]
            right = sum(got.get(c) == truth[c]["expected"].get(rule_id) for c in calls)
            totals[kind][0] += right
            totals[kind][1] += len(calls)
            cells.append(right / len(calls))
        table.add_row(rule_id, f"{cells[0]:.3f}", f"{cells[1]:.3f}", f"{cells[1] - cells[0]:+.3f}")
    s, m = (totals[k][0] / totals[k][1] for k in ("stereo", "mono"))
    table.add_row("all", f"{s:.3f}", f"{m:.3f}", f"{m - s:+.3f}")
    console.print(table)
    wrong = outcomes["mono"].merge(outcomes["stereo"], on=["call_id", "rule_id"], suffixes=("_mono", "_stereo"))
    for r in wrong[wrong["outcome_mono"] != wrong["outcome_stereo"]].itertuples():
        console.print(f"  differs: {r.rule_id} {r.call_id}: mono {r.outcome_mono} ({r.evidence_mono}), "
                      f"stereo {r.outcome_stereo}", markup=False)

    config = load_config()
    model = load_model(config.asr, resolve_concurrency(config))
    diarise = asr = 0.0
    audio_s = 0.0
    now = datetime.now(timezone.utc)
    warm = Recording(work / "mono_in" / f"{calls[0]}_mono.wav", "warm", "warm", "A", now, "mono",
                     truth[calls[0]]["company"])
    process_recording(warm, model, config)  # loads both models once, as a night's worker does
    for call in calls:
        path = work / "mono_in" / f"{call}_mono.wav"
        result = process_recording(Recording(path, path.name, call, "A", now, "mono", truth[call]["company"]),
                                   model, config)
        audio_s += result.duration_s or 0.0
        diarise += result.timings.get("diarise_s", 0.0)
        asr += result.timings.get("transcribe_s", 0.0) + result.timings.get("second_pass_s", 0.0)
    console.print(f"splitting voices: {diarise:.2f} s against {asr:.2f} s of transcription "
                  f"({100 * diarise / asr:.1f}%) on {audio_s / 60:.1f} min of mono audio; "
                  f"{audio_s / diarise:.0f}x real time on its own")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Putonghua or not, measured: how often dialect.putonghua fails real Mandarin (false alarms) and
real dialect and foreign speech (hits), and the signals of pipeline.rules.putonghua behind it.

Usage:
    python benchmarks/putonghua_benchmark.py --putonghua mandarin=DIR --other dialect=DIR \\
        --other foreign=DIR [--corpus demo] [--corpus benchmarks/heldout] [--lines clean,tel,noisy] \\
        [--csv SIGNALS.csv] [--keep DIR]

Each clip of a clip set (any audio file) is put on the agent (left) channel of a stereo WAV, the right
channel a quiet line, as a user would try callqa on a recording of one speaker, once per telephone
line of ``--lines``:
- ``clean``: the clip as it is (16 kHz);
- ``tel``: the corpus generator's telephone channel: 8 kHz, band-limited by sox ``sinc 300-3400``,
  a -63 dBFS noise floor, then G.711 µ-law;
- ``noisy``: ``tel`` with white noise 15 dB under the speech (a bad line).
A night runs on each set and line (the library's night, Whisper base int8, this machine's threads);
``--corpus DIR`` adds a synthetic corpus (Putonghua), its recordings as they are. With ``--keep DIR``
the nights are kept, and a later run with the same ``--keep`` reuses them and only rescores (so a new
score file or threshold is measured in seconds).

Printed: per set and line, the recordings whose dialect.putonghua failed (or asked for review): the
false-alarm rate on Putonghua and the hit rate on the rest; then the 10th / 50th / 90th percentile of
each signal over the agent's utterances, and of the model's language identification of each call's
agent speech (``calls.agent_zh_prob``). ``--csv`` writes one row per agent utterance (set,
recording, times, text, every signal) for benchmarks/fit_putonghua.py.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

AUDIO = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"}
NOISE_RMS = 10 ** (-63 / 20)  # the corpus generator's noise floor
LINES = ("clean", "tel", "noisy")
NOISY_SNR_DB = 15.0
RULE = "dialect.putonghua"


def _line(left: np.ndarray, right: np.ndarray, line: str, out: Path, rng: np.random.Generator) -> None:
    """Write the stereo file of one clip through one telephone line."""
    from pipeline.review.examples import write_clip

    if line == "noisy":
        speech = left[np.abs(left) > 1e-3]
        level = float(np.sqrt(np.mean(speech ** 2))) if speech.size else NOISE_RMS
        left = left + rng.normal(0.0, level * 10 ** (-NOISY_SNR_DB / 20), left.size).astype(np.float32)
    if line == "clean":
        write_clip(np.stack([left, right]), out)
        return
    wide = out.with_suffix(".16k.wav")
    write_clip(np.stack([left, right]), wide)
    subprocess.run(["sox", "-R", "-D", str(wide), "-b", "16", "-e", "signed-integer", str(out.with_suffix(".8k.wav")),
                    "sinc", "300-3400", "rate", "-v", "8000"], check=True)
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(out.with_suffix(".8k.wav")), "-c:a", "pcm_mulaw",
                    "-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1", str(out)], check=True)
    wide.unlink()
    out.with_suffix(".8k.wav").unlink()


def stereo_set(clips: Path, folder: Path, line: str) -> int:
    """Each clip of ``clips`` on the left channel of a stereo WAV in ``folder``, with a manifest."""
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
        _line(left, right, line, folder / name, rng)
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
    from pipeline.storage.rows import utterance_of

    utterances = pd.read_parquet(out / "utterances")
    rows = []
    for row in utterances[utterances["speaker"] == "agent"].to_dict("records"):
        rows.append({"set": label, "recording": row["call_id"], "start_s": row["start_s"], "end_s": row["end_s"],
                     "text": row["text"], **utterance_features(utterance_of(row))})
    return rows


def rule_outcomes(out: Path) -> dict[str, tuple[str, str]]:
    """Each call's dialect.putonghua outcome and evidence."""
    import pandas as pd

    results = pd.read_parquet(out / "rule_results")
    mine = results[results["rule_id"] == RULE]
    return {row["call_id"]: (row["outcome"], row["evidence"]) for row in mine.to_dict("records")}


def agent_zh_probs(out: Path) -> list[float]:
    """The model's language identification of each scored call's agent speech: p(zh)."""
    import pandas as pd

    calls = pd.read_parquet(out / "calls")
    if "agent_zh_prob" not in calls:
        return []
    return [float(v) for v in calls.loc[calls["status"] == "ok", "agent_zh_prob"].dropna()]


def night_or_rescore(inputs: Path, out: Path, timings: dict[str, float], name: str) -> None:
    """A night on ``inputs`` (unless one was kept), then the rules of the current lexicons."""
    from pipeline.night import run_night
    from pipeline.rescore import rescore

    if (out / "calls").exists():
        clock = time.perf_counter()
        rescore(out, workers=1)
        timings[name] = -(time.perf_counter() - clock)  # negative: rescored, not transcribed
        return
    clock = time.perf_counter()
    run_night(inputs, out)
    timings[name] = time.perf_counter() - clock


def main() -> int:
    from pipeline.rules.putonghua import FEATURES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--putonghua", action="append", default=[], metavar="NAME=DIR", help="clips of Putonghua")
    parser.add_argument("--other", action="append", default=[], metavar="NAME=DIR",
                        help="clips of dialect or another language")
    parser.add_argument("--corpus", type=Path, action="append", default=[], help="a synthetic corpus (Putonghua)")
    parser.add_argument("--lines", default="clean,tel", help=f"telephone lines for clip sets, of {', '.join(LINES)}")
    parser.add_argument("--csv", type=Path, help="write the per-utterance signals here")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the stereo files and night outputs here")
    args = parser.parse_args()
    lines = [line for line in args.lines.split(",") if line]
    if unknown := set(lines) - set(LINES):
        parser.error(f"unknown line(s) {sorted(unknown)}; known: {', '.join(LINES)}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="callqa-putonghua-"))
    rows: list[dict] = []
    sets: dict[str, tuple[dict, dict]] = {}  # name -> ({call: is Putonghua}, {call: (outcome, evidence)})
    timings: dict[str, float] = {}
    languages: dict[str, list[float]] = {}  # set -> each call's agent p(zh)
    for labelled, specs in ((True, args.putonghua), (False, args.other)):
        for spec in specs:
            base, _, folder = spec.partition("=")
            for line in lines:
                name = f"{base}@{line}"
                inputs, out = work / f"{name}_in", work / f"{name}_out"
                if not (out / "calls").exists():
                    shutil.rmtree(inputs, ignore_errors=True)
                    stereo_set(Path(folder), inputs, line)
                night_or_rescore(inputs, out, timings, name)
                rows += agent_features(out, name)
                languages[name] = agent_zh_probs(out)
                outcomes = rule_outcomes(out)
                sets[name] = ({call: labelled for call in outcomes}, outcomes)
    for corpus in args.corpus:
        name = corpus.name
        inputs, out = work / f"{name}_in", work / f"{name}_out"
        shutil.copytree(corpus / "recordings", inputs, dirs_exist_ok=True)
        night_or_rescore(inputs, out, timings, name)
        rows += agent_features(out, name)
        languages[name] = agent_zh_probs(out)
        outcomes = rule_outcomes(out)
        truth = {p.stem: json.loads(p.read_text(encoding="utf-8"))["expected"].get(RULE) for p in (corpus / "truth").glob("*.json")}
        sets[name] = ({call: truth.get(call) != "fail" for call in outcomes}, outcomes)

    console = Console(width=230)
    table = Table(title=f"{RULE}: recordings failed (or sent to review), per set and telephone line")
    for column in ("set", "truth", "recordings", "failed", "rate", "what it measures"):
        table.add_column(column, justify="right" if column in ("recordings", "failed", "rate") else "left")
    for label, what in ((True, "false alarms"), (False, "hits")):
        total = flagged = 0
        for name, (labels, outcomes) in sets.items():
            mine = [outcomes[call] for call, putonghua in labels.items() if putonghua == label]
            if not mine:
                continue
            bad = sum(outcome in ("fail", "review") for outcome, _ in mine)
            total, flagged = total + len(mine), flagged + bad
            table.add_row(name, "Putonghua" if label else "not", str(len(mine)), str(bad), f"{bad / len(mine):.3f}", what)
        if total:
            table.add_row(f"[b]all {'Putonghua' if label else 'not Putonghua'}[/]", "", str(total), str(flagged),
                          f"[b]{flagged / total:.3f}[/]", what, end_section=True)
    console.print(table)
    console.print("recordings with under 3 s of agent speech are not scored (unscorable) and not counted")
    for name, (labels, outcomes) in sets.items():
        for call, (outcome, evidence) in sorted(outcomes.items()):
            if (outcome in ("fail", "review")) == labels[call]:
                console.print(f"  {'false alarm' if labels[call] else 'missed'}: {name} {call}: {outcome}: {evidence}",
                              markup=False, overflow="fold")

    table = Table(title="signals of the agent's utterances, 10th / 50th / 90th percentile")
    for column in ("set", "utterances", *FEATURES, "calls: agent p(zh)"):
        table.add_column(column, justify="right")
    for name in sets:
        mine = [r for r in rows if r["set"] == name]
        cells = []
        zh = np.array(languages.get(name, []), dtype=float)
        for feature in FEATURES:
            values = np.array([r[feature] for r in mine if r[feature] is not None], dtype=float)
            cells.append(" / ".join(f"{v:.2f}" for v in np.percentile(values, [10, 50, 90])) if values.size else "-")
        cells.append(" / ".join(f"{v:.2f}" for v in np.percentile(zh, [10, 50, 90])) if zh.size else "-")
        table.add_row(name, str(len(mine)), *cells)
    console.print(table)
    console.print("seconds per set (negative: kept night, rules only): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
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

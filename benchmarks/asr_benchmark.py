"""ASR benchmark on the demo corpus: character error rate against the ground-truth scripts, and speed.

Usage:
    python benchmarks/asr_benchmark.py [--config callqa.toml] [--concurrency N] [--baseline] [--calls ...]

For every demo call it runs the library's pipeline (decode, voice activity, turn packing, batched
Whisper, second pass, guard) exactly as a nightly run does, without Prefect, with N calls in flight
(default: as a nightly run, one per CPU core), and prints per call: duration, agent- and customer-
channel CER (mono calls: all speech) and latency; the total speed is audio seconds over the wall-clock
time of the whole batch. ``--baseline`` then runs plain faster-whisper (``WhisperModel.transcribe``,
beam 5, its own VAD filter, both channels one after the other, one call at a time, all cores) on the
same files for comparison.
CER compares simplified text with punctuation and spaces removed; the references are the exact
sentences the corpus generator synthesised (demo/truth/*.json), with personal numbers masked as the
stored transcripts are (the baseline's text is compared the same way).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.transcribe.model import load_model  # noqa: E402
from pipeline.config import load_config, resolve_concurrency  # noqa: E402
from pipeline.transcribe.discover import discover_recordings  # noqa: E402
from pipeline.text import cer_counts  # noqa: E402
from pipeline.transcribe.privacy import mask_text  # noqa: E402
from pipeline.transcribe.recording import process_recording  # noqa: E402

DEMO = ROOT / "demo"


def truth_text(truth: dict, speaker: str | None) -> str:
    return "".join(t["text"] for t in truth["turns"] if speaker is None or t["speaker"] == speaker)


def baseline(model, channels, beam_size: int) -> tuple[list[str], float]:
    started = time.perf_counter()
    texts = []
    for row in channels:
        segments, _ = model.transcribe(row, language="zh", beam_size=beam_size, vad_filter=True)
        texts.append("".join(s.text for s in segments))
    return texts, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--baseline", action="store_true", help="also run plain faster-whisper (beam 5)")
    parser.add_argument("--calls", default="", help="comma-separated call ids (default: all)")
    parser.add_argument("--concurrency", type=int, default=None, help="calls in flight (default: automatic)")
    args = parser.parse_args()

    config = load_config(args.config)
    mask = functools.partial(mask_text, options=config.privacy)  # references masked as stored transcripts are
    discovery = discover_recordings(DEMO / "recordings", config.input)
    wanted = set(filter(None, args.calls.split(",")))
    recordings = [r for r in discovery.recordings if not wanted or r.call_id in wanted]
    workers = resolve_concurrency(config, args.concurrency)
    t0 = time.perf_counter()
    model = load_model(config.asr, workers)
    load_s = time.perf_counter() - t0
    console = Console(width=140)
    table = Table(title=f"ASR on the demo corpus: {model.model_label}, beam {config.asr.beam_size}, "
                        f"batch {config.asr.decode_batch}, {workers} call(s) in flight")
    for column in ("call", "format", "audio s", "agent CER", "customer CER", "latency s", "x real time"):
        table.add_column(column, justify="right" if column not in ("call", "format") else "left")
    if args.baseline:
        from pipeline.transcribe.audio import decode_audio

        table.add_column("baseline CER agent", justify="right")
        table.add_column("baseline x RT", justify="right")
        from faster_whisper import WhisperModel

        plain = WhisperModel(model.resolved.location, device=config.asr.device,
                             compute_type=config.asr.compute_type, cpu_threads=os.cpu_count() or 1)
    totals = {"agent": [0, 0], "customer": [0, 0], "mono": [0, 0], "audio": 0.0, "wall": 0.0,
              "base_agent": [0, 0], "base_wall": 0.0}

    def timed(rec):
        started = time.perf_counter()
        result = process_recording(rec, model, config)
        return result, time.perf_counter() - started

    batch_started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(timed, recordings))
    totals["wall"] = time.perf_counter() - batch_started
    for rec, (result, wall) in zip(recordings, outcomes):
        truth = json.loads((DEMO / "truth" / f"{rec.call_id}.json").read_text(encoding="utf-8"))
        if not result.ok:
            table.add_row(rec.call_id, "ERROR", "", result.error.message, "", "", "")
            continue
        totals["audio"] += result.duration_s
        cells = []
        if rec.agent_channel == "mono":
            edits, n = cer_counts(truth_text(truth, None), "".join(u.text for u in result.utterances), mask)
            totals["mono"][0] += edits
            totals["mono"][1] += n
            cells = [f"{edits / n:.3f} (mono)", "-"]
        else:
            for speaker in ("agent", "customer"):
                hyp = "".join(u.text for u in result.utterances if u.speaker == speaker)
                edits, n = cer_counts(truth_text(truth, speaker), hyp, mask)
                totals[speaker][0] += edits
                totals[speaker][1] += n
                cells.append(f"{edits / n:.3f}")
        fmt = f"{result.codec} {result.sample_rate // 1000 if result.sample_rate else '?'}k {result.channels}ch"
        row = [rec.call_id, fmt, f"{result.duration_s:.1f}", *cells, f"{wall:.2f}", f"{result.duration_s / wall:.1f}"]
        if args.baseline:
            audio = decode_audio(rec.path).channels_data
            texts, base_wall = baseline(plain, audio, 5)
            totals["base_wall"] += base_wall
            if rec.agent_channel == "mono" or audio.shape[0] == 1:
                row += ["-", f"{result.duration_s / base_wall:.1f}"]
            else:
                agent_text = texts[0 if rec.agent_channel == "left" else 1]
                edits, n = cer_counts(truth_text(truth, "agent"), agent_text, mask)
                totals["base_agent"][0] += edits
                totals["base_agent"][1] += n
                row += [f"{edits / n:.3f}", f"{result.duration_s / base_wall:.1f}"]
        table.add_row(*row)

    def ratio(pair):
        return f"{pair[0] / pair[1]:.3f}" if pair[1] else "-"

    total_row = ["ALL", f"{len(recordings)} calls", f"{totals['audio']:.1f}", ratio(totals["agent"]),
                 ratio(totals["customer"]), f"{totals['wall']:.2f}",
                 f"{totals['audio'] / totals['wall']:.1f}" if totals["wall"] else "-"]
    if args.baseline:
        total_row += [ratio(totals["base_agent"]),
                      f"{totals['audio'] / totals['base_wall']:.1f}" if totals["base_wall"] else "-"]
    table.add_row(*total_row, style="bold")
    console.print(table)
    console.print(f"mono calls, all speech CER: {ratio(totals['mono'])}; model load {load_s:.1f} s (not in wall); "
                  f"machine: {platform.machine()}, {os.cpu_count()} cpus")
    return 0


if __name__ == "__main__":
    sys.exit(main())

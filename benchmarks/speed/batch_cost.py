"""What one window costs the model, by how many windows are decoded together (``[asr] batch_size``).

Usage:
    python benchmarks/speed/batch_cost.py CORPUS [--threads 1] [--fill 1.0]

Packs the truth's agent turns of CORPUS (a corpus with recordings/ and truth/) into 8 windows, each
``fill`` x 30 s of speech and Whisper's padding after it, and transcribes them as a night does (beam 5,
word timing, the prompt, the encoder trimmed to the speech) in batches of 1, 2, 4 and 8, with
``--threads`` threads (1: one night worker on 2 cores). Prints the seconds a window for each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load_config  # noqa: E402
from pipeline.transcribe.audio import TARGET_RATE, AudioStream  # noqa: E402
from pipeline.transcribe.model import load_model  # noqa: E402

WINDOWS = 8


def agent_speech(corpus: Path, seconds: float) -> np.ndarray:
    clips, total = [], 0
    for path in sorted((corpus / "truth").glob("*.json")):
        truth = json.loads(path.read_text(encoding="utf-8"))
        row = 0 if truth.get("agent_channel", "left") == "left" else 1
        recording = next((corpus / "recordings").glob(f"{path.stem}.*"))
        audio = np.concatenate([piece[row] for piece in AudioStream(recording).pieces(600.0)])
        for turn in truth["turns"]:
            if turn["speaker"] == "agent":
                clips.append(audio[int(turn["start_s"] * TARGET_RATE): int(turn["end_s"] * TARGET_RATE)])
                total += clips[-1].size
        if total > seconds * TARGET_RATE:
            break
    return np.concatenate(clips).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fill", type=float, default=1.0, help="share of each 30-s window that is speech")
    args = parser.parse_args()
    asr = replace(load_config(None).asr, cpu_threads=args.threads)
    model = load_model(asr)
    window = int(30 * TARGET_RATE)
    used = int(window * args.fill)
    speech = agent_speech(args.corpus, WINDOWS * 30)
    packed = np.concatenate([np.concatenate([speech[k * used:(k + 1) * used], np.zeros(window - used, np.float32)])
                             for k in range(WINDOWS)])
    windows = [{"start": k * 30.0, "end": k * 30.0 + used / TARGET_RATE} for k in range(WINDOWS)]
    for batch in (1, 2, 4, 8):
        clock = time.perf_counter()
        for first in range(0, WINDOWS, batch):
            segments, _ = model.batched.transcribe(
                packed, language=asr.language or None, beam_size=asr.beam_size, batch_size=batch,
                clip_timestamps=windows[first:first + batch], word_timestamps=True, without_timestamps=True,
                initial_prompt=asr.initial_prompt or None, temperature=0.0, log_progress=False)
            list(segments)
        print(f"{args.threads} thread(s), windows {args.fill:.0%} speech, batch {batch}: "
              f"{(time.perf_counter() - clock) / WINDOWS:.3f} s a window", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The script a user would write instead of callqa: plain faster-whisper on both channels, then substring search.

Usage:
    python benchmarks/speed/plain_script.py RECORDINGS_DIR OUT.json [--model DIR] [--threads N] [--calls a,b]

For every recording, one after the other: decode it (faster-whisper's own decoder, 16 kHz), transcribe
each channel with ``WhisperModel.transcribe`` (beam 5, its Silero VAD filter on, language zh, every
other option as faster-whisper ships it), and keep each channel's text. The model loads once, with
``cpu_threads`` pinned (``--threads``, default: every core). OUT.json holds per call the channels' texts
and seconds, plus the script's own wall time (model load included) for the suite to compare with
``callqa run``. The phrase search is done by the suite on these texts (``suite.py``), since it is a
few string operations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

AUDIO = {".wav", ".flac", ".mp3", ".ogg", ".m4a"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recordings", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", required=True, help="a CTranslate2 Whisper directory")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--calls", default="", help="comma-separated file stems (default: all)")
    args = parser.parse_args()
    started = time.perf_counter()
    from faster_whisper import WhisperModel, decode_audio

    model = WhisperModel(args.model, device="cpu", compute_type="int8", cpu_threads=args.threads)
    wanted = set(filter(None, args.calls.split(",")))
    calls = {}
    for path in sorted(p for p in args.recordings.iterdir() if p.suffix.lower() in AUDIO):
        if wanted and path.stem not in wanted:
            continue
        clock = time.perf_counter()
        channels = decode_audio(str(path), split_stereo=True)
        texts = []
        for channel in channels:
            segments, _info = model.transcribe(channel, language="zh", beam_size=5, vad_filter=True)
            texts.append("".join(segment.text for segment in segments))
        calls[path.stem] = {"file": path.name, "texts": texts, "seconds": time.perf_counter() - clock,
                            "audio_s": len(channels[0]) / 16000}
    wall = time.perf_counter() - started
    args.out.write_text(json.dumps({"wall_s": wall, "threads": args.threads, "calls": calls}, ensure_ascii=False,
                                   indent=1), encoding="utf-8")
    print(f"{len(calls)} calls, {sum(c['audio_s'] for c in calls.values()):.0f} s of audio in {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

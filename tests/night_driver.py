"""A night in a subprocess, for the fault suite: the real night code, with a stand-in for the speech
model (deterministic words per turn, no model load) so that it runs in a second or two, and a kill
switch: ``--kill-at write:N`` (the N-th table file staged), ``replace:N`` (the N-th os.replace of the
publication: the journal is the first) or ``transcribe:N`` (after N recordings transcribed) sends the
process SIGKILL, as a power cut or the OOM killer would.

    python -m tests.night_driver INPUT_DIR OUT_DIR [--run-id ID] [--kill-at KIND:N] [--hold-s S]

``--hold-s`` makes every transcription take that long (to hold the output lock while another night
tries to start). Prints the summary as JSON on the last line, with ``counts``: how many files it staged
(``write``), how many publication moves it made (``replace``) and recordings it transcribed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from types import SimpleNamespace


def fake_words(model, channels, turns, segmentation, prompt="", language_probs=None, timings=None, echo_of=None):
    """What the stand-in model 'hears' in each turn: a greeting first, a farewell last, words in between."""
    from pipeline.records import TurnWord

    said = {}
    agent = [i for i, t in enumerate(turns) if t.speaker != "customer"]
    for i, turn in enumerate(turns):
        if turn.speaker == "customer":
            said[i] = "我想查一下话费。"
        elif i == agent[0]:
            said[i] = "您好，星河通信，请讲。"
        elif i == agent[-1]:
            said[i] = "感谢您的来电，再见。"
        else:
            said[i] = "好的，谢谢，请您稍候。"
    words = []
    for i, turn in enumerate(turns):
        text = said[i]
        step = (turn.end_s - turn.start_s) / len(text)
        for k, ch in enumerate(text):
            words.append(TurnWord(i, ch, round(turn.start_s + k * step, 3), round(turn.start_s + (k + 1) * step, 3),
                                  0.9, 0, -0.2, 0.01, 1.2))
    return words


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("input_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--run-id", default="driver")
    parser.add_argument("--kill-at", default="")
    parser.add_argument("--hold-s", type=float, default=0.0)
    args = parser.parse_args()

    import pipeline.night as night
    import pipeline.storage.parquet as parquet
    import pipeline.storage.transaction as transaction
    import pipeline.engines.whisper as whisper
    import pipeline.transcribe.recording as recording

    kind, _, count = args.kill_at.partition(":")
    seen = {"write": 0, "replace": 0, "transcribe": 0}

    def tick(what: str) -> None:
        seen[what] += 1
        if what == kind and seen[what] == int(count):
            os.kill(os.getpid(), signal.SIGKILL)

    real_write, real_replace, real_process = parquet.pq.write_table, transaction.os.replace, whisper.process_recording

    def write_table(*a, **k):
        result = real_write(*a, **k)
        tick("write")
        return result

    def replace(*a, **k):
        result = real_replace(*a, **k)
        tick("replace")
        return result

    def process(*a, **k):
        if args.hold_s:
            time.sleep(args.hold_s)
        result = real_process(*a, **k)
        tick("transcribe")
        return result

    def transcribe(*a, **k):
        return fake_words(*a, **k)

    parquet.pq.write_table = write_table
    transaction.os.replace = replace
    whisper.process_recording = process
    recording.transcribe_turns = transcribe
    recording.identify_language = lambda *a, **k: None
    whisper.load_model = lambda options, workers=1: SimpleNamespace(model_label="stand-in cpu/int8")
    whisper.model_label = lambda options: "stand-in cpu/int8"
    summary = night.run_night(args.input_dir, args.out_dir, run_id=args.run_id, workers=1).summary
    print(json.dumps({**summary.to_dict(), "counts": seen}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

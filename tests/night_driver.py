"""A night in a subprocess, for the fault suite: the real night code, with a stand-in for the speech
model (:class:`StandInSpeech`: deterministic words per turn through the speech-model seam, no model load) so that it runs in a second or two, and a kill
switch: ``--kill-at write:N`` (the N-th table file staged), ``replace:N`` (the N-th os.replace of the
publication: the journal is the first), ``transcribe:N`` (after N recordings transcribed) or ``publish:1``
(everything staged, before the night's tables are written: a full disk would fail there) sends the
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


def scripted(turns) -> list[str]:
    """What the stand-in model 'hears' in each turn: a greeting first, a farewell last, words in between."""
    said = []
    agent = [i for i, t in enumerate(turns) if t.speaker != "customer"]
    for i, turn in enumerate(turns):
        if turn.speaker == "customer":
            said.append("我想查一下话费。")
        elif i == agent[0]:
            said.append("您好，星河通信，请讲。")
        elif i == agent[-1]:
            said.append("感谢您的来电，再见。")
        else:
            said.append("好的，谢谢，请您稍候。")
    return said


class StandInSpeech:
    """A speech model through callqa's seam (:class:`pipeline.transcribe.speech.SpeechModel`) that hears
    ``hear(turns)`` (a text per turn), a character per word spread over the turn (or the whole text as one
    word, ``per_char=False``); with Whisper-like
    confidence figures when ``statistics``, else none."""

    threads = 1

    def __init__(self, hear=scripted, label: str = "stand-in cpu/int8", statistics: bool = True,
                 per_char: bool = True):
        self.hear, self.model_label, self.statistics, self.per_char = hear, label, statistics, per_char
        self.turns_heard = 0

    def transcribe_turns(self, audio, turns, segmentation, prompt="", language_probs=None, timings=None,
                         echo_of=None):
        from pipeline.records import TurnWord

        figures = (0.9, 0, -0.2, 0.01, 1.2) if self.statistics else (None, 0, None, None, None)
        words = []
        for i, (turn, text) in enumerate(zip(turns, self.hear(turns))):
            pieces = list(text) if self.per_char else [text]
            step = (turn.end_s - turn.start_s) / len(pieces)
            words += [TurnWord(i, piece, round(turn.start_s + k * step, 3), round(turn.start_s + (k + 1) * step, 3),
                               *figures) for k, piece in enumerate(pieces)]
        self.turns_heard += len(turns)
        return words

    def identify_language(self, audio, turns, candidates):
        return None

    def phrase_scorer(self, options):
        return None


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

    kind, _, count = args.kill_at.partition(":")
    seen = {"write": 0, "replace": 0, "transcribe": 0, "publish": 0}

    def tick(what: str) -> None:
        seen[what] += 1
        if what == kind and seen[what] == int(count):
            os.kill(os.getpid(), signal.SIGKILL)

    real_write, real_replace, real_process = parquet.pq.write_table, transaction.os.replace, whisper.process_recording
    real_publish = night.publish_staged

    def publish(*a, **k):
        tick("publish")  # before the night's tables are written: everything is staged
        return real_publish(*a, **k)

    night.publish_staged = publish

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

    parquet.pq.write_table = write_table
    transaction.os.replace = replace
    whisper.process_recording = process
    stand_in = StandInSpeech()
    whisper.load_whisper = lambda options, workers=1: stand_in
    whisper.model_label = lambda options: stand_in.model_label
    summary = night.run_night(args.input_dir, args.out_dir, run_id=args.run_id, workers=1).summary
    print(json.dumps({**summary.to_dict(), "counts": seen}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

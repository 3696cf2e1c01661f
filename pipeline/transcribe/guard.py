"""The hallucination guard: Whisper's known failures never become anybody's words.

On silence, noise or music Whisper writes subtitle credits it learned from video ("字幕由Amara.org社区
提供", "请不吝点赞 订阅 转发 打赏"), and it can loop on a phrase. The guard removes such text from a
turn before it becomes an utterance, word by word, and returns every removal with its reason so that
it is stored (``suppressed`` table) instead of vanishing.

Checks, in order: segments Whisper itself judges to be no speech; phrases from the editable list in
``lexicons/hallucinations.txt``; a phrase repeated more than ``max_repeats`` times in a row, or one
character more than ``max_char_repeats`` times (collapsed to the first copy; digits are exempt up to
a card number's length, because 一三八零零零零 is a phone number, not a loop); and turns whose words
the model is very unsure of.

Then the utterances (:func:`build_utterances`): the words the model recognised in each turn, screened
by the guard, as stored text. One utterance per turn that has text left after the guard; its text is
normalised (simplified, width folded), ``raw_text`` keeps what the model wrote, and every removal by the
guard comes back as :class:`~pipeline.records.SuppressedText` so that nothing disappears unseen.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..config import GuardOptions
from ..errors import HallucinationListError
from ..records import SPEAKER_AGENT, SuppressedText, Turn, TurnWord, Utterance, Word
from ..text import match_key, normalise_text


_DIGITS = set("0123456789零〇一二三四五六七八九十百千万两幺")
_MAX_DIGIT_RUN = 19  # the longest card number; a longer run of one digit is not a number anybody says


@dataclass(frozen=True)
class _Pattern:
    source: str
    regex: re.Pattern


def read_phrase_text(path: str | Path) -> str:
    """The hallucination list's text (its content is part of the transcription fingerprint).

    Raises:
        HallucinationListError: the file is missing or unreadable.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HallucinationListError(f"cannot read the hallucination list {path}: {exc}") from None


def load_phrases(path: str | Path) -> list[_Pattern]:
    """Read the hallucination list: one phrase per line, ``re:`` for a regular expression, ``#`` comments.

    Phrases are compared without punctuation or spaces, after simplification, case-insensitively.

    Raises:
        HallucinationListError: the file is missing or unreadable, or lines are invalid (every bad
            line, with its number).
    """
    path = Path(path)
    lines = read_phrase_text(path).splitlines()
    patterns, problems = [], []
    for number, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.startswith("re:"):
            try:
                patterns.append(_Pattern(entry, re.compile(entry[3:].strip(), re.IGNORECASE)))
            except re.error as exc:
                problems.append(f"{path}:{number}: invalid regular expression: {exc}")
        else:
            key = match_key(entry)
            if not key:
                problems.append(f"{path}:{number}: phrase {entry!r} has no letters or digits")
            else:
                patterns.append(_Pattern(entry, re.compile(re.escape(key))))
    if problems:
        raise HallucinationListError(problems)
    return patterns


class HallucinationGuard:
    """Screens the words of one turn. Build once per run; ``screen`` is pure."""

    def __init__(self, options: GuardOptions, patterns: list[_Pattern] | None = None):
        self.options = options
        self.patterns = load_phrases(options.phrases_file) if patterns is None else patterns
        # a unit of 1-20 characters followed by more copies of itself than the lowest limit allows
        lowest = min(options.max_repeats, options.max_char_repeats)
        self._repeat = re.compile(r"(.{1,20}?)\1{%d,}" % lowest)

    def _repeat_limit(self, unit: str) -> int:
        """How many copies in a row are still speech: numbers repeat digits (一三八零零零零…, 6666),
        people say 对对对对 or 好好好好, but a loop of a phrase is the model stuck."""
        if all(ch in _DIGITS for ch in unit):
            return _MAX_DIGIT_RUN
        return self.options.max_char_repeats if len(unit) == 1 else self.options.max_repeats

    def screen(self, speaker: str, words: list[TurnWord],
               prompt: str = "") -> tuple[list[TurnWord], list[SuppressedText]]:
        """Split a turn's words into those kept and the removed stretches with their reasons.

        ``prompt`` is the decoder prompt of this recording; the model echoing it is removed too.
        """
        removed: list[SuppressedText] = []
        opts = self.options

        def drop(indices: set[int], reason: str) -> None:
            nonlocal words
            if not indices:
                return
            for run in _runs(sorted(indices)):
                chunk = [words[i] for i in run]
                raw = "".join(w.word for w in chunk).strip()
                removed.append(SuppressedText(speaker, chunk[0].start_s, chunk[-1].end_s, raw,
                                              normalise_text(raw), reason))
            words = [w for i, w in enumerate(words) if i not in indices]

        drop({i for i, w in enumerate(words)  # a model without confidence figures never says no speech
              if w.no_speech_prob is not None and w.avg_logprob is not None
              and w.no_speech_prob > opts.no_speech_prob and w.avg_logprob < opts.no_speech_logprob},
             "no_speech")

        patterns = list(self.patterns)
        prompt_key = match_key(prompt)
        if prompt_key:
            patterns.append(_Pattern("prompt_echo", re.compile(re.escape(prompt_key))))
            turn_key, _ = _char_index(words)
            # a short reading that is only a piece of the prompt ("录音" for a customer's 再见) is the
            # prompt leaking in, unless the model is sure of it (someone may really say 星河通信); a model
            # that gives no confidence is not taken for an echo on the text alone
            sure = [w.avg_logprob for w in words if w.avg_logprob is not None]
            if (len(turn_key) >= 2 and turn_key in prompt_key and len(sure) == len(words)
                    and sum(sure) / len(words) < opts.echo_logprob):
                drop(set(range(len(words))), "prompt_echo")
        for pattern in patterns:
            keys, owner = _char_index(words)
            hits = set()
            for match in pattern.regex.finditer(keys):
                hits.update(_span(owner[match.start():match.end()]))
            drop(hits, "prompt_echo" if pattern.source == "prompt_echo" else f"known_hallucination: {pattern.source}")

        keys, owner = _char_index(words)
        hits = set()
        for match in self._repeat.finditer(keys):
            unit = len(match.group(1))
            if (match.end() - match.start()) // unit <= self._repeat_limit(match.group(1)):
                continue
            # a word that straddles the first copy and the next stays, or the kept copy is cut short
            first_copy = set(owner[match.start():match.start() + unit])
            hits.update(_span(owner[match.start() + unit:match.end()]) - first_copy)
        drop(hits, "repetition")

        if words and all(w.prob is not None for w in words):
            mean_prob = sum(w.prob for w in words) / len(words)
            if mean_prob < opts.min_word_prob:
                drop(set(range(len(words))), f"low_confidence (mean word probability {mean_prob:.2f})")
        return words, removed


def _char_index(words: list[TurnWord]) -> tuple[str, list[int]]:
    """The turn's comparison key and, for each character of it, the index of the word it came from."""
    keys, owner = [], []
    for i, word in enumerate(words):
        key = match_key(word.word)
        keys.append(key)
        owner.extend([i] * len(key))
    return "".join(keys), owner


def _span(owners: list[int]) -> set[int]:
    """All word indices from the first owner to the last: punctuation-only words inside a match go too."""
    return set(range(owners[0], owners[-1] + 1)) if owners else set()


def _runs(indices: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


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

"""Matching that survives speech recognition: phrases found in utterances by text or by sound.

Phrases match on normalised text, and (unless the lexicon says ``sound=no``) on toneless pinyin with
near-sound equivalences, so 請將 matches 请讲 and 心和通信 matches 星河通信. Every match records how it
matched (``exact``, ``sound_alike``, ``near_sound`` or ``asr_variant``). A phrase inside a longer word
is not a match unless its group says ``@inside = yes`` (word boundaries from jieba, with the lexicon
phrases in its dictionary); an exclusion context that covers it (``except=``) cancels it.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

from ..records import NumberMark, PhraseCheck, Utterance, Word
from ..text import match_key, stored_key
from .lexicon import COMPANY_PLACEHOLDER, GAP_CHARS, Group, Phrase, phrase_parts

_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r",
             "z", "c", "s", "y", "w")


class SoundKeys:
    """Toneless pinyin, folded by near-sound equivalences, one code point per character.

    Each distinct folded syllable becomes one private-use character, so a sentence's sound string has
    exactly one character per character of its text key and regular expressions find sound-alike
    phrases with the same offsets as exact ones.
    """

    def __init__(self, equivalences: Iterable[str]):
        self.initials: list[tuple[str, str]] = []
        self.finals: list[tuple[str, str]] = []
        for pair in equivalences:
            a, b = pair.split("=")
            target = self.initials if a in _INITIALS and b in _INITIALS else self.finals
            target.append((b, a))  # fold b onto a
        self.initials.sort(key=lambda p: -len(p[0]))
        self.finals.sort(key=lambda p: -len(p[0]))
        self._codes: dict[str, str] = {}
        self._chars: dict[str, str] = {}

    def fold(self, syllable: str) -> str:
        initial = next((i for i in _INITIALS if syllable.startswith(i) and len(syllable) > len(i)), "")
        final = syllable[len(initial):]
        for src, dst in self.initials:
            if initial == src:
                initial = dst
                break
        for src, dst in self.finals:
            if final.endswith(src):
                final = final[: len(final) - len(src)] + dst
                break
        return initial + final

    def _code(self, ch: str) -> str:
        code = self._chars.get(ch)
        if code is None:
            if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf":
                from pypinyin import Style, pinyin

                syllable = self.fold(pinyin(ch, style=Style.NORMAL, heteronym=False)[0][0])
                code = self._codes.setdefault(syllable, chr(0xE000 + len(self._codes)))
            else:
                code = ch
            self._chars[ch] = code
        return code

    def of(self, key: str) -> str:
        return "".join(self._code(ch) for ch in key)


@dataclass
class UtteranceView:
    """One stored utterance prepared for matching: its text, match key and sound key, with the text
    position of each key character (to quote what was said) and its words (to time a finding)."""

    idx: int
    speaker: str
    start_s: float
    end_s: float
    text: str
    key: str  # letters and digits of text, lower case
    key_pos: list[int]  # text index of each key character
    sound: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float | None = None  # the speech model's confidence, as stored (for "heard as Putonghua")
    no_speech_prob: float | None = None
    checks: list[PhraseCheck] = field(default_factory=list)  # phrases checked on its audio (utterances.checks)
    numbers: list[NumberMark] | None = None  # numbers said, comparable after masking (utterances.numbers)
    _bounds: list[tuple[int, int]] | None = None  # multi-character jieba words, computed on demand

    def span_text(self, start: int, end: int) -> str:
        """The text of key characters ``start:end``; the whole text for an empty span (a finding that is
        not a phrase, in an utterance with no key character: a masked number is all ``*``)."""
        if end <= start:
            return self.text
        return self.text[self.key_pos[start]: self.key_pos[end - 1] + 1]

    def span_time(self, start: int, end: int) -> tuple[float, float]:
        """Time of key characters ``start:end`` from word timestamps; the utterance's bounds if unknown."""
        return word_span_time(self.words, len(self.key), start, end, (self.start_s, self.end_s))


def word_offsets(words: Sequence[Word]) -> list[tuple[int, int, float, float]]:
    """(first key char, last key char + 1, start_s, end_s) of each word."""
    offsets, cursor = [], 0
    for word in words:
        n = len(stored_key(word.word))
        offsets.append((cursor, cursor + n, word.start_s, word.end_s))
        cursor += n
    return offsets


def word_span_time(words: Sequence[Word] | None, key_length: int, start: int, end: int,
                   default: tuple[float, float]) -> tuple[float, float]:
    """The time the words covering key characters ``start:end`` were said, else ``default``."""
    if words is None or len(words) == 0:
        return default
    offsets = word_offsets(words)
    if offsets[-1][1] != key_length:  # words and text disagree (should not happen): trust the text
        return default
    inside = [(s, e) for a, b, s, e in offsets if a < end and b > start]
    return (min(s for s, _ in inside), max(e for _, e in inside)) if inside else default


def make_view(utterance: Utterance, sounds: SoundKeys) -> UtteranceView:
    """An utterance prepared for matching."""
    text = utterance.text
    key_pos = [i for i, ch in enumerate(text) if unicodedata.category(ch)[0] in "LN"]
    key = "".join(text[i] for i in key_pos).lower()
    return UtteranceView(utterance.utterance_idx, utterance.speaker, utterance.start_s, utterance.end_s, text, key,
                         key_pos, sounds.of(key), list(utterance.words), utterance.avg_logprob,
                         utterance.no_speech_prob, list(utterance.checks),
                         None if utterance.numbers is None else list(utterance.numbers))


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


_NUMERALS = set("0123456789零〇一二两三四五六七八九十百千万幺")


def _word_bounds(view: UtteranceView) -> list[tuple[int, int]]:
    """The key spans of an utterance's multi-character jieba words, segmented once per utterance."""
    if view._bounds is None:
        view._bounds = [(s, e) for _word, s, e in _jieba().tokenize(view.key) if e - s > 1]
    return view._bounds


@functools.lru_cache(maxsize=1)
def _idf() -> dict[str, float]:
    """jieba's inverse document frequency of each word (shipped with jieba, for its keyword
    extraction): a high value is a word that names a subject (宽带 9.6, 账单 9.9), a low one a word
    every conversation has (我们 3.4, 问题 4.0)."""
    from jieba.analyse import default_tfidf

    return default_tfidf.idf_freq


def subject_words(view: UtteranceView, min_idf: float, skip: set[int] = frozenset()) -> list[tuple[int, int]]:
    """Key spans of the words that say what an utterance is about: multi-character jieba words with an
    inverse document frequency of at least ``min_idf`` (or unknown to jieba's table: names, products),
    and numbers; none that touches a key position in ``skip`` (the question words themselves)."""
    idf = _idf()
    spans = [(s, e) for s, e in _word_bounds(view)
             if idf.get(view.key[s:e], min_idf) >= min_idf and not skip.intersection(range(s, e))]
    spans += [(m.start(), m.end()) for m in re.finditer(r"[0-9]+", view.key)
              if not skip.intersection(range(m.start(), m.end()))]
    return spans


def inside_longer_word(view: UtteranceView, start: int, end: int, numbers: bool = True) -> bool:
    """True when one jieba word holds the whole span and more (喂 inside 喂养, 家 inside 家里).

    A span that merely meets a particle (你自己看 + 吧 -> 看吧) is not inside a longer word.
    ``numbers=False``: words with a numeral do not count (jieba glues spelled-out digits to their
    neighbours: 打一零零八六问 -> 打一 / 零零 / 八六问).
    """
    return any(s <= start and end <= e and e - s > end - start
               and (numbers or not _NUMERALS.intersection(view.key[s:e])) for s, e in _word_bounds(view))


@dataclass(frozen=True)
class Match:
    """A phrase of a group found in an utterance, at key offsets ``start:end``, and how it matched."""

    phrase: Phrase
    group: Group
    start: int  # key offsets
    end: int
    kind: str
    margin: float | None = None  # checked on the audio: the phrase's margin over its best rival
    rival: str | None = None  # ... and that rival


class Finding(NamedTuple):
    """A match in one utterance: what a rule found (a ``hits`` row, once timed)."""

    utterance: UtteranceView
    match: Match


@dataclass
class _Entry:
    phrase: Phrase
    key: str
    sound: str
    excepts: list[tuple[str, str]]


class GroupMatcher:
    """Finds one group's phrases in utterances (for one company name)."""

    def __init__(self, group: Group, sounds: SoundKeys, company: str):
        self.group = group
        self.entries: list[_Entry] = []
        self.gapped: list[tuple[_Entry, re.Pattern, re.Pattern | None]] = []  # phrases with a gap (…)
        for phrase in group.phrases:
            parts = [match_key(p.replace(COMPANY_PLACEHOLDER, company or "")) for p in phrase_parts(phrase.text)]
            if not all(parts):
                continue
            key = "".join(parts)
            excepts = [(k, sounds.of(k)) for k in (match_key(e) for e in phrase.excepts) if k]
            entry = _Entry(phrase, key, sounds.of(key), excepts)
            if len(parts) > 1:
                self.gapped.append((entry, _gapped(parts), _gapped([sounds.of(p) for p in parts]) if phrase.sound else None))
                continue
            self.entries.append(entry)
        self.by_key = {}
        self.by_sound = {}
        for entry in self.entries:
            self.by_key.setdefault(entry.key, entry)
            if entry.phrase.sound:
                self.by_sound.setdefault(entry.sound, entry)
        self.exact = _alternation(self.by_key)
        self.sound = _alternation(self.by_sound)

    def phrase_for(self, text: str) -> Phrase | None:
        """The group's phrase written ``text`` (the company name resolved), if it has one."""
        entry = self.by_key.get(match_key(text))
        return entry.phrase if entry is not None else None

    def find(self, view: UtteranceView) -> list[Match]:
        found: list[tuple[int, int, _Entry, str]] = []
        taken: set[tuple[int, int]] = set()
        if self.exact is not None:
            for m in self.exact.finditer(view.key):
                entry = self.by_key[m.group()]
                kind = "asr_variant" if entry.phrase.kind == "asr_variant" else "exact"
                found.append((m.start(), m.end(), entry, kind))
                taken.add((m.start(), m.end()))
        if self.sound is not None:
            for m in self.sound.finditer(view.sound):
                if (m.start(), m.end()) not in taken:
                    entry = self.by_sound[m.group()]
                    kind = "asr_variant" if entry.phrase.kind == "asr_variant" else "sound_alike"
                    found.append((m.start(), m.end(), entry, kind))
                    taken.add((m.start(), m.end()))
        if self.group.mismatch and not found:
            found.extend(self._near(view))
        matches = []
        for start, end, entry, kind in found:
            if entry.phrase.at == "start" and start != 0:
                continue
            if not entry.phrase.inside and inside_longer_word(view, start, end):
                continue
            if self._excluded(view, entry, start, end):
                continue
            matches.append(Match(entry.phrase, self.group, start, end, kind))
        for entry, exact, sound in self.gapped:
            matches.extend(self._find_gapped(view, entry, exact, sound))
        return matches

    def _find_gapped(self, view: UtteranceView, entry: _Entry, exact: re.Pattern,
                     sound: re.Pattern | None) -> list[Match]:
        """A phrase with gaps (拨打…咨询): its parts in order, each at most ``GAP_CHARS`` after the last,
        each part a whole word unless ``inside``; an exclusion context that overlaps it cancels it."""
        out, taken = [], set()
        for pattern, haystack, kind in ((exact, view.key, "exact"), (sound, view.sound, "sound_alike")):
            if pattern is None:
                continue
            for m in pattern.finditer(haystack):
                span = (m.start(), m.end())
                if span in taken:
                    continue
                if entry.phrase.at == "start" and m.start() != 0:
                    continue
                parts = [m.span(i) for i in range(1, (pattern.groups or 0) + 1)]
                if not entry.phrase.inside and any(inside_longer_word(view, a, b, numbers=False) for a, b in parts):
                    continue
                if self._excluded(view, entry, *span, overlap=True):
                    continue
                taken.add(span)
                out.append(Match(entry.phrase, self.group, m.start(), m.end(),
                                 "asr_variant" if entry.phrase.kind == "asr_variant" else kind))
        return out

    def _near(self, view: UtteranceView) -> list[tuple[int, int, _Entry, str]]:
        """Sound-alike with up to ``mismatch`` differing syllables (long phrases only, e.g. company names)."""
        allowed = self.group.mismatch
        hits = []
        for entry in self.entries:
            n = len(entry.sound)
            if not entry.phrase.sound or n < allowed + 3:
                continue
            for start in range(0, len(view.sound) - n + 1):
                window = view.sound[start:start + n]
                if sum(a != b for a, b in zip(window, entry.sound)) <= allowed:
                    hits.append((start, start + n, entry, "near_sound"))
                    break
        return hits

    @staticmethod
    def _excluded(view: UtteranceView, entry: _Entry, start: int, end: int, overlap: bool = False) -> bool:
        """Whether an exclusion context of the phrase covers the match (``overlap``: touches any of it,
        as for a phrase with a gap)."""
        for key, sound in entry.excepts:
            for haystack, needle in ((view.key, key), (view.sound, sound)):
                pos = haystack.find(needle)
                while pos != -1:
                    if (pos < end and pos + len(needle) > start) if overlap else (pos <= start and pos + len(needle) >= end):
                        return True
                    pos = haystack.find(needle, pos + 1)
        return False


def _gapped(parts: list[str]) -> re.Pattern:
    """The parts in order, each within ``GAP_CHARS`` characters of the one before (shortest gaps)."""
    return re.compile(f".{{0,{GAP_CHARS}}}?".join(f"({re.escape(p)})" for p in parts))


def _alternation(table: dict[str, Any]) -> re.Pattern | None:
    if not table:
        return None
    return re.compile("|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)))


def add_words(keys: Iterable[str]) -> None:
    """Put lexicon phrases (match keys of two characters or more) in jieba's dictionary, so that a
    phrase is one word where it is said and word boundaries never cut it."""
    jieba = _jieba()
    for key in keys:
        if len(key) > 1:
            jieba.add_word(key)

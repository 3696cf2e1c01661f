"""What a phrase is scored against on the audio: its rivals, from the lexicon and from the dictionary.

A phrase's rivals are what speech recognition writes for it, or what may be said instead, where it was
not said: the lexicon's ``confusable=`` (你好 for 您好, 为 for 喂, 收获 for 稍候), the transcript's own
text at that place when it differs (新疆 where 请讲 may have been said), and its pinyin neighbours:
words of jieba's dictionary (shipped with jieba) of the same length whose toneless syllables are the
phrase's, or differ in one syllable that keeps its final and changes its initial only to one of the
same place of articulation (新疆 xin-jiang for 请讲 qing-jiang: x and q; in and ing), the most frequent
first. No rival is ever another accepted phrase of the same group
(稍后 does not compete with 稍候: both announce a hold).
"""

from __future__ import annotations

import functools
import os
import re
from typing import Iterable

_CJK = re.compile(r"^[\u4e00-\u9fff]+$")
MIN_FREQUENCY = 200  # dictionary words rarer than this (jieba's counts: 新疆 2672, 歇歇 221) are no one's rival


# initials a telephone line and a small model confuse: one class each (an initial may be in several)
INITIAL_CLASSES = ({"n", "l"}, {"z", "zh", "j"}, {"c", "ch", "q"}, {"s", "sh", "x"}, {"j", "q", "x"}, {"f", "h"},
                   {"b", "p"}, {"d", "t"}, {"g", "k"}, {"zh", "ch", "sh", "r"}, {"", "y", "w"})


@functools.lru_cache(maxsize=8192)
def syllable(ch: str) -> tuple[str, str]:
    """A character's toneless (initial, final), with in/ing and en/eng folded (telephone speech and
    many speakers do not keep them apart)."""
    from pypinyin import Style, pinyin

    initial = pinyin(ch, style=Style.INITIALS, strict=False, heteronym=False)[0][0]
    final = pinyin(ch, style=Style.FINALS, strict=False, heteronym=False)[0][0]
    return initial, re.sub(r"(?<=[ie])ng$", "n", final)


def syllables(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(syllable(ch) for ch in text)


@functools.lru_cache(maxsize=1)
def _dictionary() -> dict[int, list[tuple[str, int]]]:
    """jieba's dictionary by word length (1-6 characters of Chinese only), most frequent first."""
    import jieba

    by_length: dict[int, list[tuple[str, int]]] = {}
    with open(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            word, frequency = parts[0], int(parts[1])
            if frequency >= MIN_FREQUENCY and len(word) <= 6 and _CJK.match(word):
                by_length.setdefault(len(word), []).append((word, frequency))
    for words in by_length.values():
        words.sort(key=lambda item: -item[1])
    return by_length


def near(a: tuple[tuple[str, str], ...], b: tuple[tuple[str, str], ...]) -> bool:
    """Two words sound alike: the same syllables, or (two syllables or more) all but one, which keeps its
    final and changes its initial within one of :data:`INITIAL_CLASSES`."""
    if len(a) != len(b):
        return False
    differ = [(x, y) for x, y in zip(a, b) if x != y]
    if not differ:
        return True
    if len(differ) > 1 or len(a) < 2:
        return False
    (i, f), (j, g) = differ[0]
    return f == g and any(i in c and j in c for c in INITIAL_CLASSES)


@functools.lru_cache(maxsize=1024)
def neighbours(phrase: str, count: int) -> tuple[str, ...]:
    """The ``count`` most frequent dictionary words that sound like ``phrase`` (see :func:`near`)."""
    if count <= 0 or not _CJK.match(phrase):
        return ()
    target = syllables(phrase)
    found = []
    for word, _frequency in _dictionary().get(len(phrase), []):
        if word != phrase and near(target, syllables(word)):
            found.append(word)
            if len(found) >= count:
                break
    return tuple(found)


def rivals(phrase: str, confusables: Iterable[str], heard: str, accepted: Iterable[str], count: int,
           limit: int = 6) -> list[str]:
    """What ``phrase`` is scored against: the lexicon's confusables, what the transcript has there
    (``heard``), then dictionary neighbours; never the phrase itself or another accepted phrase."""
    skip = {phrase, *accepted}
    out: list[str] = []
    for candidate in (*confusables, heard, *neighbours(phrase, count)):
        if candidate and candidate not in skip and candidate not in out:
            out.append(candidate)
    return out[:limit]

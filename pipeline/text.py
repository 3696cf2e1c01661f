"""Text normalisation (what the model wrote -> the form every later stage matches on), match keys,
and the character error rate that compares a transcript with what was really said.

Whisper base writes Mandarin in traditional characters and mixes full-width and half-width forms.
Stored ``text`` is simplified with full-width forms folded to their ASCII equivalents and is
otherwise as spoken; ``raw_text`` keeps what the model wrote.
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from pathlib import Path

_WHITESPACE = re.compile(r"\s+")
# Full-width ASCII variants U+FF01..U+FF5E map to U+0021..U+007E; U+3000 is the ideographic space.
_WIDTH_TABLE = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


@functools.lru_cache(maxsize=1)
def _t2s():
    from opencc import OpenCC

    return OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Convert traditional Chinese characters to simplified (OpenCC ``t2s``, phrase-aware)."""
    return _t2s().convert(text) if text else text


def fold_width(text: str) -> str:
    """Fold full-width letters, digits, punctuation and the ideographic space to ASCII."""
    return text.translate(_WIDTH_TABLE)


def normalise_text(text: str) -> str:
    """The stored form of a transcript: simplified, width-folded, whitespace collapsed, trimmed."""
    return _WHITESPACE.sub(" ", fold_width(to_simplified(text))).strip()


def strip_punctuation(text: str) -> str:
    """Drop punctuation, symbols and spaces: for comparing what was said, not how it was written.

    ``*`` (a masked digit) is kept: it stands for a digit that was said.
    """
    return "".join(ch for ch in text if ch == "*" or unicodedata.category(ch)[0] in "LN")


@functools.lru_cache(maxsize=1 << 16)
def match_key(text: str) -> str:
    """Text reduced to what was said, for comparing: simplified, no punctuation or spaces, lower case.
    Cached: the guard asks it of every word, and most words are words it has seen."""
    return strip_punctuation(normalise_text(text)).lower()


def stored_key(text: str) -> str:
    """``match_key`` of text that is already normalised (stored text and words): no conversion, so it
    is cheap enough for millions of rows; the same letters and digits, lower case."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN").lower()


# digits as a transcript writes them: Arabic, full-width, Chinese (幺 for 一 and 两 for 二 when read out)
DIGIT_CHARS = "0-9０-９零〇一二三四五六七八九幺两"
_DIGIT_VALUE = {**{c: str(i) for i, c in enumerate("0123456789")}, **{c: str(i) for i, c in enumerate("０１２３４５６７８９")},
                **{c: str(i) for i, c in enumerate("零一二三四五六七八九")}, "〇": "0", "幺": "1", "两": "2"}
DIGIT_SEPARATOR = r"[\s\-‐－—,，、.·]"  # what may stand between the digits of one number read out
# a digit, then digits or single separators between digits (138-0013-8000, 一三八，零零一三): one number
DIGIT_RUN = re.compile(rf"[{DIGIT_CHARS}](?:{DIGIT_SEPARATOR}?[{DIGIT_CHARS}])*")
NUMBER_MIN_DIGITS = 4  # a shorter run is a count or a time, not a detail (尾号 is four)
CODE_WIDTH = 4  # hex characters per digit in a number's code


def spoken_digits(run: str) -> str:
    """The digits of a run as Arabic digits, separators dropped: 一三八，零零 -> 13800."""
    return "".join(_DIGIT_VALUE[ch] for ch in run if ch in _DIGIT_VALUE)


def number_code(digits: str, key: bytes) -> str:
    """A number's digits, each replaced by a keyed hash of itself (``CODE_WIDTH`` hex characters a
    digit): two numbers said in one call can be aligned and compared digit by digit (speech recognition
    drops or doubles a digit of a long number; 尾号 is its end) without the digits being kept. Without
    ``key`` (random per call and never stored) nobody can tell which digits they were; what a code shows
    is which of its digits are equal, as a substitution cipher of ten symbols made anew for every call."""
    import hashlib

    return "".join(hashlib.blake2b(d.encode(), key=key, digest_size=CODE_WIDTH // 2).hexdigest() for d in digits)


def number_marks(text: str, key: bytes) -> list[tuple[int, int, str]]:
    """``(start, end, code)`` of every run of at least ``NUMBER_MIN_DIGITS`` digits in ``text`` (its
    character offsets; see :func:`number_code`)."""
    marks = []
    for match in DIGIT_RUN.finditer(text):
        digits = spoken_digits(match.group())
        if len(digits) >= NUMBER_MIN_DIGITS:
            marks.append((match.start(), match.end(), number_code(digits, key)))
    return marks


def readable_name(name: str) -> str:
    """A file name or path as it can be stored and shown: itself when it is valid Unicode, else each
    part that Python could only read with escaped bytes (a Windows recorder's or a zip file's GBK name)
    read as GB18030 (张三_20261122.wav), or, failing that, its bytes that are not UTF-8 written as
    ``\\xd5``. :func:`on_disk` finds the file again from what this returns."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        pass
    return "/".join(_readable_part(part) for part in name.split("/"))


def _readable_part(part: str) -> str:
    try:
        part.encode("utf-8")
        return part
    except UnicodeEncodeError:
        data = os.fsencode(part)
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        return data.decode("utf-8", "backslashreplace")


def on_disk(stored: str | os.PathLike) -> Path:
    """The file a stored name (:func:`readable_name`) stands for: the name itself when it exists, else,
    folder by folder, each part written as GBK bytes where that is what the disk has."""
    path = Path(stored)
    if path.exists():
        return path
    found, parts = (Path(path.parts[0]), path.parts[1:]) if path.is_absolute() else (Path(), path.parts)
    for part in parts:
        if not (found / part).exists():
            try:
                other = os.fsdecode(part.encode("gb18030"))
            except UnicodeEncodeError:
                return path
            if not (found / other).exists():
                return path
            part = other
        found = found / part
    return found


def edit_distance(reference: str, hypothesis: str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(reference) < len(hypothesis):
        reference, hypothesis = hypothesis, reference
    previous = list(range(len(hypothesis) + 1))
    for i, ref_char in enumerate(reference, 1):
        current = [i]
        for j, hyp_char in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_char != hyp_char)))
        previous = current
    return previous[-1]


def cer_counts(reference: str, hypothesis: str, mask=None) -> tuple[int, int]:
    """``(edits, reference length)`` after :func:`match_key`; the character error rate is their ratio.

    ``mask`` (e.g. ``functools.partial(privacy.mask_text, options=...)``) is applied to the reference
    first, as stored transcripts are masked: a masked phone number in the transcript is then compared
    with a masked one, not counted as eleven errors.
    """
    if mask is not None:
        reference = mask(reference)
    ref, hyp = match_key(reference), match_key(hypothesis)
    return edit_distance(ref, hyp), len(ref)

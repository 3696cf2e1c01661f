"""Masking personal numbers in everything callqa stores: phone, ID-card and bank-card numbers.

Customers read numbers out digit by digit, and the transcript holds them in any mix of forms:
138-0013-8000, 一三八零零一三八零零零, 一三八，零零一三，八零零零, 幺三八 (幺 for 一), 6222 0212 3456 7890.
A run of digits (Arabic or Chinese, with spaces, hyphens, commas or 、 between groups) that is long
enough to be such a number has every digit replaced by ``*``; its separators and length stay, so a
reviewer sees that a number was said and how long it was. Amounts and dates (五十八元, 2026年11月,
10086) are shorter than the shortest masked run and are left alone.

Masking happens once, on the transcript, before anything is stored or checked, so it covers text,
raw_text, words, suppressed text and everything derived from them (matched_text, evidence).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace

from ..config import PrivacyOptions
from ..records import CallResult, NumberMark, SuppressedText, Utterance, Word
from ..text import DIGIT_CHARS, DIGIT_RUN, DIGIT_SEPARATOR, number_marks

# a number as text.DIGIT_RUN reads it, or ending on an ID card's X
_RUN = re.compile(rf"{DIGIT_RUN.pattern}(?:{DIGIT_SEPARATOR}?[xX])?")
_IS_DIGIT = re.compile(rf"[{DIGIT_CHARS}xX]")

KINDS = {  # digits in the run -> what it is
    "landline": range(7, 9),
    "phone": range(11, 13),  # 11 mobile digits; 12 with a 0-prefixed area code
    "id_card": range(15, 16),  # old 15-digit IDs; 18-digit IDs overlap bank cards and are masked as either
    "bank_card": range(16, 20),
}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str


def find_numbers(text: str, options: PrivacyOptions) -> list[Span]:
    """Spans of ``text`` that are personal numbers under ``options``."""
    spans = []
    for match in _RUN.finditer(text):
        digits = len(_IS_DIGIT.findall(match.group()))
        kind = next((k for k, r in KINDS.items() if digits in r), None)
        if kind is None and digits >= options.min_digits:
            kind = "number"  # 9-10 or 20+ digits: still nobody's business
        if kind is not None and (kind in options.kinds or kind == "number"):
            spans.append(Span(match.start(), match.end(), kind))
    return spans


def mask_text(text: str, options: PrivacyOptions) -> str:
    """``text`` with the digits of every personal number replaced by ``*``."""
    if not options.mask or not text:
        return text
    chars = list(text)
    for span in find_numbers(text, options):
        for i in range(span.start, span.end):
            if _IS_DIGIT.match(chars[i]):
                chars[i] = "*"
    return "".join(chars)


def _mask_words(words: list[Word], options: PrivacyOptions) -> list[Word]:
    """Mask numbers that run across word boundaries: find them in the joined text, then cut back."""
    joined = "".join(w.word for w in words)
    masked = mask_text(joined, options)
    if masked == joined:
        return words
    out, cursor = [], 0
    for w in words:
        out.append(replace(w, word=masked[cursor:cursor + len(w.word)]))
        cursor += len(w.word)
    return out


def mark_numbers(utterances: list[Utterance]) -> None:
    """Give every utterance its numbers' marks (:class:`~pipeline.records.NumberMark`), with a key made
    for this call alone and forgotten at once: numbers stay comparable within the call (did the agent
    repeat the customer's number back?) and nowhere else, whatever is masked. A call whose utterances
    came marked (a transcript callqa exported) keeps its marks."""
    if any(u.numbers is not None for u in utterances):
        return
    key = secrets.token_bytes(16)
    for u in utterances:
        u.numbers = [NumberMark(start, end, code) for start, end, code in number_marks(u.text, key)]


def mask_result(result: CallResult, options: PrivacyOptions) -> CallResult:
    """Mark the numbers said (:func:`mark_numbers`, whether masking is on or not), then mask every
    stored text field of a call's transcript (in place; returns the result)."""
    mark_numbers(result.utterances)
    if not options.mask:
        return result
    masked: list[Utterance] = []
    for u in result.utterances:
        u.text = mask_text(u.text, options)
        u.raw_text = mask_text(u.raw_text, options)
        u.words = _mask_words(u.words, options)
        masked.append(u)
    result.utterances = masked
    result.suppressed = [SuppressedText(s.speaker, s.start_s, s.end_s, mask_text(s.raw_text, options),
                                        mask_text(s.text, options), s.reason) for s in result.suppressed]
    return result

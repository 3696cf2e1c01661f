"""Measuring transcripts against ground truth: character error rate on what was said."""


from __future__ import annotations

from .text import match_key


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


def cer_counts(reference: str, hypothesis: str, privacy=None) -> tuple[int, int]:
    """``(edits, reference length)`` after :func:`pipeline.text.match_key`; CER is their ratio.

    With ``privacy`` options the reference is masked as stored transcripts are (a masked phone number
    in the transcript is then compared with a masked one, not counted as eleven errors).
    """
    if privacy is not None:
        from .privacy import mask_text

        reference = mask_text(reference, privacy)
    ref, hyp = match_key(reference), match_key(hypothesis)
    return edit_distance(ref, hyp), len(ref)

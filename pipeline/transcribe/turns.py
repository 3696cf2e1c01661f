"""Turns: one channel's voice activity -> the stretches of speech the model reads, one utterance each.

A turn is one speaker's speech between pauses of at least ``split_pause_s``. Turn boundaries come
from voice activity on that speaker's own channel, so a hold (both channels silent) always ends a
turn, however Whisper would have joined the text on either side.
"""

from __future__ import annotations

from ..config import SegmentationOptions
from ..records import Turn


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

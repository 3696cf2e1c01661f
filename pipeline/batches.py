"""Grouping a night's recordings into tasks: short recordings share one, long ones get their own.

An orchestrator pays a fixed cost per task (Prefect: about 0.1 s of a worker's time, measured on 2
cores), which is nothing next to a 3-minute call and a sixth of the work of a 2.5-second one. Grouping
short recordings until a task holds about ``target_s`` of audio keeps that cost near 1% whatever the
call lengths, while a long call stays a task of its own (it is retried and reported on its own).
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def plan_batches(items: Sequence[T], duration_of: Callable[[T], float | None], target_s: float,
                 max_items: int) -> list[list[T]]:
    """Group ``items`` (in their order) into batches of about ``target_s`` seconds of audio.

    An item of ``target_s`` or more, or of unknown duration (None), is a batch of its own. Short items
    fill a batch until adding the next would pass ``target_s`` or ``max_items``. ``target_s`` 0 gives
    one batch per item.
    """
    batches: list[list[T]] = []
    current: list[T] = []
    filled = 0.0
    for item in items:
        seconds = duration_of(item)
        if target_s <= 0 or seconds is None or seconds >= target_s:
            batches.append([item])
            continue
        if current and (filled + seconds > target_s or len(current) >= max_items):
            batches.append(current)
            current, filled = [], 0.0
        current.append(item)
        filled += seconds
    if current:
        batches.append(current)
    return batches

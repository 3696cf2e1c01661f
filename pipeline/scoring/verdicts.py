"""Reviewers' verdicts -> the outcome a score follows.

The ``reviews`` table is a history: every verdict a reviewer saved, appended. For each (call, rule)
the latest verdict counts (by the time it was recorded). It applies to the rule result it was made
on: when the machine's outcome has changed since (a lexicon change and a rescore), the verdict is
*stale* and the machine's new outcome stands until someone reviews it again.

What a verdict does to the outcome the rubric deducts by (``rule_results.final_outcome``):

============  ==============  =====================  ======================
machine       confirmed       overturned             unsure
============  ==============  =====================  ======================
fail          fail            pass (nothing off)     fail
review        fail            pass                   review (nothing off)
pass          pass            fail (a miss)          pass
============  ==============  =====================  ======================

``not_applicable`` results are not reviewed (there is no finding to agree with).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from ..records import CONFIRMED, FAIL, OVERTURNED, PASS, REVIEW, RuleResult

logger = logging.getLogger("callqa.review")

REVIEWABLE = (FAIL, REVIEW, PASS)  # machine outcomes a reviewer can judge


@dataclass(frozen=True)
class Verdict:
    """The verdict that counts on one rule result: the latest a reviewer saved."""

    call_id: str
    rule_id: str
    verdict: str  # confirmed | overturned | unsure
    machine_outcome: str  # the outcome the reviewer judged
    reviewer: str
    recorded_at: object  # a timestamp
    comment: str | None = None


def final_outcome(outcome: str, verdict: str | None) -> str:
    """The outcome after a reviewer's verdict (the table in the module docstring)."""
    if verdict == CONFIRMED:
        return FAIL if outcome == REVIEW else outcome
    if verdict == OVERTURNED:
        return {FAIL: PASS, REVIEW: PASS, PASS: FAIL}.get(outcome, outcome)
    return outcome


def latest_verdicts(reviews: Iterable[dict]) -> dict[tuple[str, str], Verdict]:
    """The verdict that counts per (call_id, rule_id): the latest ``kind = verdict`` row.

    Args:
        reviews: rows of the ``reviews`` table (dicts), in any order.

    Returns:
        (call_id, rule_id) -> its latest verdict; ties in time go to the larger review id, so every
        reader picks the same row.
    """
    latest: dict[tuple[str, str], tuple] = {}
    for row in reviews:
        if row.get("kind") != "verdict" or not row.get("verdict"):
            continue
        key = (row["call_id"], row["rule_id"])
        order = (row["recorded_at"], row["review_id"])
        if key not in latest or order > latest[key][0]:
            latest[key] = (order, row)
    return {key: Verdict(row["call_id"], row["rule_id"], row["verdict"], row.get("machine_outcome") or "",
                         row.get("reviewer") or "", row["recorded_at"], row.get("comment"))
            for key, (_, row) in latest.items()}


def apply_verdicts(results: list[RuleResult], verdicts: dict[tuple[str, str], Verdict] | None) -> int:
    """Give each rule result its verdict and final outcome (in place).

    A verdict made on another machine outcome than the result's (stale) is not applied.

    Returns:
        How many results a verdict applied to.
    """
    verdicts = verdicts or {}
    applied = stale = 0
    for result in results:
        verdict = verdicts.get((result.call_id, result.rule_id))
        if verdict is not None and verdict.machine_outcome != result.outcome:
            stale += 1
            verdict = None
        result.verdict = verdict.verdict if verdict is not None else None
        result.final_outcome = final_outcome(result.outcome, result.verdict)
        applied += verdict is not None
    if stale:
        logger.info("%d verdict(s) not applied: the machine's outcome changed since they were made", stale)
    return applied

"""Reviewers' verdicts -> the outcome a score follows.

The ``reviews`` table is a history: every verdict a reviewer saved, appended. For each (call, rule)
the latest verdict counts (by the time it was recorded; :func:`pipeline.storage.rows.latest_verdicts`
reads them). It applies to the rule result it was made on: when the machine's outcome has changed
since (a lexicon change and a rescore), the verdict is *stale* and the machine's new outcome stands
until someone reviews it again.

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
from dataclasses import replace
from typing import Iterable

from ..records import CONFIRMED, FAIL, OVERTURNED, PASS, REVIEW, RuleResult, Verdict

logger = logging.getLogger("callqa.review")

REVIEWABLE = (FAIL, REVIEW, PASS)  # machine outcomes a reviewer can judge


def final_outcome(outcome: str, verdict: str | None) -> str:
    """The outcome after a reviewer's verdict (the table in the module docstring)."""
    if verdict == CONFIRMED:
        return FAIL if outcome == REVIEW else outcome
    if verdict == OVERTURNED:
        return {FAIL: PASS, REVIEW: PASS, PASS: FAIL}.get(outcome, outcome)
    return outcome


def apply_verdicts(results: Iterable[RuleResult], verdicts: dict[tuple[str, str], Verdict] | None) -> list[RuleResult]:
    """The rule results, each with its verdict and final outcome (new results; the given ones unchanged).

    A verdict made on another machine outcome than the result's (stale) is not applied.
    """
    verdicts = verdicts or {}
    stale = 0
    judged = []
    for result in results:
        verdict = verdicts.get((result.call_id, result.rule_id))
        if verdict is not None and verdict.machine_outcome != result.outcome:
            stale += 1
            verdict = None
        said = verdict.verdict if verdict is not None else None
        judged.append(replace(result, verdict=said, final_outcome=final_outcome(result.outcome, said)))
    if stale:
        logger.info("%d verdict(s) not applied: the machine's outcome changed since they were made", stale)
    return judged

"""The machine's own precision, from reviewers' verdicts on the review sample.

Only findings drawn into the sample (:func:`pipeline.review.reviews.draw_sample`) are counted: a
finding reviewed because an agent appealed it, or because a reviewer went looking, is not a random
one, and counting it would bias the figure. Within the sample, each stratum (rule, machine outcome,
ISO week) is a simple random sample of its findings; a stratum's share of reviewed verdicts estimates
its own rate, and the strata are weighed by how many findings they stand for (``sample_size``):

    p = sum_h N_h p_h / sum_h N_h,     var(p) = sum_h (N_h / N)^2 p_h (1 - p_h) / n_h

with ``n_h`` the reviewed results of stratum h (``unsure`` verdicts and unreviewed results left out)
and ``p_h`` the share confirmed. The interval is Wilson's score interval at the effective sample size
``p (1 - p) / var(p)`` (one stratum: plain Wilson at n). Strata with nothing reviewed yet are left
out, and the counts say how much of the sample has been reviewed.

*Precision* of a rule is that rate over its ``fail`` strata (how often a fail is right); *agreement*
over all its strata (fail, review and pass: how often the reviewer agrees with the machine).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd

from ..records import CONFIRMED, FAIL, OVERTURNED, UNSURE
from ..storage.rows import latest_verdicts
from ..storage.parquet import read_arrow
from .reviews import read_reviews

Z95 = 1.959963984540054


def wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``p`` observed in ``n`` trials (n may be fractional:
    an effective sample size)."""
    if n <= 0:
        return (math.nan, math.nan)
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def stratified_rate(strata: list[tuple[int, int, int]]) -> dict:
    """A rate from stratified random samples, with its 95% interval.

    Args:
        strata: ``(N_h, n_h, k_h)`` per stratum: its size, its reviewed results, those confirmed.

    Returns:
        ``estimate``, ``low``, ``high``, ``n`` (reviewed), ``n_effective`` (NaN when nothing reviewed).
    """
    used = [(size, n, k) for size, n, k in strata if n > 0]
    reviewed = sum(n for _, n, _ in used)
    if not used:
        return {"estimate": math.nan, "low": math.nan, "high": math.nan, "n": 0, "n_effective": math.nan}
    total = sum(max(size, n) for size, n, _ in used)
    weights = [max(size, n) / total for size, n, _ in used]
    rates = [k / n for _, n, k in used]
    estimate = sum(w * p for w, p in zip(weights, rates))
    variance = sum(w * w * p * (1 - p) / n for w, p, (_, n, _) in zip(weights, rates, used))
    if len(used) == 1 or variance <= 0:
        n_eff = float(reviewed) if len(used) > 1 else float(used[0][1])
    else:
        n_eff = estimate * (1 - estimate) / variance
    low, high = wilson(estimate, n_eff)
    return {"estimate": estimate, "low": low, "high": high, "n": reviewed, "n_effective": n_eff}


def sample_verdicts(out_dir: str | Path) -> pd.DataFrame:
    """The review sample with each drawn result's verdict: one row per sample row, with ``verdict``
    (the latest made on the outcome that was drawn; None while unreviewed or stale)."""
    reviews = read_reviews(out_dir)
    sample = reviews[reviews["kind"] == "sample"][["call_id", "rule_id", "agent_id", "machine_outcome",
                                                   "sample_week", "sample_size", "call_date"]].copy()
    verdicts = latest_verdicts(reviews.to_dict("records"))
    judged = []
    for call_id, rule_id, outcome in zip(sample["call_id"], sample["rule_id"], sample["machine_outcome"]):
        v = verdicts.get((call_id, rule_id))
        judged.append(v.verdict if v is not None and v.machine_outcome == outcome else None)
    return sample.assign(verdict=judged).reset_index(drop=True)


def _strata(rows: pd.DataFrame) -> list[tuple[int, int, int]]:
    out = []
    for _, stratum in rows.groupby(["machine_outcome", "sample_week"]):
        decided = stratum["verdict"].isin([CONFIRMED, OVERTURNED])
        out.append((int(stratum["sample_size"].max()), int(decided.sum()),
                    int((stratum["verdict"] == CONFIRMED).sum())))
    return out


def overturned_phrases(out_dir: str | Path, rule_id: str | None = None, top: int = 5) -> dict[str, list[tuple[str, int]]]:
    """Per rule, the phrases of its overturned fails, most often overturned first: what was said
    (as transcribed) and the lexicon entry it matched, ``"matched → phrase"``. Every overturned
    verdict counts here, sampled or not: these are candidates for an ``except=`` in the lexicon.
    """
    reviews = read_reviews(out_dir)
    verdicts = latest_verdicts(reviews.to_dict("records"))
    wrong = {key for key, v in verdicts.items() if v.verdict == OVERTURNED and v.machine_outcome == FAIL
             and (rule_id is None or key[1] == rule_id)}
    if not wrong:
        return {}
    hits = read_arrow(out_dir, "hits", ["call_id", "rule_id", "phrase", "matched_text"]).to_pandas()
    counts: dict[str, Counter] = {}
    for call_id, rid, phrase, said in zip(hits["call_id"], hits["rule_id"], hits["phrase"], hits["matched_text"]):
        if (call_id, rid) in wrong:
            counts.setdefault(rid, Counter())[said if said == phrase else f"{said} → {phrase}"] += 1
    return {rid: c.most_common(top) for rid, c in counts.items()}


def rule_precision(out_dir: str | Path, threshold: float = 0.8) -> pd.DataFrame:
    """Per rule, from the reviewed sample: the precision of ``fail`` and the agreement with the
    reviewers over every outcome, each with its 95% interval; the rules whose precision is under
    ``threshold`` are flagged, with their most overturned phrases.

    Returns:
        One row per rule in the sample (rules sorted by precision, lowest first): ``rule_id``,
        ``sampled_fails``, ``reviewed_fails``, ``confirmed``, ``overturned``, ``unsure``,
        ``precision``, ``precision_low``, ``precision_high``, ``sampled``, ``reviewed``,
        ``agreement``, ``agreement_low``, ``agreement_high``, ``below_threshold`` and
        ``overturned_phrases`` (a list of ``(phrase, times)``). Precision is NaN while no sampled
        fail of the rule has been reviewed.
    """
    sample = sample_verdicts(out_dir)
    phrases = overturned_phrases(out_dir)
    rows = []
    for rule_id, rows_of_rule in sample.groupby("rule_id"):
        fails = rows_of_rule[rows_of_rule["machine_outcome"] == FAIL]
        precision = stratified_rate(_strata(fails))
        agreement = stratified_rate(_strata(rows_of_rule))
        rows.append({
            "rule_id": rule_id, "sampled_fails": len(fails), "reviewed_fails": precision["n"],
            "confirmed": int((fails["verdict"] == CONFIRMED).sum()),
            "overturned": int((fails["verdict"] == OVERTURNED).sum()),
            "unsure": int((fails["verdict"] == UNSURE).sum()),
            "precision": precision["estimate"], "precision_low": precision["low"], "precision_high": precision["high"],
            "sampled": len(rows_of_rule), "reviewed": agreement["n"],
            "agreement": agreement["estimate"], "agreement_low": agreement["low"], "agreement_high": agreement["high"],
            "below_threshold": bool(precision["estimate"] < threshold),  # NaN compares False: not judged yet
            "overturned_phrases": phrases.get(rule_id, []),
        })
    columns = ["rule_id", "sampled_fails", "reviewed_fails", "confirmed", "overturned", "unsure", "precision",
               "precision_low", "precision_high", "sampled", "reviewed", "agreement", "agreement_low",
               "agreement_high", "below_threshold", "overturned_phrases"]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["precision", "rule_id"], na_position="last", ignore_index=True)


def overall_agreement(out_dir: str | Path) -> dict:
    """Agreement with the reviewers over every rule and outcome of the sample (strata weighed by
    their sizes), with its 95% interval: ``estimate``, ``low``, ``high``, ``n``, ``n_effective``."""
    sample = sample_verdicts(out_dir)
    strata = [s for _, rows in sample.groupby("rule_id") for s in _strata(rows)]
    return stratified_rate(strata)

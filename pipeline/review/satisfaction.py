"""The customers' own verdict beside the machine's: satisfaction ratings against rules and scores (issue 28).

Many contact centres ask the caller to rate the call after it ends (003: 非常满意 5, 满意 4, 一般 3,
不满意 2, 很不满意 1; press 1-5). The manifest's optional ``satisfaction`` column is stored on
``calls``; here it is read against what the rules decided:

- **per rule**: the mean rating of the rated calls that fail the rule against those that pass it, each
  with its 95% interval and count, and the difference (pass - fail) with Welch's interval. A rule is
  pointed out when its failure shows no measurable effect on the rating (``no_effect``: the difference's
  interval reaches zero although both sides have at least ``min_calls`` rated calls), or when it
  predicts unhappy customers yet costs few points (``underweighted``: the difference's interval is above
  zero and the points a failure costs are at most the median over the rules shown). The rubric can then
  be weighed against the customers.
- **per agent**: the QA mean score beside the customers' mean rating, with counts and intervals.

Outcomes are final ones (after human review); ``review`` and ``not_applicable`` results are neither
pass nor fail and are left out. Intervals are Student's t (Welch-Satterthwaite degrees of freedom for
a difference), kept within the scale (1-5; a difference within -4..4); a side with fewer than two rated
calls has no interval.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..records import FAIL, PASS, STATUS_OK
from ..storage.parquet import read_table

Z95 = 1.959963984540054
MIN_CALLS = 5  # rated calls on each side before a rule is said to have no effect


def t_quantile(df: float, z: float = Z95) -> float:
    """Student's t quantile for ``df`` degrees of freedom at the normal quantile ``z`` (1.96: the 0.975
    quantile): exact at 1 and 2 degrees of freedom, inverted numerically under 4 (Welch's degrees of
    freedom need not be whole), else the Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5; within
    0.001 of the exact value from 4 degrees of freedom up)."""
    if df <= 0 or math.isnan(df):
        return math.nan
    v = float(df)
    p = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    if v == 1:
        return math.tan(math.pi * (p - 0.5))
    if v == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    if v < 4:  # few (Welch's need not be whole): the distribution inverted numerically
        return _t_inverse(v, p)
    return (z + (z ** 3 + z) / (4 * v) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * v ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * v ** 3)
            + (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / (92160 * v ** 4))


def _t_inverse(v: float, p: float) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``v`` degrees of freedom: its density integrated
    by Simpson's rule, the bound found by bisection."""
    scale = math.exp(math.lgamma((v + 1) / 2) - math.lgamma(v / 2)) / math.sqrt(v * math.pi)

    def above_half(t: float, steps: int = 400) -> float:
        h = t / steps
        f = [scale * (1 + (i * h) ** 2 / v) ** (-(v + 1) / 2) for i in range(steps + 1)]
        return h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))

    low, high = 0.0, 200.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if above_half(mid) < p - 0.5 else (low, mid)
    return (low + high) / 2


def mean_interval(values, bounds: tuple[float, float] = (1.0, 5.0)) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of the ratings, with Student's 95% interval (NaN bounds under 2) kept
    within the scale's ``bounds`` (a mean rating cannot leave them)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return (math.nan, math.nan, math.nan, 0)
    mean = sum(values) / n
    if n < 2:
        return (mean, math.nan, math.nan, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return (mean, max(bounds[0], mean - half), min(bounds[1], mean + half), n)


def difference_interval(a, b) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), low, high)`` with Welch's 95% interval (NaN bounds when a side has fewer
    than 2 values; a zero spread on both sides gives the difference itself as both bounds)."""
    a, b = [float(v) for v in a], [float(v) for v in b]
    if not a or not b:
        return (math.nan, math.nan, math.nan)
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    d = ma - mb
    if len(a) < 2 or len(b) < 2:
        return (d, math.nan, math.nan)
    va = sum((v - ma) ** 2 for v in a) / (len(a) - 1) / len(a)
    vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1) / len(b)
    if va + vb == 0:
        return (d, d, d)
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0.0) + (vb ** 2 / (len(b) - 1) if vb else 0.0))
    half = t_quantile(df) * math.sqrt(va + vb)
    return (d, max(-4.0, d - half), min(4.0, d + half))  # two means of 1-5 ratings differ by 4 at most


def _columns(out_dir: Path, dates) -> tuple[pd.DataFrame, pd.DataFrame]:
    calls = read_table(out_dir, "calls", ["call_id", "agent_id", "status", "score", "satisfaction"], dates)
    results = read_table(out_dir, "rule_results", ["call_id", "rule_id", "outcome", "final_outcome", "deduction"],
                         dates)
    calls = calls[calls["status"] == STATUS_OK]
    if not results.empty:
        outcome = results["final_outcome"].where(results["final_outcome"].notna(), results["outcome"])
        results = results.assign(final=outcome)
    return calls, results


def rule_satisfaction(out_dir: str | Path, dates: tuple[str | None, str | None] = (None, None),
                      min_calls: int = MIN_CALLS, names: dict[str, str] | None = None) -> pd.DataFrame:
    """Per rule, the customers' mean rating of the rated calls that fail it against those that pass it.

    Args:
        out_dir: a results folder.
        dates: call dates ``from..to`` inclusive (None: open).
        min_calls: rated calls each side needs before the rule can be said to have no effect.
        names: rule id -> its Chinese name, for the ``name`` column (default: the id).

    Returns:
        One row per rule with rated calls: ``rule_id``, ``name``, ``fail_n``, ``fail_mean``, ``fail_low``,
        ``fail_high``, the same for ``pass_``, ``difference`` (pass - fail) with ``difference_low`` /
        ``difference_high``, ``points`` (the mean deduction of a failure), ``no_effect`` and
        ``underweighted`` (see the module), ordered by the difference, largest first. Empty when no
        call is rated.
    """
    calls, results = _columns(Path(out_dir), dates)
    rated = calls[calls["satisfaction"].notna()]
    columns = ["rule_id", "name", "fail_n", "fail_mean", "fail_low", "fail_high", "pass_n", "pass_mean", "pass_low",
               "pass_high", "difference", "difference_low", "difference_high", "points", "no_effect", "underweighted"]
    if rated.empty or results.empty:
        return pd.DataFrame(columns=columns)
    rating = dict(zip(rated["call_id"], rated["satisfaction"].astype(float)))
    results = results[results["call_id"].isin(rating.keys()) & results["final"].isin([FAIL, PASS])]
    rows = []
    for rule_id, group in results.groupby("rule_id", sort=True):
        failed = [rating[c] for c in group.loc[group["final"] == FAIL, "call_id"]]
        passed = [rating[c] for c in group.loc[group["final"] == PASS, "call_id"]]
        deductions = group.loc[group["final"] == FAIL, "deduction"].dropna()
        fail = mean_interval(failed)
        ok = mean_interval(passed)
        d = difference_interval(passed, failed)
        rows.append({"rule_id": rule_id, "name": (names or {}).get(rule_id, rule_id),
                     "fail_n": fail[3], "fail_mean": fail[0], "fail_low": fail[1], "fail_high": fail[2],
                     "pass_n": ok[3], "pass_mean": ok[0], "pass_low": ok[1], "pass_high": ok[2],
                     "difference": d[0], "difference_low": d[1], "difference_high": d[2],
                     "points": float(deductions.mean()) if len(deductions) else math.nan})
    table = pd.DataFrame(rows, columns=columns[:-2])
    enough = (table["fail_n"] >= min_calls) & (table["pass_n"] >= min_calls)
    table["no_effect"] = enough & (table["difference_low"] <= 0)
    median_points = table["points"].median()
    table["underweighted"] = (table["difference_low"] > 0) & (table["points"] <= median_points)
    return table.sort_values(["difference", "rule_id"], ascending=[False, True], na_position="last",
                             ignore_index=True)


def agent_satisfaction(out_dir: str | Path, dates: tuple[str | None, str | None] = (None, None)) -> pd.DataFrame:
    """Per agent, the QA mean score of the scored calls beside the customers' mean rating.

    Returns:
        ``agent_id``, ``calls`` (scored), ``qa_mean``, ``rated`` (calls with a rating), ``rating_mean``,
        ``rating_low``, ``rating_high``, sorted by the QA mean, lowest first.
    """
    calls, _ = _columns(Path(out_dir), dates)
    rows = []
    for agent, group in calls.groupby("agent_id", sort=True):
        mean, low, high, n = mean_interval(group["satisfaction"].dropna())
        rows.append({"agent_id": agent, "calls": len(group), "qa_mean": float(group["score"].mean()),
                     "rated": n, "rating_mean": mean, "rating_low": low, "rating_high": high})
    table = pd.DataFrame(rows, columns=["agent_id", "calls", "qa_mean", "rated", "rating_mean", "rating_low",
                                        "rating_high"])
    return table.sort_values(["qa_mean", "agent_id"], ignore_index=True)


def score_rating_correlation(out_dir: str | Path, dates: tuple[str | None, str | None] = (None, None)) -> dict:
    """Pearson's correlation of the QA score and the rating over the rated scored calls, with its 95%
    interval (Fisher's z; NaN under 4 calls or with no spread): ``r``, ``low``, ``high``, ``n``."""
    calls, _ = _columns(Path(out_dir), dates)
    both = calls[calls["satisfaction"].notna() & calls["score"].notna()]
    n = len(both)
    x, y = both["score"].astype(float), both["satisfaction"].astype(float)
    if n < 4 or x.std() == 0 or y.std() == 0:
        return {"r": math.nan, "low": math.nan, "high": math.nan, "n": n}
    r = float(x.corr(y))
    r = max(-0.999999, min(0.999999, r))
    z, se = math.atanh(r), 1 / math.sqrt(n - 3)
    return {"r": r, "low": math.tanh(z - Z95 * se), "high": math.tanh(z + Z95 * se), "n": n}

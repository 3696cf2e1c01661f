"""Agent scorecards: calls -> per-agent aggregates per day, ISO week and month.

Calls, mean and median score, pass rate, red lines, failure rate per rule, rank and percentile within
the period's team, change against the agent's previous period. Failed recordings (``error_calls``)
and unscorable ones (``unscorable_calls``) are counted apart and never scored. Pure functions over
DataFrames.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Iterable

import pandas as pd

from ..records import FAIL, OVERTURNED, PASS, REVIEW, STATUS_ERROR, STATUS_OK, STATUS_UNSCORABLE

PERIODS = ("day", "week", "month")


def _period(kind: str, day: date) -> tuple[str, date]:
    if kind == "day":
        return day.isoformat(), day
    if kind == "week":
        year, week, weekday = day.isocalendar()
        return f"{year}-W{week:02d}", day - timedelta(days=weekday - 1)
    return f"{day.year}-{day.month:02d}", day.replace(day=1)


def _previous(kind: str, start: date) -> date:
    if kind == "day":
        return start - timedelta(days=1)
    if kind == "week":
        return start - timedelta(days=7)
    return (start - timedelta(days=1)).replace(day=1)


def agent_scores(calls: pd.DataFrame, rule_results: pd.DataFrame) -> pd.DataFrame:
    """Per agent and period (day, ISO week, month): calls, scores, pass rate, red lines, fail rate per
    rule, rank and percentile within the team (all agents of the period), change against the previous
    period. Calls with status ``error`` are counted in ``error_calls``, ``unscorable`` ones in
    ``unscorable_calls``; neither is ever in a mean, pass rate, rank or rule failure rate.

    Args:
        calls: the ``calls`` table (needs call_id, agent_id, call_date, status, score, passed, red_line).
        rule_results: the ``rule_results`` table (call_id, rule_id, outcome; with ``final_outcome``
            and ``verdict``, failure rates follow the outcome after review, and each row counts the
            agent's findings reviewed and overturned).

    Returns:
        One row per (period_type, period, agent_id), with ``period_start`` as an ISO date.
    """
    columns = ["period_type", "period", "period_start", "agent_id", "calls", "error_calls", "unscorable_calls",
               "mean_score",
               "median_score", "pass_rate", "red_lines", "rule_fail_rates", "rank", "percentile",
               "mean_score_change", "pass_rate_change", "reviewed_findings", "overturned_findings"]
    if calls.empty:
        return pd.DataFrame(columns=columns)
    base = calls[["call_id", "agent_id", "call_date", "status", "score", "passed", "red_line"]].copy()
    days = pd.to_datetime(base["call_date"].astype(str)).dt.date
    frames = []
    judged = reviewed_outcomes(rule_results)
    for kind in PERIODS:
        keyed = base.assign(**dict(zip(("period", "period_start"), zip(*[_period(kind, d) for d in days]))))
        keyed["period_start"] = keyed["period_start"].map(date.isoformat)
        ok = keyed[keyed["status"] == STATUS_OK]
        group = ["period", "period_start", "agent_id"]
        stats = ok.groupby(group).agg(calls=("call_id", "size"), mean_score=("score", "mean"),
                                      median_score=("score", "median"),
                                      pass_rate=("passed", lambda s: float(s.astype(bool).mean())),
                                      red_lines=("red_line", lambda s: int(s.astype(bool).sum())))
        errors = keyed[keyed["status"] == STATUS_ERROR].groupby(group).size().rename("error_calls")
        unscorable = keyed[keyed["status"] == STATUS_UNSCORABLE].groupby(group).size().rename("unscorable_calls")
        reviewed = review_counts(judged, ok, group)
        stats = stats.join(errors, how="outer").join(unscorable, how="outer").join(reviewed, how="left").reset_index()
        for column in ("calls", "red_lines", "error_calls", "unscorable_calls", "reviewed_findings",
                       "overturned_findings"):
            stats[column] = stats[column].fillna(0).astype(int)
        rates = fail_rates(judged.merge(ok[["call_id", *group]], on="call_id"), group)
        fail_maps = {key: sorted(part.droplevel(list(range(len(group)))).items())
                     for key, part in rates.groupby(level=list(range(len(group))))}
        stats["rule_fail_rates"] = [fail_maps.get((p, s, a), []) for p, s, a in
                                    zip(stats["period"], stats["period_start"], stats["agent_id"])]
        stats["rank"] = stats.groupby("period")["mean_score"].rank(method="min", ascending=False)
        counted = stats.groupby("period")["mean_score"].transform("count")
        below = stats.groupby("period")["mean_score"].rank(method="min", ascending=True) - 1
        stats["percentile"] = (100 * below / (counted - 1)).where(counted > 1, 100.0).where(stats["mean_score"].notna())
        previous = stats.set_index(["agent_id", "period_start"])[["mean_score", "pass_rate"]]
        prev_start = stats["period_start"].map(lambda s: _previous(kind, date.fromisoformat(s)).isoformat())
        prev = previous.reindex(list(zip(stats["agent_id"], prev_start)))
        stats["mean_score_change"] = stats["mean_score"].to_numpy() - prev["mean_score"].to_numpy()
        stats["pass_rate_change"] = stats["pass_rate"].to_numpy() - prev["pass_rate"].to_numpy()
        stats["period_type"] = kind
        frames.append(stats)
    result = pd.concat(frames, ignore_index=True)
    result["rank"] = result["rank"].astype("Int64")
    return result[columns].sort_values(["period_type", "period", "rank", "agent_id"], ignore_index=True)


def reviewed_outcomes(rule_results: pd.DataFrame) -> pd.DataFrame:
    """Rule results with the outcome a score follows: ``outcome`` is the final outcome after review
    (the machine's where nobody reviewed it, or where the table has no review columns), with
    ``finding`` (the machine failed it or asked for review), ``reviewed`` and ``overturned`` flags."""
    judged = rule_results[["call_id", "rule_id", "outcome"]].copy()
    verdict = rule_results["verdict"] if "verdict" in rule_results else pd.Series(None, index=rule_results.index)
    judged["finding"] = judged["outcome"].isin([FAIL, REVIEW])
    judged["reviewed"] = verdict.notna().to_numpy()
    judged["overturned"] = (verdict == OVERTURNED).to_numpy()
    if "final_outcome" in rule_results:
        judged["outcome"] = rule_results["final_outcome"].fillna(rule_results["outcome"])
    return judged


def review_counts(judged: pd.DataFrame, calls: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of ``calls`` (by the ``by`` columns): ``reviewed_findings``, the findings (results the
    machine failed or asked to review) a reviewer judged, and ``overturned_findings``, those overturned.

    Args:
        judged: :func:`reviewed_outcomes` of the rule results.
        calls: the calls to count (call_id and the ``by`` columns); results of other calls are left out.
    """
    findings = judged[judged["finding"] & judged["reviewed"]].merge(calls[["call_id", *by]], on="call_id")
    return findings.groupby(by).agg(reviewed_findings=("call_id", "size"), overturned_findings=("overturned", "sum"))


def fail_rates(rule_results: pd.DataFrame, by: list[str]) -> pd.Series:
    """Per group and rule: the share of the calls the rule applied to (pass or fail) that failed it,
    after review (``final_outcome``, where the rows have it).

    Args:
        rule_results: rows with ``rule_id``, ``outcome`` and the ``by`` columns.
        by: the grouping (``["agent_id"]``; ``["period", "period_start", "agent_id"]``).

    Returns:
        Failure rate indexed by ``(*by, rule_id)``; rules that never applied are absent.
    """
    if "final_outcome" in rule_results:  # after review (unreviewed results keep the machine's outcome)
        rule_results = rule_results.assign(outcome=rule_results["final_outcome"].fillna(rule_results["outcome"]))
    applicable = rule_results[rule_results["outcome"].isin([PASS, FAIL])]
    return applicable.assign(failed=applicable["outcome"] == FAIL).groupby([*by, "rule_id"])["failed"].mean()


def top_failing_rule(rule_fail_rates: Iterable[tuple[str, float]] | None) -> str:
    """The rule an agent fails most often, as ``rule_id (NN%)``; '' when none failed.

    The highest failure rate wins; equal rates go to the first rule id in alphabetical order. The
    command line (from ``agent_scores.rule_fail_rates``) and the notebooks' leaderboard (over any
    period) both call this, so they never disagree.
    """
    failing = sorted((-rate, rule) for rule, rate in (rule_fail_rates or []) if rate > 0)
    if not failing:
        return ""
    rate, rule = -failing[0][0], failing[0][1]
    return f"{rule} ({rate:.0%})"

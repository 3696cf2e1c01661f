"""Scores: rule results -> a score per call (rubric), calls -> per-agent aggregates per day, week, month.

Pure functions over rows and DataFrames; no I/O beyond reading the rubric file.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Iterable

import pandas as pd

from .config import LEXICONS_DIR
from .lexicon import SEVERITIES, LexiconError, rule_line

DEFAULT_RUBRIC = LEXICONS_DIR / "rubric.toml"
_PER = ("call", "hit")
_RULE_KEYS = {"deduction": (int, float), "per": (str,), "cap": (int, float), "red_line": (bool,),
              "red_line_severity": (str,)}
_SCORE_KEYS = ("start", "floor", "pass_mark", "default_deduction")


@dataclass(frozen=True)
class RuleWeight:
    deduction: float
    per: str = "call"
    cap: float | None = None
    red_line: bool = False
    red_line_severity: str | None = None


@dataclass(frozen=True)
class Rubric:
    start: float
    floor: float
    pass_mark: float
    default_deduction: float
    severity: dict[str, float]
    rules: dict[str, RuleWeight]
    version: str
    source: str

    def weight(self, rule_id: str) -> RuleWeight:
        return self.rules.get(rule_id) or RuleWeight(self.default_deduction)


def load_rubric(path: str | Path | None = None, rule_ids: Iterable[str] | None = None) -> Rubric:
    """Load and validate the rubric.

    Args:
        path: the rubric file (default ``lexicons/rubric.toml``).
        rule_ids: the rule ids that exist (from ``rules.toml``); a rubric entry for another id is an error.

    Raises:
        LexiconError: every problem, with file and line.
    """
    path = Path(path) if path else DEFAULT_RUBRIC
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LexiconError([f"{path}: cannot read the rubric: {exc}"]) from None
    lines = text.splitlines()
    name = path.name
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LexiconError([f"{name}: not valid TOML: {exc}"]) from None
    problems: list[str] = []

    def line_of(key: str) -> int:
        for number, line in enumerate(lines, 1):
            if line.split("#", 1)[0].strip().startswith(key):
                return number
        return 1

    for key in data:
        if key not in ("score", "severity", "rules"):
            problems.append(f"{name}:{line_of('[' + key)}: unknown table [{key}] (known: [score], [severity], [rules.\"id\"])")
    score = data.get("score", {})
    for key, value in score.items():
        if key not in _SCORE_KEYS:
            problems.append(f"{name}:{line_of(key)}: unknown [score] option {key!r}; known: {', '.join(_SCORE_KEYS)}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"{name}:{line_of(key)}: [score] {key} must be a number")
    start, floor = score.get("start", 100), score.get("floor", 0)
    pass_mark = score.get("pass_mark", 80)
    if all(isinstance(v, (int, float)) for v in (start, floor, pass_mark)) and not floor <= pass_mark <= start:
        problems.append(f"{name}:{line_of('pass_mark')}: need floor <= pass_mark <= start")
    severity = data.get("severity", {})
    for key, value in severity.items():
        if key not in SEVERITIES:
            problems.append(f"{name}:{line_of(chr(34) + key)}: unknown severity {key!r}; known: {'/'.join(SEVERITIES)}")
        elif not isinstance(value, (int, float)) or value < 0:
            problems.append(f"{name}:{line_of(chr(34) + key)}: severity {key} must be a number of points >= 0")
    known_ids = set(rule_ids) if rule_ids is not None else None
    rules: dict[str, RuleWeight] = {}
    for rule_id, options in data.get("rules", {}).items():
        at = f"{name}:{rule_line(lines, rule_id)}"
        if known_ids is not None and rule_id not in known_ids:
            problems.append(f"{at}: rule {rule_id!r} is not defined in rules.toml")
        if not isinstance(options, dict):
            problems.append(f"{at}: rules.{rule_id} must be a table")
            continue
        for key, value in options.items():
            where = f"{name}:{rule_line(lines, rule_id, key)}"
            if key not in _RULE_KEYS:
                problems.append(f"{where}: rule {rule_id!r}: unknown option {key!r}; known: {', '.join(_RULE_KEYS)}")
            elif not isinstance(value, _RULE_KEYS[key]) or (isinstance(value, bool) and key != "red_line"):
                problems.append(f"{where}: rule {rule_id!r}: {key} = {value!r} has the wrong type")
            elif key == "per" and value not in _PER:
                problems.append(f"{where}: rule {rule_id!r}: per must be call or hit")
            elif key == "red_line_severity" and value not in SEVERITIES:
                problems.append(f"{where}: rule {rule_id!r}: red_line_severity must be one of {'/'.join(SEVERITIES)}")
            elif key in ("deduction", "cap") and value < 0:
                problems.append(f"{where}: rule {rule_id!r}: {key} must be >= 0")
        clean = {k: v for k, v in options.items() if k in _RULE_KEYS}
        rules[rule_id] = RuleWeight(float(clean.get("deduction", score.get("default_deduction", 5))),
                                    clean.get("per", "call"), clean.get("cap"), bool(clean.get("red_line", False)),
                                    clean.get("red_line_severity"))
    if problems:
        raise LexiconError(problems)
    return Rubric(float(start), float(floor), float(pass_mark), float(score.get("default_deduction", 5)),
                  {k: float(v) for k, v in severity.items()}, rules,
                  hashlib.sha256(text.encode()).hexdigest()[:16], str(path))


def _severity_rank(severity: str | None) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def deduction_for(rubric: Rubric, rule_id: str, outcome: str, hits: list[dict]) -> tuple[float, bool]:
    """Points one rule result costs, and whether it crosses a red line."""
    if outcome != "fail":
        return 0.0, False
    weight = rubric.weight(rule_id)
    if weight.per == "hit" and hits:
        points = sum(rubric.severity.get(h.get("severity") or "", weight.deduction) for h in hits)
    else:
        points = weight.deduction
    if weight.cap is not None:
        points = min(points, weight.cap)
    red = weight.red_line or (weight.red_line_severity is not None and any(
        _severity_rank(h.get("severity")) >= _severity_rank(weight.red_line_severity) for h in hits))
    return float(points), red


def score_calls(rubric: Rubric, calls: list[dict], rule_results: list[dict], hits: list[dict],
                lexicon_version: str = "") -> None:
    """Fill in each call's score, passed and red_line, and each rule result's deduction (in place).

    Calls with status ``error`` are never scored (their score columns stay empty).
    """
    hits_by = {}
    for hit in hits:
        hits_by.setdefault((hit["call_id"], hit["rule_id"]), []).append(hit)
    totals: dict[str, list] = {}
    for row in rule_results:
        points, red = deduction_for(rubric, row["rule_id"], row["outcome"], hits_by.get((row["call_id"], row["rule_id"]), []))
        row["deduction"] = points
        total = totals.setdefault(row["call_id"], [0.0, False])
        total[0] += points
        total[1] = total[1] or red
    for call in calls:
        call["rubric_version"] = rubric.version
        call["lexicon_version"] = lexicon_version or call.get("lexicon_version")
        if call.get("status") != "ok":
            call["score"] = call["passed"] = call["red_line"] = None
            continue
        deducted, red = totals.get(call["call_id"], (0.0, False))
        score = max(rubric.floor, rubric.start - deducted)
        call["score"] = round(score, 2)
        call["red_line"] = red
        call["passed"] = (not red) and score >= rubric.pass_mark


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
    period. Calls with status ``error`` are counted in ``error_calls`` and never scored.

    Args:
        calls: the ``calls`` table (needs call_id, agent_id, call_date, status, score, passed, red_line).
        rule_results: the ``rule_results`` table (call_id, rule_id, outcome).

    Returns:
        One row per (period_type, period, agent_id), with ``period_start`` as an ISO date.
    """
    columns = ["period_type", "period", "period_start", "agent_id", "calls", "error_calls", "mean_score",
               "median_score", "pass_rate", "red_lines", "rule_fail_rates", "rank", "percentile",
               "mean_score_change", "pass_rate_change"]
    if calls.empty:
        return pd.DataFrame(columns=columns)
    base = calls[["call_id", "agent_id", "call_date", "status", "score", "passed", "red_line"]].copy()
    days = pd.to_datetime(base["call_date"].astype(str)).dt.date
    frames = []
    applicable = rule_results[rule_results["outcome"].isin(["pass", "fail"])][["call_id", "rule_id", "outcome"]]
    for kind in PERIODS:
        keyed = base.assign(**dict(zip(("period", "period_start"), zip(*[_period(kind, d) for d in days]))))
        keyed["period_start"] = keyed["period_start"].map(date.isoformat)
        ok = keyed[keyed["status"] == "ok"]
        group = ["period", "period_start", "agent_id"]
        stats = ok.groupby(group).agg(calls=("call_id", "size"), mean_score=("score", "mean"),
                                      median_score=("score", "median"),
                                      pass_rate=("passed", lambda s: float(s.astype(bool).mean())),
                                      red_lines=("red_line", lambda s: int(s.astype(bool).sum())))
        errors = keyed[keyed["status"] != "ok"].groupby(group).size().rename("error_calls")
        stats = stats.join(errors, how="outer").reset_index()
        stats["calls"] = stats["calls"].fillna(0).astype(int)
        stats["red_lines"] = stats["red_lines"].fillna(0).astype(int)
        stats["error_calls"] = stats["error_calls"].fillna(0).astype(int)
        rates = applicable.merge(ok[["call_id", *group]], on="call_id")
        rates = (rates.assign(failed=rates["outcome"] == "fail").groupby([*group, "rule_id"])["failed"].mean())
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


def top_failing_rule(rule_fail_rates: list) -> str:
    """The rule with the highest fail rate in a ``rule_fail_rates`` list of (rule_id, rate), '' if none failed."""
    failing = [(rate, rule) for rule, rate in (rule_fail_rates or []) if rate > 0]
    if not failing:
        return ""
    rate, rule = max(failing)
    return f"{rule} ({rate:.0%})"

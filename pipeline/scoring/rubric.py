"""The rubric: rule results -> a score per call.

``lexicons/rubric.toml`` (commented) says how many points each failed rule costs: a call starts at
``start`` and loses each failed rule's deduction, once per call or per finding by severity tier,
capped per rule, never below ``floor``; it passes at ``pass_mark`` unless it crossed a red line.
Passed and not-applicable rules cost nothing; failed recordings are never scored. The file is
validated like the configuration and the lexicons (every problem, with file and line).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Literal

from ..config import LEXICONS_DIR
from ..errors import RubricError
from ..records import FAIL, STATUS_OK, CallScore, Hit, RuleResult
from ..rules.lexicon import SEVERITIES
from ..validation import build_options, read_toml

DEFAULT_RUBRIC = LEXICONS_DIR / "rubric.toml"
Severity = Literal["轻", "中", "重"]


@dataclass(frozen=True)
class ScoreOptions:
    """``[score]``: the scale.

    Attributes:
        start: a call's score before deductions.
        floor: no score goes below this.
        pass_mark: a call passes at this score or more (and no red line).
        default_deduction: what a failed rule costs when ``[rules."id"]`` does not say.
        min_agent_speech_s: a call with less agent speech than this (voice activity on the agent's
            channel; all speech of a mono call) is not scored but ``unscorable``: silence, a dead agent
            line, a recording cut to a fraction of a second. The demo corpus's agents speak 16.8-38.5 s.
        score_truncated: score recordings that are cut off (decoding stopped early, or the file holds
            less audio than its header declares); by default they are ``unscorable``, because the
            part missing (the farewell, say) would count against the agent.
    """

    start: float = 100
    floor: float = 0
    pass_mark: float = 80
    default_deduction: float = 5
    min_agent_speech_s: float = 3.0
    score_truncated: bool = False

    def validate(self) -> list[tuple[str, str]]:
        problems = [] if self.floor <= self.pass_mark <= self.start else [
            ("pass_mark", "need floor <= pass_mark <= start")]
        if self.min_agent_speech_s < 0:
            problems.append(("min_agent_speech_s", "min_agent_speech_s must be 0 or more"))
        return problems


@dataclass(frozen=True)
class SeverityPoints:
    """``[severity]``: points per finding of each severity, for rules scored ``per = "hit"`` (a tier
    not given costs the rule's own deduction)."""

    轻: float | None = None
    中: float | None = None
    重: float | None = None

    def validate(self) -> list[tuple[str, str]]:
        return [(name, f"severity {name} must be a number of points >= 0") for name in SEVERITIES
                if getattr(self, name) is not None and getattr(self, name) < 0]


@dataclass(frozen=True)
class RuleWeight:
    """``[rules."id"]``: what failing one rule costs.

    Attributes:
        deduction: points per failed call (``per = "call"``) or per finding without a severity tier;
            None: ``[score] default_deduction``.
        per: ``call`` (once) or ``hit`` (each finding, by its severity's points).
        cap: at most this many points from this rule in one call.
        red_line: failing the rule fails the call whatever its score.
        red_line_severity: a finding of this severity or worse fails the call.
    """

    deduction: float | None = None
    per: Literal["call", "hit"] = "call"
    cap: float | None = None
    red_line: bool = False
    red_line_severity: Severity | None = None

    def validate(self) -> list[tuple[str, str]]:
        return [(name, f"{name} must be >= 0") for name in ("deduction", "cap")
                if getattr(self, name) is not None and getattr(self, name) < 0]


@dataclass(frozen=True)
class Rubric:
    """A validated rubric. ``version`` hashes the file's content (stored on every scored call)."""

    score: ScoreOptions
    severity: dict[str, float]
    rules: dict[str, RuleWeight]
    version: str
    source: str

    @property
    def start(self) -> float:
        return self.score.start

    @property
    def floor(self) -> float:
        return self.score.floor

    @property
    def pass_mark(self) -> float:
        return self.score.pass_mark

    def weight(self, rule_id: str) -> RuleWeight:
        return self.rules.get(rule_id) or RuleWeight(self.score.default_deduction)


def load_rubric(path: str | Path | None = None, rule_ids: Iterable[str] | None = None) -> Rubric:
    """Load and validate the rubric.

    Args:
        path: the rubric file (default ``lexicons/rubric.toml``).
        rule_ids: the rule ids that exist (from ``rules.toml``); a rubric entry for another id is an error.

    Raises:
        RubricError: every problem, with file and line.
    """
    path = Path(path) if path else DEFAULT_RUBRIC
    data, source = read_toml(path, RubricError, "the rubric", path.name)
    problems: list[str] = []
    for key in data:
        if key not in ("score", "severity", "rules"):
            problems.append(f"{source.where((key,))}: unknown table [{key}] (known: [score], [severity], [rules.\"id\"])")
    score = build_options(ScoreOptions, data.get("score", {}), source, ("score",), "[score]", problems)
    severity = build_options(SeverityPoints, data.get("severity", {}), source, ("severity",), "[severity]", problems)
    known_ids = set(rule_ids) if rule_ids is not None else None
    rules: dict[str, RuleWeight] = {}
    for rule_id, table in data.get("rules", {}).items():
        if known_ids is not None and rule_id not in known_ids:
            problems.append(f"{source.where(('rules', rule_id))}: rule {rule_id!r} is not defined in rules.toml")
        weight = build_options(RuleWeight, table, source, ("rules", rule_id), f"rule {rule_id!r}", problems)
        if weight is not None:
            rules[rule_id] = weight
    if problems:
        raise RubricError(problems)
    rules = {rule_id: w if w.deduction is not None else replace(w, deduction=score.default_deduction)
             for rule_id, w in rules.items()}
    points = {name: float(getattr(severity, name)) for name in SEVERITIES if getattr(severity, name) is not None}
    version = hashlib.sha256(source.text.encode()).hexdigest()[:16]
    return Rubric(score, points, rules, version, str(path))


def _severity_rank(severity: str | None) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def deduction_for(rubric: Rubric, rule_id: str, outcome: str, hits: list[Hit]) -> tuple[float, bool]:
    """Points one rule result costs, and whether it crosses a red line."""
    if outcome != FAIL:
        return 0.0, False
    weight = rubric.weight(rule_id)
    if weight.per == "hit" and hits:
        points = sum(rubric.severity.get(h.severity or "", weight.deduction) for h in hits)
    else:
        points = weight.deduction
    if weight.cap is not None:
        points = min(points, weight.cap)
    red = weight.red_line or (weight.red_line_severity is not None and any(
        _severity_rank(h.severity) >= _severity_rank(weight.red_line_severity) for h in hits))
    return float(points), red


def score_calls(rubric: Rubric, calls: Iterable[CallScore], rule_results: Iterable[RuleResult], hits: list[Hit],
                lexicon_version: str = "") -> tuple[list[CallScore], list[RuleResult]]:
    """Each call's score, passed and red_line, and each rule result's deduction.

    Deductions follow each result's ``final_outcome`` (after a reviewer's verdict,
    :mod:`pipeline.scoring.verdicts`), which is its ``outcome`` when nobody reviewed it.

    Calls whose status is not ``ok`` are never scored (their score stays None).

    Returns:
        New call scores and rule results (the given ones unchanged).
    """
    hits_by: dict[tuple[str, str], list[Hit]] = {}
    for hit in hits:
        hits_by.setdefault((hit.call_id, hit.rule_id), []).append(hit)
    totals: dict[str, list] = {}
    results = []
    for result in rule_results:
        final = result.final_outcome or result.outcome
        # the outcome after review: an overturned finding costs nothing, a miss a reviewer found costs
        points, red = deduction_for(rubric, result.rule_id, final, hits_by.get((result.call_id, result.rule_id), []))
        results.append(replace(result, final_outcome=final, deduction=points))
        total = totals.setdefault(result.call_id, [0.0, False])
        total[0] += points
        total[1] = total[1] or red
    scored = []
    for call in calls:
        versions = {"rubric_version": rubric.version, "lexicon_version": lexicon_version or call.lexicon_version}
        if call.status != STATUS_OK:
            scored.append(replace(call, score=None, passed=None, red_line=None, **versions))
            continue
        deducted, red = totals.get(call.call_id, (0.0, False))
        score = max(rubric.floor, rubric.start - deducted)
        scored.append(replace(call, score=round(score, 2), red_line=red,
                              passed=(not red) and score >= rubric.pass_mark, **versions))
    return scored, results

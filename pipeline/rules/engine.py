"""The rule engine: stored utterances and voice activity in, findings (hits) and rule results out.

Pure and fast: no audio, no model, no Prefect, no files. :func:`evaluate_calls` reads typed transcripts
(:class:`~pipeline.records.CallTranscript`, which the storage layer builds from a fresh result or from
rows as stored), so rescoring after a lexicon change never touches audio. Each rule of the lexicons runs as
its type's check (:mod:`pipeline.rules.checks`); its :class:`~pipeline.rules.checks.CheckResult`
becomes one :class:`~pipeline.records.RuleResult` and a :class:`~pipeline.records.Hit` per finding.

A rule that crashes on a call is a :class:`~pipeline.errors.RuleError` for that call: the call gets
no rule results at all and is not scored (it is recorded as failed at stage ``rules``), because a
score without one of its rules is wrong, and a crash must never pass as ``not_applicable``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Iterable

from ..errors import RuleError
from ..records import NOT_APPLICABLE, STATUS_OK, CallTranscript, Commitment, ErrorRecord, Hit, RuleResult
from ..text import match_key
from .checks import CHECKS, CallData, CheckResult
from .lexicon import COMPANY_PLACEHOLDER, Group, LexiconSet, RuleSpec, phrase_parts
from .matching import Finding, GroupMatcher, SoundKeys, UtteranceView, add_words, make_view

logger = logging.getLogger("callqa.rules")


class RuleEngine:
    """Compiled lexicons and rules, ready to evaluate calls. Build once per run."""

    def __init__(self, lexicons: LexiconSet):
        self.lexicons = lexicons
        self.sounds = SoundKeys(lexicons.equivalences)
        self._matchers: dict[tuple[str, str], GroupMatcher] = {}
        self._selected: dict[tuple[str, ...], list[Group]] = {}
        self._words_added = False

    def matchers(self, patterns: Iterable[str] | str, company: str) -> list[GroupMatcher]:
        """The matchers of the phrase groups ``patterns`` names, for one company name."""
        patterns = (patterns,) if isinstance(patterns, str) else tuple(patterns)
        groups = self._selected.get(patterns)
        if groups is None:
            groups = self._selected[patterns] = self.lexicons.select(list(patterns))
        result = []
        for group in groups:
            key = (group.id, company if any(COMPANY_PLACEHOLDER in p.text for p in group.phrases) else "")
            if key not in self._matchers:
                self._matchers[key] = GroupMatcher(group, self.sounds, company)
            result.append(self._matchers[key])
        return result

    @property
    def verify_options(self):
        """``rules.toml [verify]``: how stored checks on the audio decide phrase findings."""
        return self.lexicons.verify

    def score_model(self, name: str):
        """A score file the lexicons hold (``putonghua.toml``), read and checked when they loaded."""
        return self.lexicons.scores[name]

    def find(self, call: CallData, utterances: list[UtteranceView], patterns) -> list[Finding]:
        """Every phrase of the groups ``patterns`` names, found in ``utterances``."""
        if not self._words_added:  # lexicon phrases are words, for jieba's word boundaries
            add_words(match_key(part.replace(COMPANY_PLACEHOLDER, ""))
                      for g in self.lexicons.groups.values() for p in g.phrases for part in phrase_parts(p.text))
            self._words_added = True
        matchers = self.matchers(patterns, call.company)
        return [Finding(u, m) for u in utterances for matcher in matchers for m in matcher.find(u)]

    def evaluate(self, call: CallData) -> tuple[list[Hit], list[RuleResult], list[Commitment]]:
        """Run every rule on one call.

        Returns:
            ``(hits, results, commitments)``: one result per rule, one hit per finding, the follow-ups
            promised.

        Raises:
            RuleError: a rule crashed on this call (a bug in a rule, or options it cannot handle).
        """
        hits: list[Hit] = []
        results: list[RuleResult] = []
        commitments: list[Commitment] = []
        unknown = call.roles_unknown
        for spec in self.lexicons.rules:
            roles = {getattr(spec.options, "role", "any"), getattr(spec.options, "other", "any")} - {"any"}
            if unknown and (roles or spec.type == "hold"):  # about one role (holds: after the agent first
                # speaks), and who is who is not known: no guess
                results.append(RuleResult(call.call_id, call.agent_id, spec.rule_id, NOT_APPLICABLE, 0,
                                          unknown, self.lexicons.version))
                continue
            try:
                checked = CHECKS[spec.type](self, spec, call)
            except Exception as exc:
                logger.exception("rule %s crashed on call %s", spec.rule_id, call.call_id)
                raise RuleError(f"rule {spec.rule_id} crashed on call {call.call_id}: {type(exc).__name__}: {exc}; "
                                "the call is not scored (fix the rule, then `callqa rescore`)") from exc
            rule_hits = [_hit(call, spec, finding) for finding in checked.findings]
            hits.extend(rule_hits)
            commitments.extend(checked.commitments)
            result = RuleResult(call.call_id, call.agent_id, spec.rule_id, checked.outcome, len(rule_hits),
                                checked.evidence, self.lexicons.version)
            if checked.outcome != NOT_APPLICABLE:
                _place(result, checked, rule_hits)
            results.append(result)
        return hits, results, commitments


def _place(result: RuleResult, checked: CheckResult, rule_hits: list[Hit]) -> None:
    """Where the evidence of a rule result is in the call: the check's own span (a hold, an unanswered
    opening) or else its earliest finding, marked so that word-level hit times can refine it later."""
    if checked.span is not None:
        result.at_s, result.until_s = round(float(checked.span[0]), 3), round(float(checked.span[1]), 3)
    elif rule_hits:
        first = min(rule_hits, key=lambda h: h.start_s)
        result.at_s, result.until_s, result.moment_from_hits = first.start_s, first.end_s, True


def _hit(call: CallData, spec: RuleSpec, finding: Finding) -> Hit:
    view, match = finding
    start_s, end_s = view.span_time(match.start, match.end)
    return Hit(call.call_id, spec.rule_id, view.speaker, round(float(start_s), 3), round(float(end_s), 3), view.idx,
               match.phrase.text, view.span_text(match.start, match.end), match.kind, match.group.category,
               match.group.severity, match.start, match.end, margin=match.margin, rival=match.rival)


def moments_from_hits(results: Iterable[RuleResult], hits: Iterable[Hit]) -> list[RuleResult]:
    """The results, those that point at a finding moved to their earliest hit (after the hits were timed
    again from their words): new results, the given ones unchanged."""
    earliest: dict[tuple[str, str], Hit] = {}
    for hit in hits:
        key = (hit.call_id, hit.rule_id)
        if key not in earliest or hit.start_s < earliest[key].start_s:
            earliest[key] = hit
    moved = []
    for result in results:
        first = earliest.get((result.call_id, result.rule_id)) if result.moment_from_hits else None
        moved.append(replace(result, at_s=first.start_s, until_s=first.end_s) if first is not None else result)
    return moved


def evaluable(call: CallTranscript) -> bool:
    """A transcript the rules can read: transcribed fine, or failed only because a rule crashed on it
    (evaluated again, as the rule may be fixed now)."""
    return call.status == STATUS_OK or call.error_stage == RuleError.stage


@dataclass
class Evaluation:
    """The rules' verdicts on a set of calls.

    Attributes:
        hits: one per finding.
        results: one per call and rule, for every call evaluated without a crash.
        crashed: call id -> why a rule crashed on it (those calls have no hits or results).
        commitments: the follow-ups the agents promised (``commitment`` rules).
    """

    hits: list[Hit] = field(default_factory=list)
    results: list[RuleResult] = field(default_factory=list)
    crashed: dict[str, ErrorRecord] = field(default_factory=dict)
    commitments: list[Commitment] = field(default_factory=list)  # the follow-ups promised


def call_data(engine: RuleEngine, call: CallTranscript) -> CallData:
    """What the rules see of one call: its transcript, each utterance prepared for matching."""
    rows = sorted(call.utterances, key=lambda u: (u.start_s, u.utterance_idx))
    return CallData(call.call_id, call.agent_id, call.company, call.channels, call.duration_s,
                    [make_view(u, engine.sounds) for u in rows], list(call.voice), call.agent_language,
                    call.agent_language_prob, call.roles_confidence, call.agent_zh_prob, call.hangup_by,
                    call.started_at)


def evaluate_calls(engine: RuleEngine, calls: Iterable[CallTranscript]) -> Evaluation:
    """Evaluate every evaluable call (:func:`evaluable`); other failed calls get no rule results.

    Returns:
        The hits and results, each with its call's ``call_date``, and the calls a rule crashed on.
    """
    evaluation = Evaluation()
    for call in calls:
        if not evaluable(call):
            continue
        try:
            call_hits, call_results, promised = engine.evaluate(call_data(engine, call))
        except RuleError as exc:
            evaluation.crashed[call.call_id] = ErrorRecord(call.file or call.call_id, call.call_id, exc.stage,
                                                           type(exc).__name__, str(exc), call.started_at)
            continue
        for item in (*call_hits, *call_results, *promised):
            item.call_date = call.call_date
        evaluation.hits.extend(call_hits)
        evaluation.results.extend(call_results)
        evaluation.commitments.extend(promised)
    return evaluation

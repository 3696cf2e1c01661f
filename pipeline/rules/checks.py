"""The checks: one function per rule type, each returning one typed :class:`CheckResult`.

A check reads one call (:class:`CallData`: its utterances prepared for matching and each channel's
voice activity) with one rule's typed options, and says ``pass``, ``fail`` or ``not_applicable`` (the
rule cannot apply: no hold happened, nobody spoke), with the evidence in words and times, the phrases
it found, and, where the evidence is not a phrase (a hold, an unanswered opening, an interruption), the
span of the call it is about. Checks find phrases through the engine, which they know only as a
:class:`PhraseFinder`; they never raise on purpose, and a check that crashes is the engine's to report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from typing import Callable, Iterable, Protocol

from ..records import (FAIL, MIN_ROLE_CONFIDENCE, NOT_APPLICABLE, PASS, REVIEW, SPEAKER_AGENT, SPEAKER_CUSTOMER,
                       SPEAKER_UNKNOWN, Commitment, PhraseCheck)
from .details import KIND_NAMES, details_of, given_details, key_span, same_detail
from .lexicon import Group, Phrase, RuleSpec
from .matching import Finding, GroupMatcher, Match, UtteranceView, subject_words
from .options import (AnswerDelayOptions, CommitmentOptions, ConfirmOptions, DialectOptions, HangupOptions,
                      HoldOptions, InterruptionOptions, KeywordOptions, RegexOptions, ResponseOptions,
                      SequenceOptions, SpeechRateOptions, Window)
from .promises import clause_at, due_of
from .verification import NOT_SAID, SAID, CheckVerdict, VerifyOptions, decide


class PhraseFinder(Protocol):
    """What a check needs from the engine: the phrases of some groups found in some utterances."""

    verify_options: VerifyOptions

    def find(self, call: CallData, utterances: list[UtteranceView], patterns: Iterable[str]) -> list[Finding]: ...

    def matchers(self, patterns: Iterable[str], company: str) -> list[GroupMatcher]: ...

    def score_model(self, name: str): ...


@dataclass
class CallData:
    """What the rules see of one call: its utterances (prepared for matching) and voice activity."""

    call_id: str
    agent_id: str
    company: str
    channels: int | None
    duration_s: float | None
    utterances: list[UtteranceView]
    voice: list[tuple[str, float, float]] = field(default_factory=list)  # (speaker, start_s, end_s)
    agent_language: str | None = None
    agent_language_prob: float | None = None
    roles_confidence: float | None = None  # mono: how sure the agent is the agent (calls.roles_confidence)
    agent_zh_prob: float | None = None  # the model's p(zh) for the agent's speech (calls.agent_zh_prob)
    hangup_by: str | None = None  # who released the line, from the switch (calls.hangup_by)
    started_at: datetime | None = None  # when the call started (timezone-aware; promises count from it)

    @property
    def mono(self) -> bool:
        speakers = {u.speaker for u in self.utterances} | {v[0] for v in self.voice}
        return (self.channels == 1) or (bool(speakers) and speakers <= {SPEAKER_UNKNOWN})

    @property
    def roles_unknown(self) -> str | None:
        """Why who is the agent cannot be trusted on this call (None: it can): a mono recording whose
        voices were not split, or whose agent was found with too little confidence."""
        speakers = {u.speaker for u in self.utterances} | {v[0] for v in self.voice}
        if speakers and speakers <= {SPEAKER_UNKNOWN}:
            return "mono recording, voices not split: who is the agent is unknown"
        if self.mono and self.roles_confidence is not None and self.roles_confidence < MIN_ROLE_CONFIDENCE:
            return (f"mono recording: the agent's voice was found with confidence {self.roles_confidence:.2f} "
                    f"(below {MIN_ROLE_CONFIDENCE:g}): who said what is not trusted")
        return None

    def by_role(self, role: str) -> list[UtteranceView]:
        if role == "any":
            return list(self.utterances)
        return [u for u in self.utterances if u.speaker == role]

    def voice_of(self, role: str) -> list[tuple[float, float]]:
        if role == "any":
            return [(s, e) for _, s, e in self.voice]
        return [(s, e) for who, s, e in self.voice if who == role]


@dataclass(frozen=True)
class CheckResult:
    """One rule's verdict on one call.

    Attributes:
        outcome: ``pass``, ``fail`` or ``not_applicable``.
        evidence: why, in words, with times.
        findings: the phrases found that the verdict rests on (they become ``hits`` rows).
        span: the part of the call the evidence is about when it is not a phrase (a hold, the
            unanswered opening); None: the earliest finding, if any.
        commitments: the follow-ups promised (``commitment`` rules: the ``commitments`` table).
    """

    outcome: str
    evidence: str
    findings: list[Finding] = field(default_factory=list)
    span: tuple[float, float] | None = None
    commitments: list[Commitment] = field(default_factory=list)  # service.commitment_time: the promises


@dataclass(frozen=True)
class Hold:
    """A mutual silence of both channels after the agent first spoke."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def find_holds(call: CallData, min_silence_s: float) -> list[Hold]:
    """Mutual silences of at least ``min_silence_s`` between the agent's first speech and the last speech.

    Silence before the agent first speaks is the answer delay, not a hold; after the last speech the
    call is over.
    """
    regions = sorted(call.voice_of("any"))
    agent = call.voice_of(SPEAKER_AGENT) or [(u.start_s, u.end_s) for u in call.by_role(SPEAKER_AGENT)]
    if not regions or not agent:
        return []
    first_agent = min(s for s, _ in agent)
    holds, covered_until = [], None
    for start, end in regions:
        if covered_until is not None and start - covered_until >= min_silence_s and covered_until >= first_agent:
            holds.append(Hold(round(covered_until, 3), round(start, 3)))
        covered_until = end if covered_until is None else max(covered_until, end)
    return holds


def hold_context(call: CallData, hold: Hold, opts: HoldOptions) -> tuple[list[UtteranceView], list[UtteranceView]]:
    """The agent's utterances that may announce a hold (ending at most ``notice_within_s`` before it)
    and apologise for it (starting at most ``apology_within_s`` after it)."""
    agent = call.by_role(SPEAKER_AGENT)
    return ([u for u in agent if hold.start_s - opts.notice_within_s <= u.end_s <= hold.start_s + opts.edge_s],
            [u for u in agent if hold.end_s - opts.edge_s <= u.start_s <= hold.end_s + opts.apology_within_s])


def _quote(view: UtteranceView, limit: int = 24) -> str:
    text = view.text if len(view.text) <= limit else view.text[:limit] + "…"
    return f"{view.speaker} {view.start_s:.1f}s “{text}”"


def _span_of(views: list[UtteranceView]) -> tuple[float, float] | None:
    return (views[0].start_s, views[-1].end_s) if views else None


def _window(utterances: list[UtteranceView], window: Window | None) -> list[UtteranceView]:
    if window is None or not utterances:
        return utterances
    selected = utterances
    if window.first_utterances is not None:
        selected = selected[: int(window.first_utterances)]
    if window.last_utterances is not None:
        selected = selected[-int(window.last_utterances):]
    if window.first_s is not None:
        origin = utterances[0].start_s
        selected = [u for u in selected if u.start_s <= origin + window.first_s]
    if window.last_s is not None:
        end = utterances[-1].end_s
        selected = [u for u in selected if u.end_s >= end - window.last_s]
    return selected


def scope_of(call: CallData, role: str, window: Window | None) -> tuple[list[UtteranceView] | None, str]:
    """The utterances a phrase rule reads (its role, inside its window), or None (and why) when the
    role never spoke."""
    spoken = call.by_role(role)
    if not spoken:
        return None, f"no {role} speech"
    return _window(spoken, window), role


def _first_three(texts: list[str]) -> str:
    return "; ".join(texts[:3]) + (f" (+{len(texts) - 3} more)" if len(texts) > 3 else "")


def _how(match: Match) -> str:
    """How a finding matched: exact, sound_alike…, or what the audio said of it (verified: 您好 over 你好 by 1.9)."""
    if match.margin is None:
        return match.kind
    if match.margin >= 0:
        return f"{match.kind}: {match.phrase.text} over {match.rival} by {match.margin:.1f}"
    return f"{match.kind}: {match.rival} over {match.phrase.text} by {-match.margin:.1f}"


def _describe(items: list[Finding]) -> str:
    return _first_three([f"{m.phrase.text} ({_how(m)}) in {_quote(v)}" for v, m in items])


@dataclass
class Heard:
    """A phrase rule's findings sorted by what the audio said of them (their stored checks, see
    :mod:`pipeline.rules.verification`): said (confirmed on the audio, heard there though the transcript
    lacked it, or never checked: the transcript alone), unsure (a person should listen) and not said
    (the audio says its rival), each not-said finding with its verdict for the evidence."""

    said: list[Finding] = field(default_factory=list)
    unsure: list[Finding] = field(default_factory=list)
    not_said: list[tuple[Finding, CheckVerdict]] = field(default_factory=list)

    def describe_not_said(self) -> str:
        if not self.not_said:
            return ""
        return "; heard on the audio: " + _first_three(
            [f"{v.describe()} at {f.utterance.start_s:.1f}s" for f, v in self.not_said])


def _overlaps(check: PhraseCheck, match: Match) -> bool:
    return check.key_start < match.end and match.start < check.key_end


def hear(engine: PhraseFinder, call: CallData, scope: list[UtteranceView], patterns: Iterable[str],
         found: list[Finding], verify: bool) -> Heard:
    """Sort a rule's findings by their checks on the audio (``verify``: the rule asks; else, or with
    ``[verify] enabled = false``, every finding counts as said, the transcript alone). A check of a
    phrase of the rule's groups where no finding is (a sound-alike the transcript wrote: 新疆 for 请讲)
    adds the phrase when the audio says it (match kind ``acoustic``)."""
    options = engine.verify_options
    if not verify or not options.enabled:
        return Heard(list(found))
    matchers = engine.matchers(patterns, call.company)
    heard, used = Heard(), set()

    def phrase_of(text: str) -> tuple[Phrase, Group] | None:
        for matcher in matchers:
            phrase = matcher.phrase_for(text)
            if phrase is not None and phrase.kind == "phrase":
                return phrase, matcher.group
        return None

    def sort(view: UtteranceView, check: PhraseCheck, verdict: CheckVerdict, kind: str, fallback: Match | None) -> None:
        resolved = phrase_of(verdict.phrase)
        phrase, group = resolved if resolved else (fallback.phrase, fallback.group)
        match = Match(phrase, group, check.key_start, check.key_end,
                      kind if verdict.state == SAID else "unsure" if verdict.state != NOT_SAID else kind,
                      verdict.margin, verdict.rival)
        if verdict.state == SAID:
            heard.said.append(Finding(view, match))
        elif verdict.state == NOT_SAID:
            heard.not_said.append((Finding(view, match), verdict))
        else:
            heard.unsure.append(Finding(view, match))

    for finding in found:
        view, match = finding
        check = next((c for c in view.checks if _overlaps(c, match) and phrase_of(c.phrase) is not None), None)
        verdict = decide(check, options, phrase_of(check.phrase)[0].bias) if check is not None else None
        if verdict is None:  # never checked (no audio, a gapped phrase, a lexicon newer than the night)
            heard.said.append(finding)
            continue
        used.add(id(check))
        sort(view, check, verdict, "verified", match)
    for view in scope:
        for check in view.checks:
            resolved = phrase_of(check.phrase) if id(check) not in used else None
            if resolved is None:
                continue
            verdict = decide(check, options, resolved[0].bias)
            if verdict is not None:
                sort(view, check, verdict, "acoustic", None)
    for items in (heard.said, heard.unsure):
        items.sort(key=lambda f: (f.utterance.start_s, f.match.start))
    return heard


def _distinct(found: list[Finding]) -> list[Finding]:
    """One finding per stretch of speech, even when two groups of the rule catch it (喂 written as 喂,
    and 喂 heard at the start of a turn): the first group listed keeps it."""
    seen: set[tuple[int, int, int]] = set()
    distinct = []
    for finding in found:
        span = (id(finding.utterance), finding.match.start, finding.match.end)
        if span not in seen:
            seen.add(span)
            distinct.append(finding)
    return distinct


def _judge(mode: str, heard: Heard, min_hits: int, where: str, groups: list[str],
           scope: list[UtteranceView]) -> CheckResult:
    """The verdict of a phrase rule: ``none`` said, ``all`` groups said, or ``any`` (``min_hits``).

    One stretch of speech is one finding (:func:`_distinct`): it is counted, deducted and shown once.
    Whether each group was said (``all``) still counts every group's match. A verdict that would rest
    on findings the audio left unsure is ``review``, with those findings."""
    said, unsure = _distinct(heard.said), _distinct(heard.unsure)
    checked = heard.describe_not_said()
    if mode == "none":
        if said:
            return CheckResult(FAIL, f"{len(said)} hit(s): {_describe(said)}", said)
        if unsure:
            return CheckResult(REVIEW, f"unsure on the audio, a person should listen: {_describe(unsure)}", unsure)
        return CheckResult(PASS, f"none said in {where}{checked}")
    if mode == "all":
        said_groups = {m.group.id for _, m in heard.said}
        missing = [g for g in groups if g not in said_groups]
        if missing:
            unsure_groups = {m.group.id for _, m in heard.unsure}
            if all(g in unsure_groups for g in missing):
                return CheckResult(REVIEW, f"unsure on the audio: {_describe(unsure)}", unsure)
            return CheckResult(FAIL, f"missing {', '.join(missing)} in {where}{checked}", said)
        return CheckResult(PASS, _describe(said), said)
    if len(said) >= min_hits:
        return CheckResult(PASS, _describe(said), said)
    if len(said) + len(unsure) >= min_hits:
        return CheckResult(REVIEW, f"unsure on the audio, a person should listen: {_describe(unsure)}", said + unsure)
    quoted = " / ".join(f"“{v.text[:20]}”" for v in scope[:2])
    return CheckResult(FAIL, f"not said in {where}" + (f": {quoted}" if quoted else "") + checked, said,
                       _span_of(scope))


def check_keyword(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    opts: KeywordOptions = spec.options
    scope, role = scope_of(call, opts.role, opts.window)
    if scope is None:
        return CheckResult(NOT_APPLICABLE, role)
    found = engine.find(call, scope, opts.lexicon)
    where = f"{len(scope)} {role} utterance(s)"
    if scope:
        where += f" {scope[0].start_s:.1f}-{scope[-1].end_s:.1f}s"
    return _judge(opts.mode, hear(engine, call, scope, opts.lexicon, found, opts.verify), opts.min_hits, where,
                  groups=[m.group.id for m in engine.matchers(opts.lexicon, call.company)], scope=scope)


def check_regex(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    opts: RegexOptions = spec.options
    scope, role = scope_of(call, opts.role, opts.window)
    if scope is None:
        return CheckResult(NOT_APPLICABLE, role)
    pattern = re.compile(opts.pattern)
    exclude = re.compile(opts.exclude) if opts.exclude else None
    group = Group(spec.rule_id, (), spec.rule_id, "中", None, 0, spec.source)
    phrase = Phrase(spec.rule_id, opts.pattern, (), False, True, "phrase", spec.source)
    found = []
    for view in scope:
        if exclude is not None and exclude.search(view.text):
            continue
        for m in pattern.finditer(view.text):
            start = sum(1 for p in view.key_pos if p < m.start())
            end = max(start + 1, sum(1 for p in view.key_pos if p < m.end()))
            found.append(Finding(view, Match(phrase, group, start, min(end, len(view.key)), "regex")))
    return _judge(opts.mode, Heard(found), 1, f"{len(scope)} {role} utterance(s)", [group.id], scope)


def check_sequence(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    opts: SequenceOptions = spec.options
    spoken = call.by_role(opts.role)
    after = engine.find(call, spoken, opts.after)
    if not after:
        return CheckResult(NOT_APPLICABLE, "the anchor phrase was not said")
    before = engine.find(call, spoken, opts.before)
    position = {id(v): i for i, v in enumerate(spoken)}
    missing = []
    for view, match in after:
        ok = False
        for bview, bmatch in before:
            if bview.start_s > view.start_s or (bview is view and bmatch.start >= match.start):
                continue
            if opts.within_s is not None and view.start_s - bview.end_s > opts.within_s:
                continue
            if (opts.within_utterances is not None
                    and position[id(view)] - position[id(bview)] > opts.within_utterances):
                continue
            ok = True
        if not ok:
            missing.append(Finding(view, match))
    if missing:
        return CheckResult(FAIL, "not preceded as required: " + "; ".join(_quote(v) for v, _ in missing[:3]),
                           missing)
    return CheckResult(PASS, f"{len(after)} anchor(s), each preceded as required", after)


def check_hold(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    opts: HoldOptions = spec.options
    holds = find_holds(call, opts.min_silence_s)
    if not holds:
        return CheckResult(NOT_APPLICABLE, f"no mutual silence of {opts.min_silence_s} s or more")
    listed = ", ".join(f"{h.start_s:.1f}-{h.end_s:.1f}s ({h.duration_s:.0f} s)" for h in holds)
    if opts.check == "duration":
        long = [h for h in holds if h.duration_s > opts.max_s]
        if long:
            return CheckResult(FAIL, f"hold over {opts.max_s} s: " + ", ".join(
                f"{h.start_s:.1f}-{h.end_s:.1f}s ({h.duration_s:.0f} s)" for h in long), [],
                (long[0].start_s, long[0].end_s))
        return CheckResult(PASS, f"hold(s) {listed}, none over {opts.max_s} s", [], (holds[0].start_s, holds[0].end_s))
    found, problems, unsure = [], [], []
    for hold in holds:
        before, after = hold_context(call, hold, opts)
        notice = hear(engine, call, before, opts.notice, engine.find(call, before, opts.notice), opts.verify)
        apology = (hear(engine, call, after, opts.apology, engine.find(call, after, opts.apology), opts.verify)
                   if opts.apology else Heard())
        found.extend(notice.said + apology.said)
        label = f"hold {hold.start_s:.1f}-{hold.end_s:.1f}s"
        for heard, what, needed in ((notice, "announced", True), (apology, "apologised for", opts.require_apology)):
            if not needed or heard.said:
                continue
            if heard.unsure:
                unsure.append((hold, f"{label} {what}? unsure on the audio: {_describe(heard.unsure)}", heard.unsure))
            else:
                problems.append((hold, f"{label} not {what}{heard.describe_not_said()}"))
    if problems:
        first = problems[0][0]
        return CheckResult(FAIL, "; ".join(text for _, text in problems), found, (first.start_s, first.end_s))
    if unsure:
        first = unsure[0][0]
        return CheckResult(REVIEW, "; ".join(text for text_hold, text, _ in unsure),
                           [f for *_, items in unsure for f in items], (first.start_s, first.end_s))
    return CheckResult(PASS, f"{listed}: announced" + (" and apologised for" if opts.require_apology else ""),
                       found, (holds[0].start_s, holds[0].end_s))


def check_speech_rate(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    opts: SpeechRateOptions = spec.options
    spoken = call.by_role(opts.role)
    seconds = sum(u.end_s - u.start_s for u in spoken)
    if seconds < opts.min_speech_s:
        return CheckResult(NOT_APPLICABLE, f"only {seconds:.1f} s of {opts.role} speech")
    cpm = sum(len(u.key) for u in spoken) / seconds * 60
    verdict = PASS if opts.min_cpm <= cpm <= opts.max_cpm else FAIL
    example = spoken[0]  # a pass points at the first utterance, a failure at the utterance furthest off the band
    if verdict == FAIL:
        sign = 1 if cpm > opts.max_cpm else -1
        example = max(spoken, key=lambda u: sign * len(u.key) / max(u.end_s - u.start_s, 0.1))
    return CheckResult(verdict, f"{cpm:.0f} characters per minute over {seconds:.0f} s "
                                f"(band {opts.min_cpm}-{opts.max_cpm})", [], (example.start_s, example.end_s))


def check_interruption(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    opts: InterruptionOptions = spec.options
    role, other = opts.role, opts.other
    if call.mono:
        return _interruption_mono(spec, call)
    interrupter, interrupted = call.by_role(role), call.by_role(other)
    if not interrupter or not interrupted:
        return CheckResult(NOT_APPLICABLE, f"needs both {role} and {other} speech")
    events = []
    for u in interrupter:
        for o in interrupted:
            if o.start_s < u.start_s < o.end_s:
                overlap = min(o.end_s, u.end_s) - u.start_s
                if overlap > opts.tolerance_s:
                    events.append((u, o, overlap))
    if events:
        text = "; ".join(f"{role} started at {u.start_s:.1f}s while {other} spoke until {o.end_s:.1f}s "
                         f"({ov:.1f} s over)" for u, o, ov in events[:3])
        first, _, overlap = events[0]
        return CheckResult(FAIL, text, [], (first.start_s, first.start_s + overlap))
    return CheckResult(PASS, f"no {role} start over {other} speech beyond {opts.tolerance_s} s")


def _interruption_mono(spec: RuleSpec, call: CallData) -> CheckResult:
    """Interruption on a mono recording whose voices were split: one voice of the mix cannot be heard
    under the other, so how long they overlapped cannot be measured. What can be seen: the voice
    changes from ``other`` to ``role`` inside continuous sound, with no pause between them (the split
    cuts voice activity at every pause; two regions that touch were cut where the voice changed)."""
    opts: InterruptionOptions = spec.options
    role, other = opts.role, opts.other
    mine, theirs = call.voice_of(role), call.voice_of(other)
    if not mine or not theirs:
        return CheckResult(NOT_APPLICABLE, f"needs both {role} and {other} speech")
    ends = {round(e, 2): (s, e) for s, e in theirs}
    events = [(s, ends[round(s, 2)]) for s, _ in mine if round(s, 2) in ends]
    if events:
        text = "; ".join(f"{role} started at {s:.1f}s with no pause after {other} speech from {o[0]:.1f}s"
                         for s, o in events[:3])
        first = events[0][0]
        return CheckResult(FAIL, text + " (mono: speech over speech is seen as a change of voice without a "
                           "pause; how long they overlapped cannot be measured)", [],
                           (max(0.0, first - 1.0), first + 1.0))
    return CheckResult(PASS, f"mono: every {role} turn after {other} speech began after a pause")


def check_answer_delay(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    opts: AnswerDelayOptions = spec.options
    agent = call.by_role(SPEAKER_AGENT)
    voice = call.voice_of(SPEAKER_AGENT)
    first = min([s for s, _ in voice] + [u.start_s for u in agent[:1]], default=None)
    if first is None:
        return CheckResult(FAIL, "the agent never spoke", [], (0.0, call.duration_s or 0.0))
    if first <= opts.max_s:
        return CheckResult(PASS, f"first agent speech at {first:.1f}s", [], (0.0, first))
    apology = engine.find(call, agent[:1], opts.apology) if opts.apology else []
    if apology:
        return CheckResult(PASS, f"first agent speech at {first:.1f}s, with an apology: {_quote(agent[0])}",
                           apology, (0.0, first))
    return CheckResult(FAIL, f"first agent speech at {first:.1f}s (limit {opts.max_s} s), no apology" + (
        f": {_quote(agent[0])}" if agent else ""), [], (0.0, first))


def check_dialect(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    """Putonghua, not dialect or another language. In this order: the model's language identification
    (where it can name a dialect), marker words, then how the speech sounds (``score_file``): the
    utterances scored below the threshold, if they last ``min_duration_s`` in all, fail the rule or
    mark it for review, each a finding naming its probability and the signal that weighed most."""
    opts: DialectOptions = spec.options
    spoken = call.by_role(opts.role)
    heard_outcome = FAIL if opts.action == "fail" else REVIEW  # what speech heard as not Putonghua does
    regions = call.voice_of(opts.role)
    voiced = sum(e - s for s, e in regions)
    if opts.score_file and not call.mono and opts.untranscribed_s and regions:
        unwritten = [max(0.0, end - start - sum(max(0.0, min(end, u.end_s) - max(start, u.start_s)) for u in spoken))
                     for start, end in regions]  # seconds of each region no utterance covers
        seconds = sum(unwritten)
        if seconds >= opts.untranscribed_s and seconds >= opts.untranscribed_share * voiced:
            start, end = regions[unwritten.index(max(unwritten))]
            return CheckResult(heard_outcome,
                               f"{seconds:.1f} s of {voiced:.1f} s of {opts.role} speech heard as not Putonghua: "
                               "the speech model wrote nothing of it (its readings dropped as no speech, "
                               "repetition or low confidence)", [], (start, end))
    voiced = voiced or sum(u.end_s - u.start_s for u in spoken)
    if (call.agent_zh_prob is not None and call.agent_zh_prob < opts.min_zh_prob and opts.role == "agent"
            and voiced >= opts.min_duration_s):
        return CheckResult(heard_outcome,
                           f"the speech model's language identification gives {voiced:.1f} s of agent speech "
                           f"p(zh)={call.agent_zh_prob:.2f} (below {opts.min_zh_prob:g}): heard as another "
                           "language or a dialect", [], _span_of(spoken[:1]) or (regions[0] if regions else None))
    if not spoken:
        return CheckResult(NOT_APPLICABLE, f"no {opts.role} speech")
    found = engine.find(call, spoken, opts.lexicon)
    language, probability = call.agent_language, call.agent_language_prob
    if (language and language in opts.languages and probability is not None
            and probability >= opts.min_language_prob):
        return CheckResult(FAIL, f"the speech model identified the agent's speech as {language} "
                                 f"(p={probability:.2f})", found, _span_of(spoken[:1]))
    markers = sorted({(m.group.dialect or m.group.id, m.phrase.text) for _, m in found})
    if len(markers) >= opts.min_markers:
        return CheckResult(FAIL, f"{len(markers)} dialect marker(s): "
                                 + ", ".join(f"{w} ({d})" for d, w in markers[:8]), found)
    detail = f" (below the threshold of {opts.min_markers}: {markers[0][1]})" if markers else ""
    if not opts.score_file:
        return CheckResult(PASS, f"no dialect markers in {len(spoken)} utterance(s){detail}", found)
    if all(u.avg_logprob is None for u in spoken) and call.agent_zh_prob is None and not language:
        # an imported transcript (or a typed dialogue) without the speech model's statistics: how the
        # speech sounded cannot be judged, and no dialect word alone does not make it Putonghua
        return CheckResult(NOT_APPLICABLE, f"no dialect markers in {len(spoken)} utterance(s){detail}, but how the "
                                           "speech sounded cannot be judged: the transcript carries none of the "
                                           "speech model's confidence statistics or language identification",
                           found)
    heard, scored = _not_putonghua(engine.score_model(opts.score_file), spec, spoken, opts.threshold)
    seconds = sum(f.utterance.end_s - f.utterance.start_s for f in heard)
    if heard and seconds >= opts.min_duration_s:
        return CheckResult(heard_outcome,
                           f"{seconds:.1f} s of {opts.role} speech heard as not Putonghua "
                           f"({len(heard)} of {scored} scored utterance(s)): "
                           + _first_three([f"{_quote(f.utterance)} {f.match.phrase.text}" for f in heard]),
                           found + heard, (heard[0].utterance.start_s, heard[0].utterance.end_s))
    below = (f"; {seconds:.1f} s heard as not Putonghua, under the {opts.min_duration_s:g} s that count: "
             + _quote(heard[0].utterance)) if heard else ""
    return CheckResult(PASS, f"no dialect markers in {len(spoken)} utterance(s){detail}; "
                             f"{scored} scored utterance(s) heard as Putonghua{below}", found)


SIGNAL_NAMES = {"avg_logprob": "低置信度 avg_logprob", "no_speech_prob": "no_speech_prob",
                "word_prob_mean": "词概率低 word prob", "word_prob_min": "最低词概率 word prob min",
                "coverage": "不成词 coverage", "lm_per_char": "语言模型 lm_per_char",
                "compression_ratio": "重复 compression_ratio", "latin_share": "拉丁字母 latin_share",
                "chars_per_s": "语速 chars_per_s"}


def _not_putonghua(model, spec: RuleSpec, spoken: list[UtteranceView],
                   threshold: float | None) -> tuple[list[Finding], int]:
    """The utterances scored as not Putonghua, each a finding whose phrase names its probability and
    the signal that pulled it down most, and how many utterances were scored."""
    from .putonghua import utterance_features

    limit = model.threshold if threshold is None else threshold
    group = Group(spec.rule_id, (), "非普通话", "中", None, 0, spec.source)
    heard, scored = [], 0
    for view in spoken:
        if not view.key or view.avg_logprob is None or not model.scorable(view.text):
            continue  # too short to judge, or never heard (a typed dialogue: no decoder signals)
        scored += 1
        features = utterance_features(view, model.weights)
        p, contributions = model.probability(features)
        if p >= limit:
            continue
        signal, _ = min(contributions.items(), key=lambda item: item[1])
        value = features.get(signal)
        label = f"p(普通话)={p:.3f}<{limit:g}, {SIGNAL_NAMES.get(signal, signal)}={value:.2f}"
        phrase = Phrase(spec.rule_id, label, (), False, False, "phrase", spec.source)
        heard.append(Finding(view, Match(phrase, group, 0, len(view.key), "acoustic")))
    return heard, scored


_QUESTION_MARKS = ("?", "？")
_SENTENCE_END = r"(?=[\s,.!?;:，。！？；：、…~～]|$)"


def is_question(text: str, endings: Iterable[str]) -> bool:
    """A question by its form: a question mark (Whisper writes them), or a sentence that ends in a
    question particle (吗, 呢), punctuation or not."""
    if any(mark in text for mark in _QUESTION_MARKS):
        return True
    endings = [e for e in endings if e]
    return bool(endings) and re.search("(?:" + "|".join(map(re.escape, endings)) + ")" + _SENTENCE_END, text) is not None


def _has_content(engine: PhraseFinder, call: CallData, view: UtteranceView, fillers: tuple[str, ...]) -> bool:
    """Whether an utterance says something beyond filler words (嗯, 啊): at least one letter or digit
    outside every filler found in it."""
    if not fillers:
        return bool(view.key)
    covered = set()
    for _, match in engine.find(call, [view], fillers):
        covered.update(range(match.start, match.end))
    return len(view.key) > len(covered)


def _changes_subject(engine: PhraseFinder, call: CallData, reply: UtteranceView, asked: list[UtteranceView],
                     opts: ResponseOptions) -> bool:
    """A reply that opens another subject (a phrase of ``off_subject``: 给您推荐, 我们最近有个活动) and
    shares no subject word (:func:`subject_words`, compared by sound) with what was asked."""
    if not opts.off_subject or not engine.find(call, [reply], opts.off_subject):
        return False
    for view in asked:
        skip = {i for f in (engine.find(call, [view], opts.trigger) if opts.trigger else [])
                for i in range(f.match.start, f.match.end)}
        if any(view.sound[s:e] in reply.sound for s, e in subject_words(view, opts.subject_idf, skip)):
            return False
    return True


def check_response(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    """Every utterance of ``role`` that calls for a response (a question by its form, a phrase of
    ``trigger``) gets one from ``other``: the first of their later utterances (the next
    ``within_turns``) with content (and a ``response`` phrase, if the rule names some), starting at
    most ``within_s`` after ``role`` stopped speaking. The evidence pairs each trigger with what
    followed it, with times."""
    opts: ResponseOptions = spec.options
    spoken, others = call.by_role(opts.role), call.by_role(opts.other)
    found: dict[int, Finding] = {}  # each trigger utterance's earliest trigger phrase
    for finding in sorted(engine.find(call, spoken, opts.trigger) if opts.trigger else [], key=lambda f: f.match.start):
        found.setdefault(id(finding.utterance), finding)
    question_group = Group(spec.rule_id, (), "问询", "中", None, 0, spec.source)
    question_phrase = Phrase(spec.rule_id, "？", (), False, True, "phrase", spec.source)
    triggers: list[Finding] = []
    for view in spoken:
        if id(view) in found:
            triggers.append(found[id(view)])
        elif opts.questions and is_question(view.text, opts.question_endings) and view.key:
            triggers.append(Finding(view, Match(question_phrase, question_group, 0, len(view.key), "question")))
    if not triggers:
        what = "question" if opts.questions else f"{'/'.join(opts.trigger)} phrase"
        return CheckResult(NOT_APPLICABLE, f"no {opts.role} {what} in {len(spoken)} utterance(s)")
    answered, missed = [], []
    for trigger in triggers:
        view = trigger.utterance
        later = [u for u in others if u.start_s > view.start_s]
        if opts.within_turns is not None:
            later = later[: opts.within_turns]
        response = elsewhere = None  # the first reply that responds; the first that changed the subject
        for u in later:
            if not _has_content(engine, call, u, opts.fillers) or (opts.response and not engine.find(call, [u], opts.response)):
                continue
            if not _changes_subject(engine, call, u, [v for v in spoken if view.start_s <= v.start_s < u.start_s], opts):
                response = u
                break
            elsewhere = elsewhere or u
        if response is None and elsewhere is not None:
            missed.append((trigger, f"{_quote(view)} → changed the subject: {_quote(elsewhere)}"))
            continue
        if response is not None and opts.within_s is not None:
            stopped = max([v.end_s for v in spoken if view.start_s <= v.start_s and v.end_s <= response.start_s],
                          default=view.end_s)
            if response.start_s - stopped > opts.within_s:
                missed.append((trigger, f"{_quote(view)} → {_quote(response)}, "
                                        f"{response.start_s - stopped:.1f} s later (limit {opts.within_s:g} s)"))
                continue
        if response is None:
            limit = f" in {opts.other}'s next {opts.within_turns} utterance(s)" if opts.within_turns else ""
            what = "response" if not opts.response else f"{'/'.join(opts.response)} phrase"
            missed.append((trigger, f"{_quote(view)} → no {what}{limit}"
                           + (f" (next: {_quote(later[0])})" if later else f" ({opts.other} never spoke again)")))
            continue
        answered.append((trigger, f"{_quote(view)} → {_quote(response)}"))
    if missed:
        first = missed[0][0].utterance
        return CheckResult(FAIL, f"{len(missed)} of {len(triggers)} without a response: "
                           + _first_three([text for _, text in missed]),
                           [t for t, _ in missed], (first.start_s, first.end_s + (opts.within_s or 0.0)))
    return CheckResult(PASS, f"{len(answered)} of {len(triggers)} responded to: "
                       + _first_three([text for _, text in answered]), [t for t, _ in answered])


def check_confirm(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    """The agent repeats back the details the customer gives (001 四.7 重复一遍电话内容中的重要内容…电话号码、
    姓名、联系地址、咨询事项; 002 待客户叙述完后，复述): every number, date or time, amount and address of
    ``role`` (:mod:`pipeline.rules.details`) is repeated by ``other`` later in the call (numbers compared
    digit by digit through their keyed codes, so masking does not hide a repetition; one misheard digit
    and 尾号 allowed) or checked with a ``confirm`` phrase in ``other``'s next ``within_turns``
    utterances. A detail ``other`` said first is the customer reading back, not one to confirm. Not
    applicable when no detail is given. The evidence pairs each detail with its confirmation."""
    opts: ConfirmOptions = spec.options
    spoken, others = call.by_role(opts.role), call.by_role(opts.other)
    theirs = {id(view): details_of(view) for view in others}  # each utterance read once
    said_by_other = [(view, d) for view in others for d in theirs[id(view)] if d.kind in opts.kinds]
    given = []
    for view in spoken:
        for detail in given_details(view):
            if detail.kind in opts.kinds and not any(
                    o.start_s < view.start_s and same_detail(detail, d) for o, d in said_by_other):
                given.append((view, detail))
    if not given:
        return CheckResult(NOT_APPLICABLE, f"no detail to confirm (a number, date, time, amount or address) in "
                                           f"{len(spoken)} {opts.role} utterance(s)")
    group = Group(spec.rule_id, (), "复述确认", "中", None, 0, spec.source)
    confirmed, missed = [], []
    for view, detail in given:
        later = [o for o in others if o.start_s > view.start_s or (o.start_s == view.start_s and o.idx > view.idx)]
        repeat = next((o for o in later for d in theirs[id(o)] if same_detail(detail, d)), None)
        asked = next((o for o in later[: opts.within_turns] if engine.find(call, [o], opts.confirm)), None)
        name = KIND_NAMES[detail.kind]
        start, end = key_span(view, detail.start, detail.end)
        finding = Finding(view, Match(Phrase(spec.rule_id, name, (), False, True, "detail", spec.source),
                                      group, start, end, "detail"))
        said = f"{name} “{view.text[detail.start:detail.end]}” ({view.speaker} {view.start_s:.1f}s)"
        if repeat is not None or asked is not None:
            how = (f"repeated back: {_quote(repeat)}" if repeat is not None and (asked is None or
                                                                                repeat.start_s <= asked.start_s)
                   else f"asked to confirm: {_quote(asked)}")
            confirmed.append((finding, f"{said} → {how}"))
        else:
            missed.append((finding, f"{said} → not repeated or confirmed"
                                    + (f" (next: {_quote(later[0])})" if later else f" ({opts.other} never spoke again)")))
    if missed:
        first = missed[0][0].utterance
        return CheckResult(FAIL, f"{len(missed)} of {len(given)} detail(s) not confirmed: "
                           + _first_three([text for _, text in missed]), [f for f, _ in missed],
                           (first.start_s, first.end_s))
    return CheckResult(PASS, f"{len(confirmed)} of {len(given)} detail(s) confirmed: "
                       + _first_three([text for _, text in confirmed]), [f for f, _ in confirmed])


def check_commitment(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    """Promised follow-ups within the time limits (000 一、回复时效: 24 h for ordinary matters, 48 h when
    other departments must act, 72 h across provinces; every promise answered). Each promise of
    ``role`` (a ``promise`` phrase) is read with the time said in its clause (:mod:`pipeline.rules.promises`),
    counted from the call's start in ``timezone``; the limit is the matter's, from the agent's words in
    the call. A promise beyond its limit fails; one without any time (尽快, or none) says ``review``: a
    person checks it against the ticket. Not applicable when nothing is promised."""
    opts: CommitmentOptions = spec.options
    spoken = call.by_role(opts.role)
    found = sorted(engine.find(call, spoken, opts.promise), key=lambda f: (f.utterance.start_s, f.match.start))
    if not found:
        return CheckResult(NOT_APPLICABLE, f"no follow-up promised in {len(spoken)} {opts.role} utterance(s)")
    start = (call.started_at.astimezone(ZoneInfo(opts.timezone)).replace(tzinfo=None) if call.started_at is not None
             else None)
    if engine.find(call, spoken, opts.provinces):
        matter, limit = "across provinces", opts.provinces_h
    elif engine.find(call, spoken, opts.departments):
        matter, limit = "other departments", opts.departments_h
    else:
        matter, limit = "ordinary", opts.ordinary_h
    promises, seen = [], set()
    for finding in found:
        view = finding.utterance
        position = view.key_pos[finding.match.start] if finding.match.start < len(view.key_pos) else 0
        clause = clause_at(view.text, position)
        if (view.idx, clause) in seen:  # two promise phrases in one clause: one promise
            continue
        seen.add((view.idx, clause))
        text = view.text[clause[0]:clause[1]]
        due = due_of(text, start)
        promises.append((finding, text, due))
    records = [_commitment(call, spec, f, t, d, matter, limit) for f, t, d in promises]
    late = [(f, t, d) for f, t, d in promises if d.hours is not None and d.hours > limit]
    open_ = [(f, t, d) for f, t, d in promises if d.hours is None]

    def said(finding, text, due):
        when = ("no time said" if due.hours is None else f"“{due.words}”: soon" if due.soon
                else f"“{due.words}”: {round(due.hours, 2):g} h after the call started")
        return f"{finding.utterance.speaker} {finding.utterance.start_s:.1f}s “{text}” ({when})"

    where = f"{matter} matter, limit {limit:g} h"
    if late:
        first = late[0][0].utterance
        return CheckResult(FAIL, f"{len(late)} of {len(promises)} promise(s) beyond the limit ({where}): "
                           + _first_three([said(*p) for p in late]), [f for f, _, _ in late],
                           (first.start_s, first.end_s), records)
    if open_:
        return CheckResult(REVIEW, f"{len(open_)} of {len(promises)} promise(s) without a time ({where}; check the "
                           f"ticket): " + _first_three([said(*p) for p in open_]), [f for f, _, _ in open_],
                           commitments=records)
    return CheckResult(PASS, f"{len(promises)} promise(s) within the limit ({where}): "
                       + _first_three([said(*p) for p in promises]), [f for f, _, _ in promises], commitments=records)


def _commitment(call: CallData, spec: RuleSpec, finding: Finding, text: str, due, matter: str,
                limit: float) -> Commitment:
    """A promise as a ``commitments`` row (its call id, agent and date are the engine's to fill)."""
    view = finding.utterance
    start_s, end_s = view.span_time(finding.match.start, finding.match.end)
    asked = [u for u in call.utterances if u.speaker != view.speaker and u.start_s < view.start_s]
    due_at = (call.started_at + timedelta(hours=due.hours) if call.started_at is not None and due.hours is not None
              else None)
    return Commitment(call.call_id, call.agent_id, spec.rule_id, view.idx, round(float(start_s), 3),
                      round(float(end_s), 3), text, finding.match.phrase.text, due.words or None,
                      None if due.hours is None else round(due.hours, 2), due_at, matter, float(limit), None if due.hours is None else due.hours <= limit,
                      asked[-1].text if asked else None)


def check_hangup(engine: PhraseFinder, spec: RuleSpec, call: CallData) -> CheckResult:
    """The customer hangs up first (001 四.8 确认对方先挂; 000 第一篇): read from the switch's call record
    (the manifest's ``hangup_by``), which alone knows who released the line. Without it, or when
    neither party released it (the system, a transfer, a dropped line), the rule is not applicable and
    says why. The evidence points at the call's last seconds."""
    opts: HangupOptions = spec.options
    who = call.hangup_by
    if who is None:
        return CheckResult(NOT_APPLICABLE, "who released the line is not known: the manifest gives no hangup_by "
                                           "(the switch's call record)")
    if who not in (SPEAKER_AGENT, SPEAKER_CUSTOMER):
        return CheckResult(NOT_APPLICABLE, f"the line was released by neither party (hangup_by: {who}: the system, "
                                           "a transfer or a dropped line)")
    end = call.duration_s if call.duration_s is not None else max((u.end_s for u in call.utterances), default=0.0)
    span = (max(0.0, end - 5.0), end)
    names = {SPEAKER_AGENT: "the agent", SPEAKER_CUSTOMER: "the customer"}
    if who == opts.first:
        return CheckResult(PASS, f"{names[who]} hung up first, as the switch recorded (hangup_by: {who})", span=span)
    return CheckResult(FAIL, f"{names[who]} released the line before {names[opts.first]} did "
                             f"(the switch's record, hangup_by: {who})", span=span)


Check = Callable[[PhraseFinder, RuleSpec, CallData], CheckResult]

CHECKS: dict[str, Check] = {
    "keyword": check_keyword,
    "regex": check_regex,
    "sequence": check_sequence,
    "hold": check_hold,
    "speech_rate": check_speech_rate,
    "interruption": check_interruption,
    "answer_delay": check_answer_delay,
    "dialect": check_dialect,
    "response": check_response,
    "hangup": check_hangup,
    "confirm": check_confirm,
    "commitment": check_commitment,
}

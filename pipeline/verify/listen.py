"""The second listening of one call: which phrases its verdicts rest on, and what the audio says of them.

While a night still has a recording's audio, :class:`PhraseVerifier` runs the rules that say
``verify = true`` on the fresh transcript (the rule engine, exactly as the second half will) and asks
the audio about what their verdicts rest on:

- every phrase a ``none`` rule found (each forbidden phrase, each bare 喂: any one fails the call);
- the phrases an ``any`` rule found, in time order, until enough are heard (one 谢谢 heard is enough);
  when none is, the places where a sound-alike of a phrase stands (the lexicon's ``confusable=`` or a
  pinyin neighbour: 新疆 where the opening's 请讲 should be), up to three;
- the same for each hold's notice and apology.

A phrase is asked about where the transcript may be wrong: where it wrote something else (a sound-alike,
a stand-in, a confusable), where the phrase is one the lexicon names confusables for (您好, 请讲, 稍候,
再见, 喂), or where it is in the decoder's prompt (the prompt makes Whisper write its words). A phrase
written as it is, confused with nothing the lexicon knows and not the prompt's (谢谢, 不知道) is left to
the transcript: measured, the audio never overturned one (docs/rules-and-scoring.md).

Each answer is a :class:`~pipeline.records.PhraseCheck` on its utterance (``utterances.checks``): the
rules decide from it (:mod:`pipeline.rules.verification`), tonight and at every rescore, without audio.
A phrase the transcript wrote as an accepted stand-in (你好 for 您好, ``kind=asr_variant``) is asked
as the phrase it stands for, so the prompt's habit of writing 您好 and the model's of writing 你好 both
give way to what was said.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np

from ..config import VerifyOptions
from ..records import CallResult, CallTranscript, PhraseCheck
from ..rules.checks import CallData, find_holds, hold_context, scope_of
from ..rules.engine import RuleEngine, call_data
from ..rules.lexicon import COMPANY_PLACEHOLDER, Phrase, RuleSpec, phrase_parts
from ..rules.matching import Finding, GroupMatcher, UtteranceView, word_offsets
from ..rules.verification import SAID, decide
from ..text import match_key
from ..transcribe.speech import PhraseScorer as Scorer
from .rivals import near, rivals, syllables

logger = logging.getLogger("callqa.verify")

CANDIDATES = 3  # places of a sound-alike asked about, per phrase that must be said and was not found
CLIP_TAIL_S = 0.3  # audio kept after the utterance's last word


class Clips(Protocol):
    """A recording's audio, cut for the second listening: one clip per (speaker, start_s, end_s), with
    the other voices of a mono recording silenced."""

    def cut(self, spans: Sequence[tuple[str, float, float]]) -> list[np.ndarray]: ...


@dataclass
class Ask:
    """One question for the audio: was ``phrase`` said at key characters ``key_start:key_end`` of
    ``view``, where the transcript has ``heard``?"""

    view: UtteranceView
    phrase: str
    key_start: int
    key_end: int
    heard: str
    rivals: list[str]
    prefix: str
    clip_start_s: float
    clip_end_s: float
    bias: float | None = None  # the phrase's bias= in the lexicon (None: [verify] default_bias)

    @property
    def key(self) -> tuple[int, int, int, str]:
        return self.view.idx, self.key_start, self.key_end, self.phrase


@dataclass
class Need:
    """What a verdict needs heard: ``count`` of ``asks`` said (0: every one asked, a ``none`` rule)."""

    count: int
    asks: list[Ask] = field(default_factory=list)


class PhraseVerifier:
    """Checks a call's phrase findings on its audio. Build once per worker (lexicons compiled once)."""

    def __init__(self, engine: RuleEngine, scorer: Scorer | Callable[[], Scorer], options: VerifyOptions,
                 prompt: str = ""):
        self.engine = engine
        self._scorer = scorer  # or what makes it, on the first check (the model is only touched then)
        self.options = options
        self.prompt = prompt  # the decoder's prompt ({company} unresolved): what it may have written unsaid

    def __call__(self, result: CallResult, clips: Clips) -> None:
        """Ask the audio about what the call's verdicts rest on; the checks go onto its utterances."""
        clock = time.perf_counter()
        call = self._call(result)
        if call.roles_unknown or not call.utterances:
            return
        needs = [need for spec in self.engine.lexicons.rules if getattr(spec.options, "verify", False)
                 for need in self._needs(spec, call)]
        asks = {ask.key: ask for need in needs for ask in need.asks}
        if not asks:
            return
        ordered = sorted(asks.values(), key=lambda a: (a.clip_start_s, a.key))
        audio = dict(zip((a.key for a in ordered),
                         clips.cut([(a.view.speaker, a.clip_start_s, a.clip_end_s) for a in ordered])))
        answers: dict[tuple, PhraseCheck] = {}
        skipped = 0
        for need in needs:
            said = 0
            for ask in need.asks:
                if need.count and said >= need.count:
                    break
                check = answers.get(ask.key)
                if check is None:
                    if len(answers) >= self.options.max_checks:
                        skipped += 1
                        continue
                    check = answers[ask.key] = self._check(ask, audio[ask.key])
                verdict = decide(check, self.engine.verify_options, ask.bias)
                said += verdict is not None and verdict.state == SAID
        by_index = {u.utterance_idx: u for u in result.utterances}
        for (index, *_), check in answers.items():
            by_index[index].checks.append(check)
        if skipped:
            result.warnings.append(f"{skipped} phrase finding(s) not checked on the audio (over [verify] max_checks = "
                                   f"{self.options.max_checks}): judged on the transcript alone")
        result.timings["verify_s"] = result.timings.get("verify_s", 0.0) + time.perf_counter() - clock

    @property
    def scorer(self) -> Scorer | None:
        """The model's scorer, made on first use (None: the model cannot score given texts)."""
        if callable(self._scorer) and not hasattr(self._scorer, "score"):
            self._scorer = self._scorer()
        return self._scorer

    def _check(self, ask: Ask, samples: np.ndarray) -> PhraseCheck:
        options = [ask.phrase, *ask.rivals]
        logprobs, priors = self.scorer.score(samples, ask.prefix, options)
        return PhraseCheck(ask.phrase, ask.key_start, ask.key_end, ask.heard, options,
                           [round(x, 4) for x in logprobs], [round(x, 4) for x in priors], ask.prefix,
                           round(ask.clip_start_s, 3), round(ask.clip_end_s, 3))

    def _call(self, result: CallResult) -> CallData:
        rec = result.recording
        return call_data(self.engine, CallTranscript(
            rec.call_id, rec.agent_id, rec.company or "", result.channels, result.duration_s, tuple(result.utterances),
            tuple((v.speaker, v.start_s, v.end_s) for v in result.voice_activity),
            roles_confidence=result.roles_confidence))

    # -- what each rule's verdict needs heard ---------------------------------------------------------

    def _needs(self, spec: RuleSpec, call: CallData) -> list[Need]:
        opts = spec.options
        if spec.type == "keyword":
            scope, _ = scope_of(call, opts.role, opts.window)
            if not scope:
                return []
            return [self._need(call, scope, opts.lexicon, 0 if opts.mode == "none" else opts.min_hits,
                               missing=opts.mode != "none")]
        if spec.type == "hold" and opts.check == "announced":
            needs = []
            for hold in find_holds(call, opts.min_silence_s):
                before, after = hold_context(call, hold, opts)
                needs.append(self._need(call, before, opts.notice, 1, missing=True))
                if opts.apology:
                    needs.append(self._need(call, after, opts.apology, 1, missing=True))
            return needs
        return []

    def _need(self, call: CallData, scope: list[UtteranceView], patterns, count: int, missing: bool) -> Need:
        matchers = self.engine.matchers(patterns, call.company)
        found = sorted(self.engine.find(call, scope, patterns), key=lambda f: (f.utterance.start_s, f.match.start))
        need = Need(count)
        for finding in found:
            ask = self._ask_finding(call, finding, matchers)
            if ask is not None:
                need.asks.append(ask)
        if missing:
            need.asks.extend(self._candidates(call, scope, matchers, found))
        return need

    def _phrase_text(self, phrase: Phrase, call: CallData) -> str:
        return phrase.text.replace(COMPANY_PLACEHOLDER, call.company or "")

    def _accepted(self, matcher: GroupMatcher, call: CallData) -> list[str]:
        return [self._phrase_text(p, call) for p in matcher.group.phrases if p.kind == "phrase"]

    def _ask_finding(self, call: CallData, finding: Finding, matchers: list[GroupMatcher]) -> Ask | None:
        view, match = finding
        phrase = match.phrase
        if len(phrase_parts(phrase.text)) > 1:
            return None  # a phrase with a gap (拨打…咨询): what stands between its parts varies
        matcher = next(m for m in matchers if m.group.id == match.group.id)
        if phrase.kind != "phrase":  # a stand-in (你好 for 您好): ask about the phrase it stands for
            phrase = next((p for p in matcher.group.phrases if p.kind == "phrase" and match.phrase.text in p.confusables), None)
            if phrase is None:
                return None
        text = self._phrase_text(phrase, call)
        heard = view.key[match.start:match.end]
        return self._ask(view, text, match.start, match.end, heard, phrase, self._accepted(matcher, call), call.company)

    def _candidates(self, call: CallData, scope: list[UtteranceView], matchers: list[GroupMatcher],
                    found: list[Finding]) -> list[Ask]:
        """Places where a phrase the rule wants may have been said though the transcript has something
        else: one of its confusables, or a pinyin neighbour of it (not where a finding already is)."""
        taken = {(id(f.utterance), k) for f in found for k in range(f.match.start, f.match.end)}
        asks = []
        for matcher in matchers:
            accepted = self._accepted(matcher, call)
            for phrase in matcher.group.phrases:
                if phrase.kind != "phrase" or len(phrase_parts(phrase.text)) > 1:
                    continue
                text = self._phrase_text(phrase, call)
                key = match_key(text)
                if len(key) < 2 and not phrase.confusables:
                    continue
                sound = syllables(key)
                for view in scope:
                    spans = set()
                    for other in phrase.confusables:
                        other_key = match_key(other)
                        at = view.key.find(other_key) if other_key else -1
                        while at != -1:
                            spans.add((at, at + len(other_key)))
                            at = view.key.find(other_key, at + 1)
                    if len(key) >= 2:
                        for at in range(len(view.key) - len(key) + 1):
                            window = view.key[at:at + len(key)]
                            if window != key and near(sound, syllables(window)):
                                spans.add((at, at + len(key)))
                    for start, end in sorted(spans):
                        if any((id(view), k) in taken for k in range(start, end)):
                            continue
                        ask = self._ask(view, text, start, end, view.key[start:end], phrase, accepted, call.company)
                        if ask is not None:
                            asks.append(ask)
        asks.sort(key=lambda a: (a.view.start_s, a.key_start))
        return asks[:CANDIDATES]

    def _ask(self, view: UtteranceView, text: str, start: int, end: int, heard: str, phrase: Phrase,
             accepted: list[str], company: str = "") -> Ask | None:
        if (match_key(heard) == match_key(text) and not phrase.confusables
                and match_key(text) not in match_key(self.prompt.replace(COMPANY_PLACEHOLDER, company))):
            return None  # written as it is, confused with nothing known, not the prompt's: nothing to ask
        against = rivals(text, phrase.confusables, heard if match_key(heard) != match_key(text) else "",
                         accepted, self.options.neighbours)
        if not against:
            return None
        prefix, clip_start, clip_end = self._clip(view, start, end)
        return Ask(view, text, start, end, heard, against, prefix, clip_start, clip_end, phrase.bias)

    def _clip(self, view: UtteranceView, start: int, end: int) -> tuple[str, float, float]:
        """The decoder prefix and the clip for key characters ``start:end``: from the first word at most
        ``context_s`` before them (the words between are the prefix) to ``after_s`` after they start."""
        opts = self.options
        words = list(view.words) if view.words is not None else []
        offsets = word_offsets(words) if words else []
        if not offsets or offsets[-1][1] != len(view.key):  # no word times: the utterance from its start
            t0, first_key, first_start = view.start_s, 0, view.start_s
        else:
            t0 = next((s for a, b, s, _ in offsets if a <= start < b), view.start_s)
            first_key, first_start = next(((a, s) for a, _, s, _ in offsets if s >= t0 - opts.context_s and a <= start),
                                          (start, t0))
        prefix = view.text[view.key_pos[first_key]: view.key_pos[start]] if first_key < start else ""
        clip_start = max(0.0, min(first_start, t0) - opts.lead_s)
        clip_end = min(view.end_s + CLIP_TAIL_S, t0 + opts.after_s)
        phrase_end = view.span_time(start, end)[1]
        return prefix, round(clip_start, 3), round(max(clip_end, phrase_end + 0.2, clip_start + 0.5), 3)


def make_verifier(engine: RuleEngine, scorer_factory: Callable[[], Scorer], options: VerifyOptions,
                  prompt: str = "") -> PhraseVerifier | None:
    """A verifier when ``[verify] enabled`` and a rule asks for it; else None (nothing to listen for).
    ``prompt``: the decoder prompt and prompt words (``{company}`` unresolved)."""
    if not options.enabled or not any(getattr(s.options, "verify", False) for s in engine.lexicons.rules):
        return None
    return PhraseVerifier(engine, scorer_factory, options, prompt)

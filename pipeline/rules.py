"""The rule engine: stored utterances and voice activity in, findings (hits) and rule results out.

Matching survives speech recognition: phrases match on normalised text, and (unless the lexicon says
``sound=no``) on toneless pinyin with near-sound equivalences, so 請將 matches 请讲 and 心和通信 matches
星河通信. Every hit records how it matched (``exact``, ``sound_alike``, ``near_sound`` or
``asr_variant``). A phrase inside a longer word is not a hit unless its group says ``@inside = yes``
(word boundaries from jieba, with the lexicon phrases in its dictionary).

Pure and fast: no audio, no model, no Prefect. ``evaluate_calls`` works on rows as stored in Parquet,
so rescoring after a lexicon change never touches audio.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable

from .lexicon import COMPANY_PLACEHOLDER, Group, LexiconSet, Phrase, RuleSpec
from .records import SPEAKER_AGENT, SPEAKER_CUSTOMER, SPEAKER_UNKNOWN
from .text import match_key

logger = logging.getLogger("callqa.rules")

PASS, FAIL, NOT_APPLICABLE = "pass", "fail", "not_applicable"
_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r",
             "z", "c", "s", "y", "w")


class SoundKeys:
    """Toneless pinyin, folded by near-sound equivalences, one code point per character.

    Each distinct folded syllable becomes one private-use character, so a sentence's sound string has
    exactly one character per character of its text key and regular expressions find sound-alike
    phrases with the same offsets as exact ones.
    """

    def __init__(self, equivalences: Iterable[str]):
        self.initials: list[tuple[str, str]] = []
        self.finals: list[tuple[str, str]] = []
        for pair in equivalences:
            a, b = pair.split("=")
            target = self.initials if a in _INITIALS and b in _INITIALS else self.finals
            target.append((b, a))  # fold b onto a
        self.initials.sort(key=lambda p: -len(p[0]))
        self.finals.sort(key=lambda p: -len(p[0]))
        self._codes: dict[str, str] = {}
        self._chars: dict[str, str] = {}

    def fold(self, syllable: str) -> str:
        initial = next((i for i in _INITIALS if syllable.startswith(i) and len(syllable) > len(i)), "")
        final = syllable[len(initial):]
        for src, dst in self.initials:
            if initial == src:
                initial = dst
                break
        for src, dst in self.finals:
            if final.endswith(src):
                final = final[: len(final) - len(src)] + dst
                break
        return initial + final

    def _code(self, ch: str) -> str:
        code = self._chars.get(ch)
        if code is None:
            if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf":
                from pypinyin import Style, pinyin

                syllable = self.fold(pinyin(ch, style=Style.NORMAL, heteronym=False)[0][0])
                code = self._codes.setdefault(syllable, chr(0xE000 + len(self._codes)))
            else:
                code = ch
            self._chars[ch] = code
        return code

    def of(self, key: str) -> str:
        return "".join(self._code(ch) for ch in key)


@dataclass
class UttView:
    """One stored utterance prepared for matching."""

    idx: int
    speaker: str
    start_s: float
    end_s: float
    text: str
    key: str  # letters and digits of text, lower case
    key_pos: list[int]  # text index of each key character
    sound: str
    words: Any = None
    _bounds: list[tuple[int, int]] | None = None  # multi-character jieba words, computed on demand

    def span_text(self, start: int, end: int) -> str:
        return self.text[self.key_pos[start]: self.key_pos[end - 1] + 1]

    def span_time(self, start: int, end: int) -> tuple[float, float]:
        """Time of key characters ``start:end`` from word timestamps; the utterance's bounds if unknown."""
        return word_span_time(self.words, len(self.key), start, end, (self.start_s, self.end_s))


def word_offsets(words) -> list[tuple[int, int, float, float]]:
    """(first key char, last key char + 1, start_s, end_s) of each word."""
    offsets, cursor = [], 0
    for word in words:
        n = len(_stored_key(word["word"]))
        offsets.append((cursor, cursor + n, word["start_s"], word["end_s"]))
        cursor += n
    return offsets


def word_span_time(words, key_length: int, start: int, end: int,
                   default: tuple[float, float]) -> tuple[float, float]:
    """The time the words covering key characters ``start:end`` were said, else ``default``."""
    if words is None or len(words) == 0:
        return default
    offsets = word_offsets(words)
    if offsets[-1][1] != key_length:  # words and text disagree (should not happen): trust the text
        return default
    inside = [(s, e) for a, b, s, e in offsets if a < end and b > start]
    return (min(s for s, _ in inside), max(e for _, e in inside)) if inside else default


def _stored_key(text: str) -> str:
    """``match_key`` of text that is already normalised (stored text and words): no conversion needed."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN").lower()


def make_view(row: dict, sounds: SoundKeys) -> UttView:
    text = row["text"]
    key_pos = [i for i, ch in enumerate(text) if unicodedata.category(ch)[0] in "LN"]
    key = "".join(text[i] for i in key_pos).lower()
    return UttView(int(row["utterance_idx"]), row["speaker"], float(row["start_s"]), float(row["end_s"]), text,
                   key, key_pos, sounds.of(key), row.get("words"))


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def _inside_longer_word(view: UttView, start: int, end: int) -> bool:
    """True when one jieba word holds the whole span and more (喂 inside 喂养, 家 inside 家里).

    A span that merely meets a particle (你自己看 + 吧 -> 看吧) is not inside a longer word.
    """
    if view._bounds is None:
        view._bounds = [(s, e) for _word, s, e in _jieba().tokenize(view.key) if e - s > 1]
    return any(s <= start and end <= e and e - s > end - start for s, e in view._bounds)


@dataclass(frozen=True)
class Match:
    phrase: Phrase
    group: Group
    start: int  # key offsets
    end: int
    kind: str


@dataclass
class _Entry:
    phrase: Phrase
    key: str
    sound: str
    excepts: list[tuple[str, str]]


class GroupMatcher:
    """Finds one group's phrases in utterances (for one company name)."""

    def __init__(self, group: Group, sounds: SoundKeys, company: str):
        self.group = group
        self.entries: list[_Entry] = []
        for phrase in group.phrases:
            key = match_key(phrase.text.replace(COMPANY_PLACEHOLDER, company or ""))
            if not key:
                continue
            excepts = [(k, sounds.of(k)) for k in (match_key(e) for e in phrase.excepts) if k]
            self.entries.append(_Entry(phrase, key, sounds.of(key), excepts))
        self.by_key = {}
        self.by_sound = {}
        for entry in self.entries:
            self.by_key.setdefault(entry.key, entry)
            if entry.phrase.sound:
                self.by_sound.setdefault(entry.sound, entry)
        self.exact = _alternation(self.by_key)
        self.sound = _alternation(self.by_sound)

    def find(self, view: UttView) -> list[Match]:
        found: list[tuple[int, int, _Entry, str]] = []
        taken: set[tuple[int, int]] = set()
        if self.exact is not None:
            for m in self.exact.finditer(view.key):
                entry = self.by_key[m.group()]
                kind = "asr_variant" if entry.phrase.kind == "asr_variant" else "exact"
                found.append((m.start(), m.end(), entry, kind))
                taken.add((m.start(), m.end()))
        if self.sound is not None:
            for m in self.sound.finditer(view.sound):
                if (m.start(), m.end()) not in taken:
                    entry = self.by_sound[m.group()]
                    kind = "asr_variant" if entry.phrase.kind == "asr_variant" else "sound_alike"
                    found.append((m.start(), m.end(), entry, kind))
                    taken.add((m.start(), m.end()))
        if self.group.mismatch and not found:
            found.extend(self._near(view))
        matches = []
        for start, end, entry, kind in found:
            if entry.phrase.at == "start" and start != 0:
                continue
            if not entry.phrase.inside and _inside_longer_word(view, start, end):
                continue
            if self._excluded(view, entry, start, end):
                continue
            matches.append(Match(entry.phrase, self.group, start, end, kind))
        return matches

    def _near(self, view: UttView) -> list[tuple[int, int, _Entry, str]]:
        """Sound-alike with up to ``mismatch`` differing syllables (long phrases only, e.g. company names)."""
        allowed = self.group.mismatch
        hits = []
        for entry in self.entries:
            n = len(entry.sound)
            if not entry.phrase.sound or n < allowed + 3:
                continue
            for start in range(0, len(view.sound) - n + 1):
                window = view.sound[start:start + n]
                if sum(a != b for a, b in zip(window, entry.sound)) <= allowed:
                    hits.append((start, start + n, entry, "near_sound"))
                    break
        return hits

    @staticmethod
    def _excluded(view: UttView, entry: _Entry, start: int, end: int) -> bool:
        for key, sound in entry.excepts:
            for haystack, needle in ((view.key, key), (view.sound, sound)):
                pos = haystack.find(needle)
                while pos != -1:
                    if pos <= start and pos + len(needle) >= end:
                        return True
                    pos = haystack.find(needle, pos + 1)
        return False


def _alternation(table: dict[str, Any]) -> re.Pattern | None:
    if not table:
        return None
    return re.compile("|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)))


@dataclass
class CallData:
    """What the rules see of one call."""

    call_id: str
    agent_id: str
    company: str
    channels: int | None
    duration_s: float | None
    utterances: list[UttView]
    voice: list[tuple[str, float, float]] = field(default_factory=list)
    agent_language: str | None = None
    agent_language_prob: float | None = None

    @property
    def mono(self) -> bool:
        speakers = {u.speaker for u in self.utterances} | {v[0] for v in self.voice}
        return (self.channels == 1) or (bool(speakers) and speakers <= {SPEAKER_UNKNOWN})

    def by_role(self, role: str) -> list[UttView]:
        if role == "any":
            return list(self.utterances)
        if self.mono:  # no role attribution for mono yet: the rules read all speech
            return [u for u in self.utterances if u.speaker == SPEAKER_UNKNOWN]
        return [u for u in self.utterances if u.speaker == role]

    def voice_of(self, role: str) -> list[tuple[float, float]]:
        if role == "any" or self.mono:
            return [(s, e) for _, s, e in self.voice]
        return [(s, e) for who, s, e in self.voice if who == role]


@dataclass(frozen=True)
class Hold:
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


class RuleEngine:
    """Compiled lexicons and rules, ready to evaluate calls. Build once per run."""

    def __init__(self, lexicons: LexiconSet):
        self.lexicons = lexicons
        self.sounds = SoundKeys(lexicons.equivalences)
        self._matchers: dict[tuple[str, str], GroupMatcher] = {}
        self._selected: dict[tuple[str, ...], list[Group]] = {}
        self._jieba_words_added = False

    def matchers(self, patterns: list[str] | str, company: str) -> list[GroupMatcher]:
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

    def _ensure_jieba(self) -> None:
        if not self._jieba_words_added:
            jieba = _jieba()
            for group in self.lexicons.groups.values():
                for phrase in group.phrases:
                    key = match_key(phrase.text.replace(COMPANY_PLACEHOLDER, ""))
                    if len(key) > 1:
                        jieba.add_word(key)
            self._jieba_words_added = True

    def find(self, call: CallData, utterances: list[UttView], patterns) -> list[tuple[UttView, Match]]:
        self._ensure_jieba()
        matchers = self.matchers(patterns, call.company)
        return [(u, m) for u in utterances for matcher in matchers for m in matcher.find(u)]

    def evaluate(self, call: CallData) -> tuple[list[dict], list[dict]]:
        """Run every rule on one call.

        Returns:
            ``(hits, results)``: rows for the ``hits`` and ``rule_results`` tables.
        """
        hits: list[dict] = []
        results: list[dict] = []
        for spec in self.lexicons.rules:
            check = _CHECKS[spec.type]
            try:
                outcome, found, evidence, *span = check(self, spec, call)
            except Exception as exc:  # a rule bug must not stop the others; it is reported, not hidden
                logger.exception("rule %s failed on call %s", spec.rule_id, call.call_id)
                outcome, found, evidence, span = NOT_APPLICABLE, [], f"rule error: {type(exc).__name__}: {exc}", []
            rule_hits = [_hit_row(call, spec, view, match) for view, match in found]
            hits.extend(rule_hits)
            result = {"call_id": call.call_id, "agent_id": call.agent_id, "rule_id": spec.rule_id,
                      "outcome": outcome, "hit_count": len(found), "evidence": evidence}
            if outcome != NOT_APPLICABLE:
                result.update(_moment(span[0] if span else None, rule_hits))
            results.append(result)
        return hits, results


def _moment(span: tuple[float, float] | None, rule_hits: list[dict]) -> dict:
    """Where the evidence of a rule result is in the call: the check's own span (a hold, an unanswered
    opening) or else its earliest finding, marked so that word-level hit times can refine it later."""
    if span is not None:
        return {"at_s": round(float(span[0]), 3), "until_s": round(float(span[1]), 3)}
    if not rule_hits:
        return {}
    first = min(rule_hits, key=lambda h: h["start_s"])
    return {"at_s": first["start_s"], "until_s": first["end_s"], "_moment_from_hits": True}


def moments_from_hits(results: list[dict], hits: list[dict]) -> None:
    """Reset the moment of results that point at a finding, after the hits were timed again."""
    earliest: dict[tuple[str, str], dict] = {}
    for hit in hits:
        key = (hit["call_id"], hit["rule_id"])
        if key not in earliest or hit["start_s"] < earliest[key]["start_s"]:
            earliest[key] = hit
    for result in results:
        first = earliest.get((result["call_id"], result["rule_id"])) if result.get("_moment_from_hits") else None
        if first is not None:
            result["at_s"], result["until_s"] = first["start_s"], first["end_s"]


def _span_of(views: list[UttView]) -> tuple[float, float] | None:
    return (views[0].start_s, views[-1].end_s) if views else None


def _hit_row(call: CallData, spec: RuleSpec, view: UttView, match: Match) -> dict:
    start_s, end_s = view.span_time(match.start, match.end)
    return {"call_id": call.call_id, "rule_id": spec.rule_id, "speaker": view.speaker,
            "start_s": round(float(start_s), 3), "end_s": round(float(end_s), 3), "utterance_idx": view.idx,
            "phrase": match.phrase.text, "matched_text": view.span_text(match.start, match.end),
            "match_kind": match.kind, "category": match.group.category, "severity": match.group.severity,
            "_span": (match.start, match.end)}  # key offsets, to time the hit from words later


def _quote(view: UttView, limit: int = 24) -> str:
    text = view.text if len(view.text) <= limit else view.text[:limit] + "…"
    return f"{view.speaker} {view.start_s:.1f}s “{text}”"


def _window(call: CallData, utterances: list[UttView], window: dict | None) -> list[UttView]:
    if not window or not utterances:
        return utterances
    selected = utterances
    if "first_utterances" in window:
        selected = selected[: int(window["first_utterances"])]
    if "last_utterances" in window:
        selected = selected[-int(window["last_utterances"]):]
    if "first_s" in window:
        origin = utterances[0].start_s
        selected = [u for u in selected if u.start_s <= origin + window["first_s"]]
    if "last_s" in window:
        end = utterances[-1].end_s
        selected = [u for u in selected if u.end_s >= end - window["last_s"]]
    return selected


def _role_label(call: CallData, role: str) -> str:
    return f"{role} (mono: all speech)" if call.mono and role != "any" else role


def _scope(call: CallData, opts: dict) -> tuple[list[UttView] | None, str]:
    """The utterances a phrase rule reads (its role, inside its window), or None when the role never spoke."""
    role = opts.get("role", "agent")
    spoken = call.by_role(role)
    if not spoken:
        return None, f"no {_role_label(call, role)} speech"
    return _window(call, spoken, opts.get("window")), role


def check_keyword(engine: RuleEngine, spec: RuleSpec, call: CallData):
    opts = spec.options
    scope, role = _scope(call, opts)
    if scope is None:
        return NOT_APPLICABLE, [], role
    found = engine.find(call, scope, opts["lexicon"])
    where = f"{len(scope)} {_role_label(call, role)} utterance(s)"
    if scope:
        where += f" {scope[0].start_s:.1f}-{scope[-1].end_s:.1f}s"
    return _judge(opts["mode"], found, opts.get("min_hits", 1), where,
                  groups=[m.group.id for m in engine.matchers(opts["lexicon"], call.company)], scope=scope)


def _judge(mode: str, found, min_hits: int, where: str, groups: list[str], scope: list[UttView]):
    def describe(items):
        return "; ".join(f"{m.phrase.text} ({m.kind}) in {_quote(v)}" for v, m in items[:3]) + (
            f" (+{len(items) - 3} more)" if len(items) > 3 else "")

    if mode == "none":
        if found:
            return FAIL, found, f"{len(found)} hit(s): {describe(found)}"
        return PASS, [], f"none said in {where}"
    if mode == "all":
        missing = [g for g in groups if g not in {m.group.id for _, m in found}]
        if missing:
            return FAIL, found, f"missing {', '.join(missing)} in {where}"
        return PASS, found, describe(found)
    if len(found) >= min_hits:
        return PASS, found, describe(found)
    said = " / ".join(f"“{v.text[:20]}”" for v in scope[:2])
    return FAIL, found, f"not said in {where}" + (f": {said}" if said else ""), _span_of(scope)


def check_regex(engine: RuleEngine, spec: RuleSpec, call: CallData):
    opts = spec.options
    scope, role = _scope(call, opts)
    if scope is None:
        return NOT_APPLICABLE, [], role
    pattern = re.compile(opts["pattern"])
    exclude = re.compile(opts["exclude"]) if opts.get("exclude") else None
    group = Group(spec.rule_id, (), spec.rule_id, "中", None, 0, spec.source)
    found = []
    for view in scope:
        if exclude is not None and exclude.search(view.text):
            continue
        for m in pattern.finditer(view.text):
            start = sum(1 for p in view.key_pos if p < m.start())
            end = max(start + 1, sum(1 for p in view.key_pos if p < m.end()))
            phrase = Phrase(spec.rule_id, opts["pattern"], (), False, True, "phrase", spec.source)
            found.append((view, Match(phrase, group, start, min(end, len(view.key)), "regex")))
    return _judge(opts["mode"], found, 1, f"{len(scope)} {role} utterance(s)", [group.id], scope)


def check_sequence(engine: RuleEngine, spec: RuleSpec, call: CallData):
    opts = spec.options
    role = opts.get("role", "agent")
    spoken = call.by_role(role)
    after = engine.find(call, spoken, opts["after"])
    if not after:
        return NOT_APPLICABLE, [], "the anchor phrase was not said"
    before = engine.find(call, spoken, opts["before"])
    position = {id(v): i for i, v in enumerate(spoken)}
    missing = []
    for view, match in after:
        ok = False
        for bview, _bmatch in before:
            if bview.start_s > view.start_s or (bview is view and _bmatch.start >= match.start):
                continue
            if "within_s" in opts and view.start_s - bview.end_s > opts["within_s"]:
                continue
            if "within_utterances" in opts and position[id(view)] - position[id(bview)] > opts["within_utterances"]:
                continue
            ok = True
        if not ok:
            missing.append((view, match))
    if missing:
        return FAIL, missing, "not preceded as required: " + "; ".join(_quote(v) for v, _ in missing[:3])
    return PASS, after, f"{len(after)} anchor(s), each preceded as required"


def check_hold(engine: RuleEngine, spec: RuleSpec, call: CallData):
    opts = spec.options
    holds = find_holds(call, opts["min_silence_s"])
    if not holds:
        return NOT_APPLICABLE, [], f"no mutual silence of {opts['min_silence_s']} s or more"
    listed = ", ".join(f"{h.start_s:.1f}-{h.end_s:.1f}s ({h.duration_s:.0f} s)" for h in holds)
    if opts["check"] == "duration":
        long = [h for h in holds if h.duration_s > opts["max_s"]]
        if long:
            return FAIL, [], f"hold over {opts['max_s']} s: " + ", ".join(
                f"{h.start_s:.1f}-{h.end_s:.1f}s ({h.duration_s:.0f} s)" for h in long), (long[0].start_s, long[0].end_s)
        return PASS, [], f"hold(s) {listed}, none over {opts['max_s']} s", (holds[0].start_s, holds[0].end_s)
    agent = call.by_role(SPEAKER_AGENT)
    found, problems = [], []
    for hold in holds:
        before = [u for u in agent if u.end_s <= hold.start_s + 0.5 and u.end_s >= hold.start_s - opts.get(
            "notice_within_s", 10)]
        after = [u for u in agent if u.start_s >= hold.end_s - 0.5 and u.start_s <= hold.end_s + opts.get(
            "apology_within_s", 10)]
        notice = engine.find(call, before, opts["notice"])
        apology = engine.find(call, after, opts["apology"]) if opts.get("apology") else []
        found.extend(notice + apology)
        label = f"hold {hold.start_s:.1f}-{hold.end_s:.1f}s"
        if not notice:
            problems.append((hold, f"{label} not announced"))
        if opts.get("require_apology", False) and not apology:
            problems.append((hold, f"{label} not apologised for"))
    if problems:
        first = problems[0][0]
        return FAIL, found, "; ".join(text for _, text in problems), (first.start_s, first.end_s)
    return (PASS, found, f"{listed}: announced" + (" and apologised for" if opts.get("require_apology") else ""),
            (holds[0].start_s, holds[0].end_s))


def check_speech_rate(engine: RuleEngine, spec: RuleSpec, call: CallData):
    opts = spec.options
    role = opts.get("role", "agent")
    spoken = call.by_role(role)
    seconds = sum(u.end_s - u.start_s for u in spoken)
    if seconds < opts.get("min_speech_s", 10):
        return NOT_APPLICABLE, [], f"only {seconds:.1f} s of {_role_label(call, role)} speech"
    cpm = sum(len(u.key) for u in spoken) / seconds * 60
    verdict = PASS if opts["min_cpm"] <= cpm <= opts["max_cpm"] else FAIL
    example = spoken[0]  # a pass points at the first utterance, a failure at the utterance furthest off the band
    if verdict == FAIL:
        sign = 1 if cpm > opts["max_cpm"] else -1
        example = max(spoken, key=lambda u: sign * len(u.key) / max(u.end_s - u.start_s, 0.1))
    return (verdict, [], f"{cpm:.0f} characters per minute over {seconds:.0f} s (band {opts['min_cpm']}-{opts['max_cpm']})",
            (example.start_s, example.end_s))


def check_interruption(engine: RuleEngine, spec: RuleSpec, call: CallData):
    opts = spec.options
    role, other = opts.get("role", SPEAKER_AGENT), opts.get("other", SPEAKER_CUSTOMER)
    if call.mono:
        return NOT_APPLICABLE, [], "mono recording: who speaks over whom cannot be told"
    interrupter, interrupted = call.by_role(role), call.by_role(other)
    if not interrupter or not interrupted:
        return NOT_APPLICABLE, [], f"needs both {role} and {other} speech"
    events = []
    for u in interrupter:
        for o in interrupted:
            if o.start_s < u.start_s < o.end_s:
                overlap = min(o.end_s, u.end_s) - u.start_s
                if overlap > opts["tolerance_s"]:
                    events.append((u, o, overlap))
    if events:
        text = "; ".join(f"{role} started at {u.start_s:.1f}s while {other} spoke until {o.end_s:.1f}s "
                         f"({ov:.1f} s over)" for u, o, ov in events[:3])
        first, _, overlap = events[0]
        return FAIL, [], text, (first.start_s, first.start_s + overlap)
    return PASS, [], f"no {role} start over {other} speech beyond {opts['tolerance_s']} s"


def check_answer_delay(engine: RuleEngine, spec: RuleSpec, call: CallData):
    opts = spec.options
    agent = call.by_role(SPEAKER_AGENT)
    voice = call.voice_of(SPEAKER_AGENT)
    first = min([s for s, _ in voice] + [u.start_s for u in agent[:1]], default=None)
    if first is None:
        return FAIL, [], "the agent never spoke", (0.0, call.duration_s or 0.0)
    if first <= opts["max_s"]:
        return PASS, [], f"first agent speech at {first:.1f}s", (0.0, first)
    apology = engine.find(call, agent[:1], opts.get("apology", [])) if opts.get("apology") else []
    if apology:
        return PASS, apology, f"first agent speech at {first:.1f}s, with an apology: {_quote(agent[0])}", (0.0, first)
    return FAIL, [], f"first agent speech at {first:.1f}s (limit {opts['max_s']} s), no apology" + (
        f": {_quote(agent[0])}" if agent else ""), (0.0, first)


def check_dialect(engine: RuleEngine, spec: RuleSpec, call: CallData):
    opts = spec.options
    role = opts.get("role", "agent")
    spoken = call.by_role(role)
    if not spoken:
        return NOT_APPLICABLE, [], f"no {_role_label(call, role)} speech"
    found = engine.find(call, spoken, opts["lexicon"])
    language, probability = call.agent_language, call.agent_language_prob
    if (language and language in opts.get("languages", []) and probability is not None
            and probability >= opts.get("min_language_prob", 0.5)):
        return (FAIL, found, f"the speech model identified the agent's speech as {language} (p={probability:.2f})",
                _span_of(spoken[:1]))
    markers = sorted({(m.group.dialect or m.group.id, m.phrase.text) for _, m in found})
    if len(markers) >= opts.get("min_markers", 1):
        return FAIL, found, f"{len(markers)} dialect marker(s): " + ", ".join(f"{w} ({d})" for d, w in markers[:8])
    detail = f" (below the threshold of {opts.get('min_markers', 1)}: {markers[0][1]})" if markers else ""
    return PASS, found, f"no dialect markers in {len(spoken)} utterance(s){detail}"


_CHECKS = {
    "keyword": check_keyword,
    "regex": check_regex,
    "sequence": check_sequence,
    "hold": check_hold,
    "speech_rate": check_speech_rate,
    "interruption": check_interruption,
    "answer_delay": check_answer_delay,
    "dialect": check_dialect,
}


def evaluate_calls(engine: RuleEngine, calls: Iterable[dict], utterances: Iterable[dict],
                   voice_activity: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """Evaluate every ``ok`` call from stored rows (as in the ``calls``, ``utterances`` and
    ``voice_activity`` tables). Calls with status ``error`` get no rule results.

    Returns:
        ``(hits, rule_results)`` rows; each carries the call's ``call_date`` when the call row has one.
    """
    by_call: dict[str, list[dict]] = {}
    for row in utterances:
        by_call.setdefault(row["call_id"], []).append(row)
    voice_by_call: dict[str, list[tuple[str, float, float]]] = {}
    for row in voice_activity:
        voice_by_call.setdefault(row["call_id"], []).append((row["speaker"], float(row["start_s"]), float(row["end_s"])))
    hits: list[dict] = []
    results: list[dict] = []
    for call in calls:
        if call.get("status", "ok") != "ok":
            continue
        rows = sorted(by_call.get(call["call_id"], []), key=lambda r: (r["start_s"], r["utterance_idx"]))
        data = CallData(call["call_id"], call.get("agent_id", ""), call.get("company") or "",
                        call.get("channels"), call.get("duration_s"),
                        [make_view(r, engine.sounds) for r in rows], voice_by_call.get(call["call_id"], []),
                        _present(call.get("agent_language")), _present(call.get("agent_language_prob")))
        call_hits, call_results = engine.evaluate(data)
        extra = {"call_date": call["call_date"]} if "call_date" in call else {}
        hits.extend({**extra, **h} for h in call_hits)
        results.extend({**extra, **r} for r in call_results)
    return hits, results


def _present(value):
    """None for missing values as pandas reads them back (NaN, None)."""
    return None if value is None or value != value else value


def apply_rules(engine: RuleEngine, tables: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Add the ``hits`` and ``rule_results`` tables to a run's tables (rows as ``store.rows_for_run`` makes)."""
    hits, results = evaluate_calls(engine, tables.get("calls", []), tables.get("utterances", []),
                                   tables.get("voice_activity", []))
    for row in results:
        row["lexicon_version"] = engine.lexicons.version
    tables["hits"], tables["rule_results"] = hits, results
    return tables

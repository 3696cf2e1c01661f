"""The options of each rule type, with their documented defaults: what a table of ``rules.toml`` may say.

A rule in ``rules.toml`` is ``type`` plus that type's options; :mod:`pipeline.rules.lexicon` builds
the dataclass below for its type with :func:`pipeline.validation.build_options`, so an unknown option,
a missing required one, a wrong type or a value outside its choices is an error naming the file and
line. A field without a default is required; ``validate()`` returns the constraints between options
that a type cannot express, as (option, message) pairs. Fields marked ``lexicon`` name phrase groups (``"x"`` or
``["forbidden.*"]``); the loader checks that each pattern matches a group. ``callqa rules check``
prints every rule's effective options, defaults included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Union

Role = Literal["agent", "customer", "any"]


def lexicon(*, default: tuple[str, ...] | None = None):
    """A field naming phrase groups (checked against the lexicons when they load)."""
    if default is None:
        return field(metadata={"lexicon": True})
    return field(default=default, metadata={"lexicon": True})


def _positive(options, *names: str) -> list[tuple[str, str]]:
    return [(name, f"{name} must be a positive number") for name in names
            if getattr(options, name) is not None and getattr(options, name) <= 0]


@dataclass(frozen=True)
class Window:
    """Which of a role's utterances a phrase rule reads (all of them without a window). Several
    limits narrow the window together.

    Attributes:
        first_s: utterances that start within this many seconds of the role's first speech.
        last_s: utterances that end within this many seconds of the role's last speech.
        first_utterances: the role's first N utterances.
        last_utterances: the role's last N utterances.
    """

    first_s: float | None = None
    last_s: float | None = None
    first_utterances: int | None = None
    last_utterances: int | None = None

    def validate(self) -> list[tuple[str, str]]:
        return [("window", message) for _, message in
                _positive(self, "first_s", "last_s", "first_utterances", "last_utterances")]


@dataclass(frozen=True)
class KeywordOptions:
    """``keyword``: phrases said (``any``, ``all`` groups) or not said (``none``) by a role.

    Attributes:
        lexicon: the phrase groups.
        mode: ``any`` passes when at least ``min_hits`` phrases are said; ``all`` when every group
            is; ``none`` when no phrase is.
        role: whose utterances are read.
        window: which of them (default: all).
        min_hits: ``any``: phrases needed to pass.
        verify: the verdict rests on what the audio says, not on the transcript alone: each phrase
            found, and a sound-alike of a phrase not found, is checked on its audio against its rivals
            (``rules.toml [verify]``, ``pipeline.rules.verification``).
    """

    lexicon: tuple[str, ...] = lexicon()
    mode: Literal["any", "all", "none"]
    role: Role = "agent"
    window: Window | None = None
    min_hits: int = 1
    verify: bool = False

    def validate(self) -> list[tuple[str, str]]:
        return [("min_hits", "min_hits must be at least 1")] if self.min_hits < 1 else []


@dataclass(frozen=True)
class RegexOptions:
    """``regex``: a regular expression on a role's text (``any``: must match; ``none``: must not).

    Attributes:
        pattern: the expression (Python syntax), matched on the stored (simplified) text.
        mode: ``any`` or ``none``.
        exclude: utterances matching this expression are not read (empty: none excluded).
        role: whose utterances are read.
        window: which of them.
    """

    pattern: str
    mode: Literal["any", "none"]
    exclude: str = ""
    role: Role = "agent"
    window: Window | None = None

    def validate(self) -> list[tuple[str, str]]:
        problems = []
        for name in ("pattern", "exclude"):
            try:
                re.compile(getattr(self, name))
            except re.error as exc:
                problems.append((name, f"{name}: invalid regular expression: {exc}"))
        return problems


@dataclass(frozen=True)
class SequenceOptions:
    """``sequence``: every ``after`` phrase needs a ``before`` phrase earlier, within the limits.

    Attributes:
        before: the phrase groups that must come first.
        after: the phrase groups that anchor the rule (not said: not applicable).
        role: whose utterances are read.
        within_s: the ``before`` phrase ends at most this many seconds before the anchor starts.
        within_utterances: ... and at most this many utterances before it.
    """

    before: tuple[str, ...] = lexicon()
    after: tuple[str, ...] = lexicon()
    role: Role = "agent"
    within_s: float | None = None
    within_utterances: int | None = None

    def validate(self) -> list[tuple[str, str]]:
        return _positive(self, "within_s", "within_utterances")


@dataclass(frozen=True)
class HoldOptions:
    """``hold``: mutual silences of both channels (from voice activity, never from Whisper's segments).

    Attributes:
        check: ``announced`` (a notice before each hold, and an apology after it if required) or
            ``duration`` (no hold longer than ``max_s``).
        min_silence_s: a mutual silence this long or longer, after the agent first speaks, is a hold.
        notice: phrase groups that announce a hold (``announced``: required).
        notice_within_s: the notice ends at most this long before the hold starts.
        apology: phrase groups that apologise for the wait.
        apology_within_s: the apology starts at most this long after the hold ends.
        require_apology: ``announced`` also needs the apology.
        max_s: ``duration``: the longest hold allowed (required).
        edge_s: an utterance may reach this far into the hold and still count as before (or after)
            it: voice activity is padded, and utterance bounds are word times.
        verify: notices and apologies are checked on the audio, as for ``keyword`` (请您稍候 written
            请您收获 still announces the hold when the audio says 稍候).
    """

    check: Literal["announced", "duration"]
    min_silence_s: float
    notice: tuple[str, ...] = lexicon(default=())
    notice_within_s: float = 10.0
    apology: tuple[str, ...] = lexicon(default=())
    apology_within_s: float = 10.0
    require_apology: bool = False
    max_s: float | None = None
    edge_s: float = 0.5
    verify: bool = False

    def validate(self) -> list[tuple[str, str]]:
        found = _positive(self, "min_silence_s", "max_s")
        if self.check == "announced" and not self.notice:
            found.append(("notice", "check = announced needs notice"))
        if self.check == "duration" and self.max_s is None:
            found.append(("max_s", "check = duration needs max_s"))
        if self.require_apology and not self.apology:
            found.append(("apology", "require_apology needs apology"))
        return found


@dataclass(frozen=True)
class SpeechRateOptions:
    """``speech_rate``: characters per minute of a role's speech inside a band.

    Attributes:
        min_cpm: slower fails.
        max_cpm: faster fails.
        role: whose speech is measured.
        min_speech_s: with less speech than this the rate means nothing: not applicable.
    """

    min_cpm: float
    max_cpm: float
    role: Role = "agent"
    min_speech_s: float = 10.0

    def validate(self) -> list[tuple[str, str]]:
        return [("max_cpm", "need min_cpm < max_cpm")] if self.min_cpm >= self.max_cpm else []


@dataclass(frozen=True)
class InterruptionOptions:
    """``interruption``: one role starts speaking while the other speaks (stereo: by how long they overlap;
    mono: a change of voice from ``other`` to ``role`` with no pause between them).

    Attributes:
        tolerance_s: overlap allowed before it counts (back-channel 嗯 and turn-taking).
        role: who interrupts.
        other: who is interrupted.
    """

    tolerance_s: float
    role: Role = "agent"
    other: Role = "customer"


@dataclass(frozen=True)
class AnswerDelayOptions:
    """``answer_delay``: the agent speaks soon after the recording starts, or apologises for the wait.

    Attributes:
        max_s: first agent speech at most this many seconds in.
        apology: phrase groups that make a later answer pass when said in the agent's first utterance.
    """

    max_s: float
    apology: tuple[str, ...] = lexicon(default=())


@dataclass(frozen=True)
class DialectOptions:
    """``dialect``: Putonghua, not dialect or another language: how the speech sounds to the model
    (a calibrated score), marker words, or the model's language identification.

    Attributes:
        lexicon: the dialect marker groups (``@dialect`` names the dialect).
        role: whose utterances are read.
        min_markers: distinct markers needed to fail.
        languages: language codes that fail the rule when the model identifies them in the agent's
            speech with at least ``min_language_prob`` (where the model can: ``yue`` needs large-v3).
        min_language_prob: see ``languages``.
        score_file: a score file in the lexicon folder (``putonghua.toml``: a logistic model over the
            signals of ``pipeline/rules/putonghua.py``) that says how likely each utterance is
            Putonghua; empty: marker words and language identification only.
        threshold: an utterance scored below this probability of Putonghua is not Putonghua
            (default: the score file's own, calibrated threshold).
        min_duration_s: the speech heard as not Putonghua must last at least this long in all
            (a short mumbled utterance is not dialect).
        action: what speech heard as not Putonghua does: ``fail`` the rule, or mark it ``review``
            (a person listens; no points are taken). Marker words and language identification fail.
        untranscribed_s: with a score file, on a stereo call: speech on the agent's channel that the
            model wrote nothing of (its readings dropped as no speech, repetition or low confidence:
            foreign speech forced into Chinese mostly ends so), at least this long in all and at least
            ``untranscribed_share`` of the agent's speech, is heard as not Putonghua too; 0: off.
        untranscribed_share: see ``untranscribed_s``.
        min_zh_prob: the model's language identification of the agent's speech (``calls.agent_zh_prob``:
            the probability of Chinese, from the windows it decoded) below this, over at least
            ``min_duration_s`` of speech, is heard as not Putonghua (Whisper base gives Hunanese, Minnan
            and foreign speech little of it; Cantonese it calls Chinese); 0: off.
    """

    lexicon: tuple[str, ...] = lexicon()
    role: Role = "agent"
    min_markers: int = 1
    languages: tuple[str, ...] = ()
    min_language_prob: float = 0.5
    score_file: str = ""
    threshold: float | None = None
    min_duration_s: float = 3.0
    action: Literal["fail", "review"] = "fail"
    untranscribed_s: float = 5.0
    untranscribed_share: float = 0.5
    min_zh_prob: float = 0.0

    def validate(self) -> list[tuple[str, str]]:
        problems = [("min_markers", "min_markers must be at least 1")] if self.min_markers < 1 else []
        if not 0 <= self.min_language_prob <= 1:
            problems.append(("min_language_prob", "min_language_prob must be between 0 and 1"))
        if self.threshold is not None and not 0 < self.threshold < 1:
            problems.append(("threshold", "threshold must be between 0 and 1"))
        for name in ("min_duration_s", "untranscribed_s"):
            if getattr(self, name) < 0:
                problems.append((name, f"{name} must not be negative"))
        if not 0 <= self.min_zh_prob < 1:
            problems.append(("min_zh_prob", "min_zh_prob must be at least 0 and below 1"))
        if not 0 < self.untranscribed_share <= 1:
            problems.append(("untranscribed_share", "untranscribed_share must be above 0 and at most 1"))
        if self.score_file and ("/" in self.score_file or "\\" in self.score_file or self.score_file.startswith(".")):
            problems.append(("score_file", "score_file is a file name in the lexicon folder, not a path"))
        return problems


@dataclass(frozen=True)
class ResponseOptions:
    """``response``: every utterance of ``role`` that calls for a response (a question, a complaint) gets
    one from ``other``: a customer question answered (问询有答声), a complaint acknowledged (投诉有回声).

    Attributes:
        role: whose utterances call for a response.
        other: who must respond.
        trigger: phrase groups that make an utterance of ``role`` call for a response (a complaint).
        questions: an utterance in question form calls for a response too: a question mark from the
            speech model, a sentence ending in one of ``question_endings``, or a phrase of ``trigger``.
        question_endings: sentence-final particles that make a question.
        response: phrase groups the response must contain (an apology, an acknowledgement); empty:
            any utterance with content is a response.
        fillers: phrase groups of words that are no response on their own (嗯, 啊, 好): an utterance of
            nothing else does not count.
        within_s: the response starts at most this many seconds after ``role`` stopped speaking
            (a longer silence, the question hanging, fails).
        within_turns: the response is among the next this many utterances of ``other``.
        off_subject: phrase groups that open another subject (给您推荐, 我们最近有个活动): an utterance
            with one of them that shares no subject word with what called for a response is a change
            of subject, not a response.
        subject_idf: how rare (jieba's inverse document frequency) a word must be to name a subject.
    """

    role: Role = "customer"
    other: Role = "agent"
    trigger: tuple[str, ...] = lexicon(default=())
    questions: bool = False
    question_endings: tuple[str, ...] = ("吗", "呢")
    response: tuple[str, ...] = lexicon(default=())
    fillers: tuple[str, ...] = lexicon(default=())
    within_s: float | None = None
    within_turns: int | None = None
    off_subject: tuple[str, ...] = lexicon(default=())
    subject_idf: float = 6.0

    def validate(self) -> list[tuple[str, str]]:
        problems = _positive(self, "within_s", "within_turns", "subject_idf")
        if not self.trigger and not self.questions:
            problems.append(("trigger", "a response rule needs a trigger lexicon or questions = true"))
        if self.role == self.other or "any" in (self.role, self.other):
            problems.append(("other", "role and other must be two different roles (agent, customer)"))
        if self.within_s is None and self.within_turns is None:
            problems.append(("within_s", "a response rule needs within_s or within_turns (or both)"))
        return problems


@dataclass(frozen=True)
class HangupOptions:
    """``hangup``: who released the line first, as the switch recorded it (the manifest's ``hangup_by``;
    a recording cannot tell).

    Attributes:
        first: who should hang up first (001 四.8 确认对方先挂: the customer).
    """

    first: Literal["customer", "agent"] = "customer"


DETAIL_KINDS = ("number", "date", "time", "amount", "address")  # pipeline.rules.details


@dataclass(frozen=True)
class ConfirmOptions:
    """``confirm``: every detail ``role`` gives (a number, a date or time, an amount, an address:
    :mod:`pipeline.rules.details`) is confirmed by ``other`` afterwards: repeated back (the same digits,
    value or place, anywhere later in the call) or checked with a ``confirm`` phrase (核对一下, 您说的
    是…对吗) in its next ``within_turns`` utterances. A detail ``other`` said first is not one to confirm
    (the customer is reading back), and saying it first is no confirmation.

    Attributes:
        role: who gives the details.
        other: who confirms them.
        confirm: phrase groups that ask to confirm.
        within_turns: how many of ``other``'s next utterances a confirm phrase may come in.
        kinds: which details count.
    """

    role: Role = "customer"
    other: Role = "agent"
    confirm: tuple[str, ...] = lexicon(default=("service.confirm",))
    within_turns: int = 3
    kinds: tuple[str, ...] = DETAIL_KINDS

    def validate(self) -> list[tuple[str, str]]:
        problems = _positive(self, "within_turns")
        unknown = [k for k in self.kinds if k not in DETAIL_KINDS]
        if unknown:
            problems.append(("kinds", f"unknown detail kind(s) {', '.join(unknown)}; known: {', '.join(DETAIL_KINDS)}"))
        if not self.kinds:
            problems.append(("kinds", "kinds names no detail"))
        return problems


@dataclass(frozen=True)
class CommitmentOptions:
    """``commitment``: the agent's promises to follow up are kept within the time limits (000 一、回复时效:
    24 h for ordinary matters, 48 h when other departments must act, 72 h across provinces), read by
    :mod:`pipeline.rules.promises`. A promise beyond its limit fails the rule; one without any time says
    ``review`` (no points: a person checks it against the ticket).

    Attributes:
        role: whose promises.
        promise: phrase groups that promise a follow-up (给您回电, 与您联系, 安排师傅上门…).
        departments: phrase groups that make the matter one for other departments.
        provinces: phrase groups that make it one across provinces.
        ordinary_h, departments_h, provinces_h: the limits, in hours from the call's start.
        timezone: the contact centre's time zone (明天下午三点 is read in it).
    """

    role: Role = "agent"
    promise: tuple[str, ...] = lexicon(default=("service.promise",))
    departments: tuple[str, ...] = lexicon(default=("service.matter_departments",))
    provinces: tuple[str, ...] = lexicon(default=("service.matter_provinces",))
    ordinary_h: float = 24.0
    departments_h: float = 48.0
    provinces_h: float = 72.0
    timezone: str = "Asia/Shanghai"

    def validate(self) -> list[tuple[str, str]]:
        problems = _positive(self, "ordinary_h", "departments_h", "provinces_h")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except (KeyError, ValueError, OSError):
            problems.append(("timezone", f"unknown time zone {self.timezone!r} (an IANA name: Asia/Shanghai)"))
        return problems


RuleOptions = Union[KeywordOptions, RegexOptions, SequenceOptions, HoldOptions, SpeechRateOptions,
                    InterruptionOptions, AnswerDelayOptions, DialectOptions, ResponseOptions, HangupOptions, ConfirmOptions, CommitmentOptions]

RULE_TYPES: dict[str, type] = {
    "keyword": KeywordOptions,
    "regex": RegexOptions,
    "sequence": SequenceOptions,
    "hold": HoldOptions,
    "speech_rate": SpeechRateOptions,
    "interruption": InterruptionOptions,
    "answer_delay": AnswerDelayOptions,
    "dialect": DialectOptions,
    "response": ResponseOptions,
    "hangup": HangupOptions,
    "confirm": ConfirmOptions,
    "commitment": CommitmentOptions,
}

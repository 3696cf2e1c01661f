"""The plain records that flow between stages, in the order a call meets them.

First half (audio -> transcript): a :class:`Recording` is decoded; voice activity gives
:class:`SpeechRegion`\\ s and :class:`Turn`\\ s; the model gives :class:`TurnWord`\\ s; the guard and
normalisation turn them into :class:`Utterance`\\ s (with :class:`Word` timings) and
:class:`SuppressedText`; all of it lands in one :class:`CallResult` (or an :class:`ErrorRecord`).

Between the halves: a :class:`CallTranscript`, which the storage layer builds from a fresh result or
from stored rows (``pipeline.storage.rows``); rows (dicts) live only in ``pipeline.storage``.

Second half (transcript -> scores): the rule engine reads transcripts and returns one :class:`Hit` per
finding and one :class:`RuleResult` per call and rule; the rubric returns them with their deductions,
and a :class:`CallScore` per call. Nothing of the second half changes what it was given.

They carry no behaviour beyond small conveniences; the Parquet layout of each is in ``schemas.py``
(a record's fields that are not columns there are working data of the stage that made it, and say so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

SPEAKER_AGENT = "agent"
SPEAKER_CUSTOMER = "customer"
SPEAKER_UNKNOWN = "unknown"  # a mono recording whose speakers were not split (no speaker model)
SPEAKER_OTHER = "other"  # a third voice in a mono recording (a supervisor, a transfer)

# calls.roles_method: how each utterance's speaker was decided
ROLES_CHANNELS = "channels"  # stereo: agent and customer on their own channels
ROLES_WORDS = "diarised+words"  # mono: voices split, the agent's found by what it says (and when)
ROLES_NONE = "none"  # mono, voices not split: speaker unknown
# Below this roles confidence, who is the agent in a mono recording is not trusted: rules about one
# role do not apply to it (not_applicable, with the reason), and it is not scored (unscorable).
MIN_ROLE_CONFIDENCE = 0.7

PASS, FAIL, NOT_APPLICABLE = "pass", "fail", "not_applicable"
# review: the rule found something a person should judge (a rule configured to ask, not to fail:
# dialect.putonghua with action = "review"); no points are taken, and it counts as applicable
REVIEW = "review"
OUTCOMES = (PASS, FAIL, NOT_APPLICABLE, REVIEW)

# reviews.verdict: a reviewer agrees with the machine's outcome, disagrees, or cannot tell
CONFIRMED, OVERTURNED, UNSURE = "confirmed", "overturned", "unsure"
VERDICTS = (CONFIRMED, OVERTURNED, UNSURE)

# calls.status: scored (ok); transcribed but not a whole conversation to score (unscorable: no or too
# little agent speech, cut off); or failed (error). ok + unscorable + error = every input of a night.
STATUS_OK, STATUS_UNSCORABLE, STATUS_ERROR = "ok", "unscorable", "error"


def has_transcript(call: dict) -> bool:
    """A stored ``calls`` row whose transcript is whole: scored, unscorable, or failed only because a
    rule crashed on it (the transcript is fine, the rule may be fixed now). Such a call is reused by
    an incremental night and assessed and checked again by every night and rescore."""
    return call.get("status", STATUS_OK) in (STATUS_OK, STATUS_UNSCORABLE) or call.get("error_stage") == "rules"


# who released the line, as switches and CTI systems write it (case and spaces ignored) -> callqa's word
HANGUP_SPELLINGS = {
    "agent": ("agent", "坐席", "座席", "客服", "员工", "话务员", "坐席挂机", "座席挂机", "客服挂机", "坐席先挂",
              "agent_disconnect", "agent_hangup", "agenthangup", "agent hangup", "agent released"),
    "customer": ("customer", "客户", "用户", "顾客", "客户挂机", "用户挂机", "客户先挂", "用户先挂",
                 "customer_disconnect", "customer_hangup", "customerhangup", "customer hangup", "customer released"),
    "other": ("other", "system", "系统", "系统挂机", "平台", "third_party_disconnect", "telecom_problem",
              "contact_flow_disconnect", "transfer", "转接", "network", "网络"),
}
_HANGUP = {spelling.replace(" ", "").lower(): word for word, spellings in HANGUP_SPELLINGS.items()
           for spelling in spellings}
# the customer's rating (003: 非常满意 5 ... 很不满意 1), as a digit or in words
SATISFACTION_WORDS = {"非常满意": 5, "很满意": 5, "满意": 4, "一般": 3, "基本满意": 3, "不满意": 2,
                      "很不满意": 1, "非常不满意": 1}
_RATING = re.compile(r"([1-5])(?:\.0+)?")
_FULL_WIDTH_DIGITS = {code: code - 0xFEE0 for code in range(0xFF10, 0xFF1A)}


def parse_hangup_by(value: str) -> str | None:
    """The manifest's ``hangup_by`` as ``agent``, ``customer`` or ``other`` (None when empty).

    Raises:
        ValueError: a value none of the known spellings (``HANGUP_SPELLINGS``) matches.
    """
    if not value.strip():
        return None
    found = _HANGUP.get(value.replace(" ", "").strip().lower())
    if found is None:
        raise ValueError(f"hangup_by {value!r} is not one of agent, customer, other (or 坐席挂机, 客户挂机, "
                         "AGENT_DISCONNECT, CUSTOMER_DISCONNECT, system …; see docs/inputs-and-outputs.md)")
    return found


def parse_satisfaction(value: str) -> int | None:
    """The manifest's ``satisfaction`` as a rating from 1 to 5 (None when empty): a digit (``4``,
    ``4.0``, a full-width ``４``) or 003's words (非常满意 5, 满意 4, 一般 3, 不满意 2, 很不满意 1).

    Raises:
        ValueError: anything else.
    """
    text = value.strip().translate(_FULL_WIDTH_DIGITS)
    if not text:
        return None
    if text in SATISFACTION_WORDS:
        return SATISFACTION_WORDS[text]
    digit = _RATING.fullmatch(text)
    if digit:
        return int(digit.group(1))
    raise ValueError(f"satisfaction {value!r} is not a rating from 1 to 5 (非常满意 5, 满意 4, 一般 3, 不满意 2, "
                     "很不满意 1)")


@dataclass(frozen=True)
class Recording:
    """One input recording and its metadata (from manifest.csv or defaults).

    ``file`` is the path relative to the input folder, as written in the manifest and the outputs.
    """

    path: Path
    file: str
    call_id: str
    agent_id: str
    started_at: datetime  # timezone-aware
    agent_channel: str  # left | right | mono
    company: str
    hangup_by: str | None = None  # who released the line, from the switch's record: agent | customer | other
    satisfaction: int | None = None  # the customer's rating after the call, 1 (很不满意) to 5 (非常满意)


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of voice activity on one speaker's channel (from Silero VAD, not from Whisper)."""

    speaker: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Turn:
    """A stretch of one speaker's speech that becomes one utterance (if anything is said in it).

    ``channel`` is the row of the decoded audio it is read from; ``voiced_s`` the voice activity
    inside it (the turn minus its short pauses).
    """

    speaker: str
    channel: int
    start_s: float
    end_s: float
    voiced_s: float = 0.0


@dataclass(frozen=True)
class TurnWord:
    """A word the model recognised, mapped back to its turn and its time in the recording, with the
    confidence figures of the model segment it came from (the guard reads them; None from a model
    that gives none, see :mod:`pipeline.transcribe.speech`)."""

    turn_index: int
    word: str
    start_s: float
    end_s: float
    prob: float | None = None
    segment_id: int = 0
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None


@dataclass(frozen=True)
class Word:
    """A word of a stored utterance: normalised text and its time in the recording."""

    word: str
    start_s: float
    end_s: float
    prob: float | None  # the model's word probability; None where the engine gives none


@dataclass(frozen=True)
class NumberMark:
    """A number said in an utterance (four digits or more), kept comparable after masking: where it is
    in the text and its digits' keyed code (:func:`pipeline.text.number_code`, a key per call that is
    never stored), so a number the agent repeats back can be told from another one."""

    start: int  # character offsets in the utterance's text
    end: int
    code: str


@dataclass(frozen=True)
class PhraseCheck:
    """A phrase asked about on an utterance's audio (``utterances.checks``): was ``phrase`` said at key
    characters ``key_start:key_end``, where the transcript has ``heard``? ``options`` are the phrase
    and its rivals; ``logprobs[i]`` is how much likelier the speech model found rival i's character
    than the phrase's where the two part (你 against 您), on the clip ``clip_start_s``-``clip_end_s``
    after the ``prefix`` (the utterance's words before them in the clip), in nats (0 for the phrase
    itself; negative: the phrase is likelier); ``priors`` the same on silence. The decision is the
    rules' (``pipeline.rules.verification``), from these numbers alone."""

    phrase: str
    key_start: int
    key_end: int
    heard: str
    options: list[str]
    logprobs: list[float]
    priors: list[float]
    prefix: str
    clip_start_s: float
    clip_end_s: float


@dataclass
class Utterance:
    """One turn of one speaker: split where the speaker pauses."""

    call_id: str
    utterance_idx: int
    speaker: str
    start_s: float
    end_s: float
    text: str  # normalised: simplified, width folded
    raw_text: str  # as the model wrote it
    # the speech model's confidence statistics (Whisper's decoder: mean token log-probability, p(no
    # speech)); None where the engine gives none (an imported transcript without them)
    avg_logprob: float | None
    no_speech_prob: float | None
    words: list[Word] = field(default_factory=list)
    role_confidence: float | None = None  # 1 on stereo; mono: how sure the speaker is right; None: unknown
    checks: list[PhraseCheck] = field(default_factory=list)  # phrases checked on its audio (pipeline.verify)
    numbers: list[NumberMark] | None = None  # the numbers said, comparable after masking (None: not marked)


@dataclass(frozen=True)
class SuppressedText:
    """Text the hallucination guard removed, kept with the reason so nothing disappears unseen."""

    speaker: str
    start_s: float
    end_s: float
    raw_text: str
    text: str
    reason: str


@dataclass(frozen=True)
class ErrorRecord:
    """Why one input could not be processed, and at which stage.

    For an input rejected before processing (a manifest row, a file the manifest lacks), ``agent_id``,
    ``path`` and ``line`` (of the manifest) say what is known of it, for its ``calls`` row.
    """

    file: str
    call_id: str | None
    stage: str
    error_type: str
    message: str
    started_at: datetime | None = None
    agent_id: str | None = None
    path: str | None = None
    line: int | None = None


@dataclass
class CallResult:
    """Everything the first half learned about one recording."""

    recording: Recording
    status: str  # ok | error
    model: str
    processed_at: datetime
    duration_s: float | None = None
    channels: int | None = None
    sample_rate: int | None = None
    codec: str | None = None
    utterances: list[Utterance] = field(default_factory=list)
    voice_activity: list[SpeechRegion] = field(default_factory=list)
    suppressed: list[SuppressedText] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: ErrorRecord | None = None
    timings: dict[str, float] = field(default_factory=dict)
    agent_language: str | None = None  # Whisper's language identification, where informative
    agent_language_prob: float | None = None
    # the model's probability that the agent's speech is in the decoding language (zh), from the
    # encoder output of its first window (language identification at one decoder step)
    agent_zh_prob: float | None = None
    content_sha256: str | None = None
    transcription_fingerprint: str | None = None
    truncated: bool = False  # decoding stopped early, or the file holds less audio than its header says
    roles_method: str | None = None  # ROLES_*: how the speakers were decided
    roles_confidence: float | None = None  # how sure the agent is the agent (1 on stereo)
    crosstalk_db: float | None = None  # stereo: one side's speech in the other channel, relative to it (at most)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


@dataclass(frozen=True)
class CallTranscript:
    """One call as the second half reads it: what is known of the call, its utterances in time order
    and its voice activity as (speaker, start_s, end_s). ``status``/``error_stage`` are the transcript's
    (``ok``; ``unscorable`` from an earlier assessment; ``error`` at stage ``rules`` when a rule crashed
    on it before), ``warnings`` those of transcription."""

    call_id: str
    agent_id: str
    company: str
    channels: int | None
    duration_s: float | None
    utterances: tuple[Utterance, ...] = ()
    voice: tuple[tuple[str, float, float], ...] = ()
    file: str | None = None
    started_at: datetime | None = None
    call_date: str | None = None
    run_id: str | None = None
    status: str = STATUS_OK
    error_stage: str | None = None
    truncated: bool | None = None
    warnings: tuple[str, ...] = ()
    agent_language: str | None = None
    agent_language_prob: float | None = None
    agent_zh_prob: float | None = None
    roles_confidence: float | None = None
    hangup_by: str | None = None  # who released the line (the manifest's hangup_by): agent | customer | other


@dataclass(frozen=True)
class CallScore:
    """What the second half decided about one call: its status after the assessment and the rules
    (ok, unscorable with its reason, or error at stage ``rules``), its warnings, and its score (None
    unless ok)."""

    call_id: str
    status: str
    status_reason: str | None = None
    error_stage: str | None = None
    warnings: tuple[str, ...] = ()
    score: float | None = None
    passed: bool | None = None
    red_line: bool | None = None
    rubric_version: str = ""
    lexicon_version: str = ""


@dataclass
class Commitment:
    """A follow-up the agent promised (``service.commitment_time``); a ``commitments`` row, for a
    supervisor to check against the ticket system. Texts are as stored: masked."""

    call_id: str
    agent_id: str
    rule_id: str
    utterance_idx: int
    at_s: float
    until_s: float
    promised: str  # the clause the promise was said in
    phrase: str  # the promise phrase found (给您回电)
    due_words: str | None  # the words that say when (三个工作日内); None: no time said
    due_hours: float | None  # hours from the call's start; None: no time said (0: soon)
    due_at: datetime | None  # the call's start plus due_hours (UTC)
    matter: str  # ordinary | other departments | across provinces
    limit_h: float
    within_limit: bool | None  # None: no time said (the rule says review)
    customer_said: str | None  # the customer's last words before the promise: what was asked
    call_date: str | None = None


@dataclass(slots=True)
class Hit:
    """One finding of a rule: a phrase said (or a pattern matched) in one utterance; a ``hits`` row.

    ``key_start``/``key_end`` are working data, not columns: where the phrase is in the utterance's
    match key, so that a rescore can time it from the utterance's words.
    """

    call_id: str
    rule_id: str
    speaker: str
    start_s: float
    end_s: float
    utterance_idx: int
    phrase: str  # the lexicon entry (or the pattern)
    matched_text: str  # what was said, as transcribed
    match_kind: str  # exact | sound_alike | near_sound | asr_variant | regex | question
    category: str | None
    severity: str | None
    key_start: int = 0
    key_end: int = 0
    call_date: str | None = None
    margin: float | None = None  # checked on the audio: the phrase's margin over its best rival
    rival: str | None = None  # ... and that rival (what was said instead, when the margin is negative)


@dataclass(slots=True)
class RuleResult:
    """One rule's verdict on one call, with its evidence; a ``rule_results`` row.

    ``at_s``/``until_s`` say where in the call the evidence is (None: nothing to point at).
    ``moment_from_hits`` is working data, not a column: the moment is the earliest finding's, so it
    follows the finding when a rescore times the findings from their words.
    """

    call_id: str
    agent_id: str
    rule_id: str
    outcome: str  # pass | fail | not_applicable | review
    hit_count: int
    evidence: str
    lexicon_version: str = ""
    deduction: float | None = None  # filled in by the rubric
    at_s: float | None = None
    until_s: float | None = None
    moment_from_hits: bool = False
    call_date: str | None = None
    verdict: str | None = None  # a reviewer's latest verdict on this result (confirmed | overturned | unsure)
    final_outcome: str | None = None  # the outcome after review (the rubric deducts by it); outcome if unreviewed


@dataclass(frozen=True)
class Scoring:
    """The second half's answer for a set of calls: a :class:`CallScore` per call with a transcript,
    the hits and rule results, an :class:`ErrorRecord` per call a rule crashed on, and the versions of
    the rubric and lexicons that decided (every call of the set is stamped with them)."""

    calls: tuple[CallScore, ...]
    hits: tuple[Hit, ...]
    results: tuple[RuleResult, ...]
    errors: tuple[ErrorRecord, ...]
    rubric_version: str
    lexicon_version: str
    commitments: tuple[Commitment, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """The verdict that counts on one rule result: the latest a reviewer saved."""

    call_id: str
    rule_id: str
    verdict: str  # confirmed | overturned | unsure
    machine_outcome: str  # the outcome the reviewer judged
    reviewer: str
    recorded_at: object  # a timestamp
    comment: str | None = None

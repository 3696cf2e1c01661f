"""The plain records that flow between stages: one recording in, one CallResult out.

They carry no behaviour beyond small conveniences; the Parquet layout of each is in ``schemas.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

SPEAKER_AGENT = "agent"
SPEAKER_CUSTOMER = "customer"
SPEAKER_UNKNOWN = "unknown"  # mono recordings, until role attribution exists


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


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    prob: float


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of voice activity on one speaker's channel (from Silero VAD, not from Whisper)."""

    speaker: str
    start_s: float
    end_s: float


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
    avg_logprob: float
    no_speech_prob: float
    words: list[Word] = field(default_factory=list)


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
    """Why one input could not be processed, and at which stage."""

    file: str
    call_id: str | None
    stage: str
    error_type: str
    message: str
    started_at: datetime | None = None


@dataclass
class CallResult:
    """Everything the pipeline learned about one recording."""

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
    content_sha256: str | None = None
    transcription_fingerprint: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

"""Where a night's transcripts come from: the engine seam.

A night asks its engine six things, and nothing else about speech recognition:

- :meth:`Engine.discover`: the night's inputs (recordings, or transcript files) with their manifest rows;
- :meth:`Engine.label`: what ``calls.model`` records (``"Systran/faster-whisper-base cpu/int8"``,
  ``"import"``);
- :meth:`Engine.fingerprint`: a hash of everything that changes a transcript, so that an incremental
  night reuses a call only when tonight would give the same transcript;
- :meth:`Engine.content_path`: the file a call's transcript comes from (hashed to see it changed);
- :meth:`Engine.duration`: an input's length in seconds, to batch the night (None: unknown);
- :meth:`Engine.process`: one input to one :class:`~pipeline.records.CallResult`, never raising for a bad
  input (it becomes an error result), only :class:`~pipeline.errors.TransientInputError` for a read that
  may work later.

Everything after the transcript (masking, rules, scoring, review, notebooks, examples) reads the same
``CallResult`` whichever engine made it. Two engines exist, chosen by ``[asr] engine``:

- ``whisper`` (:mod:`pipeline.engines.whisper`): recordings transcribed here by a speech model (any
  CTranslate2 Whisper; another model through :class:`~pipeline.transcribe.speech.SpeechModel`), with
  voice activity per channel, turns, the hallucination guard and the second listening;
- ``import`` (:mod:`pipeline.engines.imported`): transcripts another recogniser already wrote (callqa's
  own JSON format, or Alibaba Cloud's recording-file recognition result), one file per call.

How to add one: docs/transcription.md, "Engines".
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..config import CallqaConfig
from ..records import CallResult, Recording
from ..transcribe.discover import Discovery


class Engine(Protocol):
    """What a night needs of the thing that turns its inputs into transcripts.

    An engine may also say ``calls_per_task`` (an int): how many inputs share a task when one costs
    next to nothing (imported transcripts: 500); without it, inputs are grouped by ``[run]
    batch_audio_s`` of audio, at most ``[run] batch_max_calls``.
    """

    name: str

    def discover(self, input_dir: Path) -> Discovery:
        """The night's inputs. Raises InputError / ManifestError when the folder cannot be used at all."""
        ...

    def label(self) -> str:
        """What ``calls.model`` records for a call this engine made. Raises ModelError."""
        ...

    def fingerprint(self, label: str) -> str:
        """A hash of every option that changes a transcript (compared by an incremental night)."""
        ...

    def content_path(self, recording: Recording) -> Path:
        """The file whose bytes the call's transcript comes from (hashed: a changed file is read again)."""
        ...

    def duration(self, recording: Recording) -> float | None:
        """The input's length in seconds, cheaply (to batch the night); None when unknown."""
        ...

    def prepare(self, workers: int) -> None:
        """Load what every input needs once, before the night's threads share it (a model)."""
        ...

    def process(self, recording: Recording, workers: int) -> CallResult:
        """One input to its result (an error result for a bad input). Raises TransientInputError."""
        ...


def engine_for(config: CallqaConfig) -> Engine:
    """The engine ``[asr] engine`` names."""
    if config.asr.engine == "import":
        from .imported import ImportEngine

        return ImportEngine(config)
    from .whisper import TranscribingEngine

    return TranscribingEngine(config)

"""The ``whisper`` engine: recordings transcribed here by a CTranslate2 Whisper model (faster-whisper).

The model is loaded once per process and shared by a worker's threads; each recording goes through
:func:`pipeline.transcribe.recording.process_recording` (voice activity per channel, turns, decoding,
the hallucination guard, masking) and, where rules ask for it, the second listening
(:mod:`pipeline.verify`).
"""

from __future__ import annotations

from pathlib import Path

from ..config import CallqaConfig
from ..records import CallResult, Recording
from ..transcribe.audio import probe_duration
from ..transcribe.discover import Discovery, discover_recordings
from ..transcribe.guard import HallucinationGuard
from ..transcribe.model import load_model, model_label
from ..transcribe.recording import process_recording, transcription_fingerprint
from ..verify import verifier_for


class WhisperEngine:
    """Recordings in, transcripts by Whisper (``[asr] model``: the bundled base, or any CTranslate2 Whisper)."""

    name = "whisper"

    def __init__(self, config: CallqaConfig):
        self.config = config
        self._guard: HallucinationGuard | None = None

    def discover(self, input_dir: Path) -> Discovery:
        return discover_recordings(input_dir, self.config.input)

    def label(self) -> str:
        return model_label(self.config.asr)

    def fingerprint(self, label: str) -> str:
        return transcription_fingerprint(label, self.config)

    def content_path(self, recording: Recording) -> Path:
        return Path(recording.path)

    def duration(self, recording: Recording) -> float | None:
        return probe_duration(recording.path)

    def prepare(self, workers: int) -> None:
        """Load the model once, before the night's threads share it."""
        load_model(self.config.asr, workers)

    def process(self, recording: Recording, workers: int) -> CallResult:
        model = load_model(self.config.asr, workers)  # cached per process: loaded once per worker
        if self._guard is None:
            self._guard = HallucinationGuard(self.config.guard)
        return process_recording(recording, model, self.config, guard=self._guard,
                                 listen=verifier_for(self.config, model))

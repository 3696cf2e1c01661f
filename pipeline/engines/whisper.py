"""The ``whisper`` engine: recordings transcribed here by a speech model, CTranslate2 Whisper
(faster-whisper) by default.

:class:`TranscribingEngine` is everything a transcribing night does around the model: each recording
goes through :func:`pipeline.transcribe.recording.process_recording` (voice activity per channel,
turns, decoding, the hallucination guard, masking) and, where rules ask for it and the model can
score given texts, the second listening (:mod:`pipeline.verify`). The model is a
:class:`~pipeline.transcribe.speech.SpeechModel`, loaded once per process and shared by a worker's
threads; :class:`WhisperSpeech` is the CTranslate2 Whisper one. Another model is another loader
(``TranscribingEngine(config, load, label)``): docs/transcription.md, "Engines".
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from ..config import AsrOptions, CallqaConfig, VerifyOptions
from ..records import Turn, TurnWord
from ..records import CallResult, Recording
from ..transcribe import decode
from ..transcribe.audio import probe_duration
from ..transcribe.discover import Discovery, discover_recordings
from ..transcribe.guard import HallucinationGuard
from ..transcribe.model import LoadedModel, load_model, model_label
from ..transcribe.recording import process_recording, transcription_fingerprint
from ..transcribe.speech import PhraseScorer, SpeechModel
from ..verify import verifier_for


class WhisperSpeech:
    """A loaded CTranslate2 Whisper model as a :class:`~pipeline.transcribe.speech.SpeechModel`: batched
    decoding of packed turns with a second pass on skipped ones (:mod:`pipeline.transcribe.decode`),
    Whisper's language identification, its decoder scoring given texts (:mod:`pipeline.verify.scorer`),
    and its confidence statistics."""

    statistics = True

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded

    def __getattr__(self, name: str):
        # what Whisper's own code reads (options, the faster-whisper model, the batched pipeline) comes
        # from the loaded model, so the wrapper goes wherever a LoadedModel went
        return getattr(self.loaded, name)

    @property
    def model_label(self) -> str:
        return self.loaded.model_label

    @property
    def threads(self) -> int:
        return self.loaded.threads

    def transcribe_turns(self, audio, turns: list[Turn], segmentation, prompt: str = "", language_probs=None,
                         timings=None, echo_of=None) -> list[TurnWord]:
        return decode.transcribe_turns(self.loaded, audio, turns, segmentation, prompt, language_probs, timings,
                                       echo_of)

    def identify_language(self, audio, turns: list[Turn], candidates: tuple[str, ...]) -> tuple[str, float] | None:
        return decode.identify_language(self.loaded, audio, turns, candidates)

    def phrase_scorer(self, options: VerifyOptions) -> PhraseScorer:
        from ..verify.scorer import PhraseScorer as WhisperPhraseScorer

        return WhisperPhraseScorer(self.loaded, options)


_speech: dict[LoadedModel, WhisperSpeech] = {}
_speech_lock = threading.Lock()


def load_whisper(options: AsrOptions, workers: int = 1) -> WhisperSpeech:
    """The process's Whisper model (loaded once, :func:`pipeline.transcribe.model.load_model`) as a
    speech model: one wrapper per model, options and threads, so every recording of a worker gets the same
    one and the second listening's verifier, scorer and caches are built once (keyed by the wrapper's
    identity, they were built again for every recording, and kept)."""
    loaded = load_model(options, workers)  # a new LoadedModel each call, equal to the last one
    with _speech_lock:
        return _speech.setdefault(loaded, WhisperSpeech(loaded))


class TranscribingEngine:
    """Recordings in, transcripts by a speech model (default: ``[asr] model``, the bundled Whisper base
    or any CTranslate2 Whisper).

    Args:
        config: the night's options.
        load: ``load(asr_options, workers)`` -> the process's loaded speech model (cached by the loader).
        label: ``label(asr_options)`` -> what ``calls.model`` records, without loading the model.
    """

    name = "whisper"

    def __init__(self, config: CallqaConfig, load: Callable[[AsrOptions, int], SpeechModel] | None = None,
                 label: Callable[[AsrOptions], str] | None = None):
        self.config = config
        self.load = load or (lambda options, workers: load_whisper(options, workers))
        self.label_of = label or model_label
        self._guard: HallucinationGuard | None = None

    def discover(self, input_dir: Path) -> Discovery:
        return discover_recordings(input_dir, self.config.input)

    def label(self) -> str:
        return self.label_of(self.config.asr)

    def fingerprint(self, label: str) -> str:
        return transcription_fingerprint(label, self.config)

    def content_path(self, recording: Recording) -> Path:
        return Path(recording.path)

    def duration(self, recording: Recording) -> float | None:
        return probe_duration(recording.path)

    def prepare(self, workers: int) -> None:
        """Load the model once, before the night's threads share it."""
        self.load(self.config.asr, workers)

    def process(self, recording: Recording, workers: int) -> CallResult:
        model = self.load(self.config.asr, workers)  # cached per process: loaded once per worker
        if self._guard is None:
            self._guard = HallucinationGuard(self.config.guard)
        return process_recording(recording, model, self.config, guard=self._guard,
                                 listen=verifier_for(self.config, model))


WhisperEngine = TranscribingEngine  # the name the engine had before the speech-model seam

"""The speech-model seam: the few things callqa asks of the model that turns speech into words.

Everything around the model is callqa's and stays the same whichever model listens: decoding the
recording, voice activity per channel, turns, roles, a mono call's voices, the hallucination guard,
masking, and the rules' decision on what the second listening heard. A model has to:

- :meth:`SpeechModel.transcribe_turns`: the words of a group of turns of one recording, each with its
  turn and its time in the recording;
- :meth:`SpeechModel.identify_language`: the most probable of some languages for a speaker's first
  speech, or None when it cannot tell (then ``dialect.putonghua`` does not read it);
- :meth:`SpeechModel.phrase_scorer`: something that scores *given* texts on a clip of audio (the
  second listening, :mod:`pipeline.verify`), or None when the model cannot (nothing is verified: the
  phrases are judged on the transcript);
- say whether it gives **confidence statistics** (``statistics``): Whisper's segment log-probability,
  no-speech probability and word probabilities. The guard's confidence checks and the rules that read
  them (``dialect.putonghua``) use them where present; a model without them leaves them ``None`` on
  every :class:`~pipeline.records.TurnWord`, and those checks are skipped or say ``not_applicable``.

The CTranslate2 Whisper implementation is :class:`pipeline.engines.whisper.WhisperSpeech`; how to add
another is in docs/transcription.md ("Engines").
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..config import SegmentationOptions, VerifyOptions
from ..records import Turn, TurnWord


class PhraseScorer(Protocol):
    """Scores given texts on a clip: how much more likely each option is than the first, there."""

    def score(self, samples: np.ndarray, prefix: str, options: Sequence[str]) -> tuple[list[float], list[float]]:
        """Each option's score on the 16 kHz clip ``samples`` after ``prefix`` (the first option 0, the
        phrase itself), and the same on silence (the prior; an empty list when not used)."""
        ...


class SpeechModel(Protocol):
    """A loaded speech model, shared by every recording (and thread) of a worker process."""

    model_label: str  # what calls.model records: the model and how it runs ("… cpu/int8")
    threads: int  # CPU threads each worker gives it (the speaker model runs with as many)
    statistics: bool  # gives avg_logprob, no_speech_prob and word probabilities

    def transcribe_turns(self, audio, turns: list[Turn], segmentation: SegmentationOptions, prompt: str = "",
                         language_probs: dict[str, float | None] | None = None,
                         timings: dict[str, float] | None = None, echo_of: str | None = None) -> list[TurnWord]:
        """Every word of ``turns`` (indices into that list, times in the recording).

        Args:
            audio: the turns' audio (:class:`pipeline.transcribe.decode.WholeAudio` or its clips: 16 kHz
                float32 rows per channel).
            turns: the turns to transcribe, each shorter than the model's window.
            segmentation: packing gap, padding and the coverage threshold.
            prompt: text that primes the decoder (a model without prompts ignores it).
            language_probs: speakers (keys, each None until heard) whose probability of speaking the
                decoding language to fill in, when the model can tell.
            timings: where to add the seconds spent (``transcribe_s``, ``second_pass_s``).
            echo_of: the part of ``prompt`` an agent's turn must not merely repeat.

        Raises:
            TranscriptionError: the model failed.
        """
        ...

    def identify_language(self, audio, turns: list[Turn], candidates: tuple[str, ...]) -> tuple[str, float] | None:
        """The most likely language of these turns' first speech and its probability, when the model
        knows one of ``candidates``; else None."""
        ...

    def phrase_scorer(self, options: VerifyOptions) -> PhraseScorer | None:
        """The second listening's scorer on this model, or None when it cannot score given texts."""
        ...

"""One recording from file to CallResult: hash -> decode -> roles -> voice activity -> turns -> decode
with the model -> guard -> utterances -> masking.

``process_recording`` never raises for a bad recording: any failure becomes a CallResult with status
``error`` and an ErrorRecord naming the stage, so one bad file never stops a night. Only a read that
may work later (:class:`~pipeline.errors.TransientInputError`) is raised, for the caller to retry.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import time
from dataclasses import asdict
from datetime import datetime, timezone

from ..config import CallqaConfig
from ..errors import PipelineError, TransientInputError
from ..records import SPEAKER_AGENT, STATUS_ERROR, STATUS_OK, CallResult, ErrorRecord, Recording, SpeechRegion
from ..storage.hashing import file_sha256
from .audio import decode_audio, detect_speech
from .decode import identify_language, render_prompt, transcribe_turns
from .guard import HallucinationGuard, read_phrase_text
from .model import LoadedModel
from .privacy import mask_result
from .roles import channel_roles
from .turns import regions_to_turns
from .utterances import build_utterances

logger = logging.getLogger("callqa.recording")

# errno values of a read that may work a little later (network shares, busy storage)
TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY, errno.ENETDOWN,
                    errno.ENETUNREACH, errno.ECONNRESET, errno.EHOSTUNREACH}

# Options that do not change what a transcript says: how hard the machine works.
_NOT_IN_FINGERPRINT = {"cpu_threads", "batch_size", "device"}


def transcription_fingerprint(model_label: str, config: CallqaConfig) -> str:
    """A hash of the model and every option that changes a transcript (decoding, voice activity,
    turns, guard and its phrase list, masking): what an incremental night compares.

    Raises:
        HallucinationListError: the guard's phrase list cannot be read.
    """
    options = {
        "model": model_label,
        "asr": {k: v for k, v in asdict(config.asr).items() if k not in _NOT_IN_FINGERPRINT and k != "model"},
        "voice_activity": asdict(config.voice_activity),
        "segmentation": asdict(config.segmentation),
        "guard": {**asdict(config.guard), "phrases": read_phrase_text(config.guard.phrases_file)},
        "privacy": asdict(config.privacy),
    }
    options["guard"].pop("phrases_file")
    text = json.dumps(options, sort_keys=True, ensure_ascii=False, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def process_recording(recording: Recording, model: LoadedModel, config: CallqaConfig,
                      guard: HallucinationGuard | None = None) -> CallResult:
    """Transcribe one recording into utterances with voice activity and guard records.

    Args:
        recording: the file and its metadata.
        model: the loaded speech model (shared by all recordings of a worker).
        config: run options.
        guard: a prepared hallucination guard (built from config if omitted).

    Returns:
        The result; ``status`` is ``error`` with ``error`` filled when anything failed.

    Raises:
        TransientInputError: the file could not be read for a reason that may pass; the caller may
            retry (every other failure is returned as an error result, never raised).
    """
    result = CallResult(recording=recording, status=STATUS_OK, model=model.model_label,
                        processed_at=datetime.now(timezone.utc),
                        transcription_fingerprint=transcription_fingerprint(model.model_label, config))
    stage = "decode"
    clock = time.perf_counter()
    try:
        try:
            result.content_sha256 = file_sha256(recording.path)
        except OSError as exc:
            if exc.errno in TRANSIENT_ERRNOS:
                raise TransientInputError(f"{recording.file}: cannot read it just now: {exc}") from exc
            raise
        decoded = decode_audio(recording.path)
        result.duration_s = round(decoded.duration_s, 3)
        result.channels, result.sample_rate, result.codec = decoded.channels, decoded.sample_rate, decoded.codec
        if decoded.truncated:
            result.truncated = True
            result.warnings.append("decoding stopped early on corrupt data; the audio before it was processed")
        rows, speakers, warnings = channel_roles(recording, decoded.channels, decoded.channels_data)
        result.warnings.extend(warnings)
        result.timings["decode_s"] = time.perf_counter() - clock

        stage, clock = "voice_activity", time.perf_counter()
        turns = []
        for channel, speaker in enumerate(speakers):
            regions = detect_speech(rows[channel], config.voice_activity)
            result.voice_activity.extend(SpeechRegion(speaker, round(s, 3), round(e, 3)) for s, e in regions)
            turns.extend(regions_to_turns(regions, speaker, channel, config.segmentation))
        result.voice_activity.sort(key=lambda r: (r.start_s, r.speaker))
        result.timings["vad_s"] = time.perf_counter() - clock

        stage, clock = "transcribe", time.perf_counter()
        prompt = render_prompt(config.asr.initial_prompt, recording.company)
        words = transcribe_turns(model, rows, turns, config.segmentation, prompt)
        identified = identify_language(model, rows, [t for t in turns if t.speaker == SPEAKER_AGENT],
                                       config.asr.dialect_languages)
        if identified:
            result.agent_language, result.agent_language_prob = identified[0], round(identified[1], 4)
        result.timings["asr_s"] = time.perf_counter() - clock

        stage, clock = "utterances", time.perf_counter()
        guard = guard or HallucinationGuard(config.guard)
        result.utterances, result.suppressed = build_utterances(recording.call_id, turns, words, guard,
                                                                echo_of=prompt)
        mask_result(result, config.privacy)  # before anything is stored or checked
        result.timings["utterances_s"] = time.perf_counter() - clock
    except TransientInputError:
        raise
    except Exception as exc:  # one bad recording must never stop the others
        if not isinstance(exc, PipelineError):
            logger.exception("%s: unexpected failure in stage %s", recording.file, stage)
        result.status = STATUS_ERROR
        result.utterances, result.suppressed = [], []
        result.error = ErrorRecord(file=recording.file, call_id=recording.call_id,
                                   stage=getattr(exc, "stage", stage), error_type=type(exc).__name__,
                                   message=str(exc) or repr(exc), started_at=recording.started_at)
    return result

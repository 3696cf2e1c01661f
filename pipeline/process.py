"""One recording from file to CallResult: decode -> voice activity -> turns -> ASR -> guard -> utterances.

``process_recording`` never raises for a bad recording: any failure becomes a CallResult with status
``error`` and an ErrorRecord naming the stage, so one bad file never stops a night.
"""

from __future__ import annotations

import errno
import logging
import time
from datetime import datetime, timezone

import numpy as np

from .asr import LoadedModel, identify_language, render_prompt, transcribe_turns
from .audio import decode_audio, detect_speech
from .config import CallqaConfig
from .errors import PipelineError, TransientInputError
from .guard import HallucinationGuard
from .privacy import mask_result
from .records import (SPEAKER_AGENT, SPEAKER_CUSTOMER, SPEAKER_UNKNOWN, CallResult, ErrorRecord,
                      Recording, SpeechRegion)
from .segment import build_utterances, regions_to_turns

logger = logging.getLogger("callqa.process")

# errno values of a read that may work a little later (network shares, busy storage)
TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY, errno.ENETDOWN,
                    errno.ENETUNREACH, errno.ECONNRESET, errno.EHOSTUNREACH}

# Stereo files whose two channels differ by less than this are one signal copied twice.
_DUPLICATE_CHANNEL_TOLERANCE = 1e-4


def channel_roles(recording: Recording, decoded_channels: int,
                  channels_data: np.ndarray) -> tuple[np.ndarray, list[str], list[str]]:
    """Decide which channel is whose.

    Returns:
        The audio rows to transcribe, the speaker of each row, and warnings about the decision.
    """
    warnings: list[str] = []
    if decoded_channels == 2:
        if recording.agent_channel == "mono":
            warnings.append("agent_channel is mono but the file is stereo: channels mixed, speakers unknown")
            return channels_data.mean(axis=0, keepdims=True), [SPEAKER_UNKNOWN], warnings
        if np.max(np.abs(channels_data[0] - channels_data[1])) < _DUPLICATE_CHANNEL_TOLERANCE:
            warnings.append("both channels carry the same signal: treated as mono, speakers unknown")
            return channels_data[:1], [SPEAKER_UNKNOWN], warnings
        if recording.agent_channel == "right":
            return channels_data[::-1].copy(), [SPEAKER_AGENT, SPEAKER_CUSTOMER], warnings
        return channels_data, [SPEAKER_AGENT, SPEAKER_CUSTOMER], warnings
    if recording.agent_channel != "mono":
        warnings.append(f"agent_channel is {recording.agent_channel} but the file is mono: speakers unknown")
    return channels_data, [SPEAKER_UNKNOWN], warnings


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
    from .incremental import file_sha256, transcription_fingerprint

    result = CallResult(recording=recording, status="ok", model=model.model_label,
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
        result.status = "error"
        result.utterances, result.suppressed = [], []
        result.error = ErrorRecord(file=recording.file, call_id=recording.call_id,
                                   stage=getattr(exc, "stage", stage), error_type=type(exc).__name__,
                                   message=str(exc) or repr(exc), started_at=recording.started_at)
    return result

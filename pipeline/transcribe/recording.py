"""One recording from file to CallResult: hash -> decode -> roles -> voice activity -> turns -> decode
with the model -> guard -> utterances -> masking.

``process_recording`` never raises for a bad recording: any failure becomes a CallResult with status
``error`` and an ErrorRecord naming the stage, so one bad file never stops a night. Only a read that
may work later (:class:`~pipeline.errors.TransientInputError`) is raised, for the caller to retry.

Memory does not grow with a recording's length: a long recording is read piece by piece
(:mod:`pipeline.transcribe.streaming`). A mono recording's voices are split and named in
:mod:`pipeline.transcribe.mono`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..config import CallqaConfig
from ..errors import PipelineError, TransientInputError
from ..records import (ROLES_CHANNELS, ROLES_NONE, SPEAKER_AGENT, SPEAKER_UNKNOWN, STATUS_ERROR, STATUS_OK, CallResult,
                       ErrorRecord, Recording, SpeechRegion)
from ..storage.hashing import file_sha256
from .audio import TARGET_RATE, AudioStream
from .decode import MutedAudio, render_prompt
from .guard import HallucinationGuard, build_utterances, read_phrase_text
from .mono import name_voices, other_voices, split_voices, voice_name
from .privacy import mask_result
from .roles import SAME_SIGNAL_WARNING, assign_roles, one_signal
from .speech import SpeechModel
from .streaming import (UNTRUSTED_CROSSTALK_DB, RecordingClips, attribute_voice, find_voice, release_memory,
                        turn_groups)
from .turns import regions_to_turns

logger = logging.getLogger("callqa.recording")

# errno values of a read that may work a little later (network shares, busy storage)
TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY, errno.ENETDOWN,
                    errno.ENETUNREACH, errno.ECONNRESET, errno.EHOSTUNREACH}

# Options that do not change what a transcript says: how hard the machine works.
_NOT_IN_FINGERPRINT = {"cpu_threads", "batch_size", "encode_batch", "device", "engine"}


TRANSCRIPT_VERSION = 2


def transcription_fingerprint(model_label: str, config: CallqaConfig) -> str:
    """A hash of the model and every option that changes a transcript (decoding, voice activity,
    turns, guard and its phrase list, masking): what an incremental night compares.

    Raises:
        HallucinationListError: the guard's phrase list cannot be read.
    """
    options = {
        # what the code makes of the same options: 2 = voice attributed to the channel that carries it
        # (crosstalk), numbers marked before masking (service.confirm): transcripts of 1 are made again
        "transcripts": TRANSCRIPT_VERSION,
        "model": model_label,
        "asr": {k: v for k, v in asdict(config.asr).items() if k not in _NOT_IN_FINGERPRINT and k != "model"},
        "voice_activity": asdict(config.voice_activity),
        "segmentation": asdict(config.segmentation),
        "guard": {**asdict(config.guard), "phrases": read_phrase_text(config.guard.phrases_file)},
        "verify": asdict(config.verify),
        "diarisation": asdict(config.diarisation),
        "role_cues": _read_if_there(Path(config.rules.lexicons) / "roles.txt"),
        "privacy": asdict(config.privacy),
    }
    options["guard"].pop("phrases_file")
    text = json.dumps(options, sort_keys=True, ensure_ascii=False, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_if_there(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def process_recording(recording: Recording, model: SpeechModel, config: CallqaConfig,
                      guard: HallucinationGuard | None = None,
                      listen: Callable[[CallResult, RecordingClips], None] | None = None) -> CallResult:
    """Transcribe one recording into utterances with voice activity and guard records.

    Args:
        recording: the file and its metadata.
        model: the loaded speech model (shared by all recordings of a worker; the seam:
            :class:`~pipeline.transcribe.speech.SpeechModel`).
        config: run options.
        guard: a prepared hallucination guard (built from config if omitted).
        listen: the second listening (:class:`pipeline.verify.listen.PhraseVerifier`): called with the
            finished result and the recording's audio, it checks phrase findings on the audio. Its
            failure is a warning on the call (the phrases are then judged on the transcript), never
            the call's failure.

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
    try:
        try:
            result.content_sha256 = file_sha256(recording.path)
        except OSError as exc:
            if exc.errno in TRANSIENT_ERRNOS:
                raise TransientInputError(f"{recording.file}: cannot read it just now: {exc}") from exc
            raise
        stream = AudioStream(recording.path)
        result.channels, result.sample_rate, result.codec = stream.channels, stream.sample_rate, stream.codec
        roles = assign_roles(recording, stream.channels)
        result.warnings.extend(roles.warnings)
        voice = find_voice(stream, roles, config, result.timings)
        result.duration_s = round(stream.samples / TARGET_RATE, 3)
        if stream.truncated:
            result.truncated = True
            result.warnings.append("decoding stopped early on corrupt data; the audio before it was processed")
        speakers = list(roles.speakers)
        if one_signal(roles, voice.max_difference):
            result.warnings.append(SAME_SIGNAL_WARNING)
            speakers, voice.regions = [SPEAKER_UNKNOWN], voice.regions[:1]
        elif voice.levels:  # two signals: each stretch of speech to the channel that carries it
            attribute_voice(voice, config.voice_activity.min_speech_ms / 1000)
            result.crosstalk_db = voice.crosstalk_db
            if voice.crosstalk_db is not None and voice.crosstalk_db > UNTRUSTED_CROSSTALK_DB:
                result.warnings.append(f"each side is heard in the other's channel at {voice.crosstalk_db:.0f} dB: "
                                       "who said what may be wrong where both channels carry speech")
        voices = None  # a mono recording's voices, split by their sound
        if speakers == [SPEAKER_UNKNOWN] and config.diarisation.enabled:
            clock = time.perf_counter()
            voices = split_voices(stream, roles, voice, config, result.warnings, getattr(model, "threads", 1))
            result.timings["diarise_s"] = time.perf_counter() - clock
        turns = []
        if voices:
            for label in sorted({r.speaker for r in voices}):
                regions = [(r.start_s, r.end_s) for r in voices if r.speaker == label]
                result.voice_activity.extend(SpeechRegion(voice_name(label), round(s, 3), round(e, 3)) for s, e in regions)
                turns.extend(regions_to_turns(regions, voice_name(label), 0, config.segmentation))
        else:
            for row, speaker in enumerate(speakers):
                result.voice_activity.extend(SpeechRegion(speaker, round(s, 3), round(e, 3)) for s, e in voice.regions[row])
                turns.extend(regions_to_turns(voice.regions[row], speaker, row, config.segmentation))
        result.voice_activity.sort(key=lambda r: (r.start_s, r.speaker))

        stage, clock = "transcribe", time.perf_counter()
        prompt = render_prompt(config.asr.initial_prompt, recording.company)
        decoder_prompt = prompt + config.asr.prompt_words if prompt else ""
        words, identified = [], None
        # the language the model hears in the agent's first window (each voice's, on mono: the agent
        # is not known yet): speaker -> p(decoding language), None until identified
        heard: dict[str, float | None] = (
            {} if not config.asr.agent_language_id
            else {voice_name(label): None for label in {r.speaker for r in voices}} if voices else {SPEAKER_AGENT: None})
        others = other_voices(voices) if voices else {}
        for indices, audio in turn_groups(stream, roles, len(speakers), voice, turns, config):
            group = [turns[i] for i in indices]
            if others:  # one voice of a mono recording at a time: the others silenced
                audio = MutedAudio(audio, others)
            words.extend(replace(w, turn_index=indices[w.turn_index])
                         for w in model.transcribe_turns(audio, group, config.segmentation, decoder_prompt, heard,
                                                         timings=result.timings, echo_of=prompt))
            release_memory()
            if identified is None:  # on the first agent speech, as the model hears 30 s of it
                identified = model.identify_language(audio, [t for t in group if t.speaker == SPEAKER_AGENT],
                                                     config.asr.dialect_languages) or ()
        if identified:
            result.agent_language, result.agent_language_prob = identified[0], round(identified[1], 4)
        # what of the transcription stage was neither pass: cutting and packing the turns' audio
        passes = result.timings.get("transcribe_s", 0.0) + result.timings.get("second_pass_s", 0.0)
        result.timings["transcribe_s"] = result.timings.get("transcribe_s", 0.0) + max(
            0.0, time.perf_counter() - clock - passes)

        stage, clock = "utterances", time.perf_counter()
        guard = guard or HallucinationGuard(config.guard)
        result.utterances, result.suppressed = build_utterances(recording.call_id, turns, words, guard,
                                                                echo_of=prompt, others_echo_of=decoder_prompt)
        result.timings["guard_s"] = time.perf_counter() - clock  # the guard, and words joined into utterances
        clock = time.perf_counter()
        agent_voice = SPEAKER_AGENT  # whose windows say how Chinese the agent's speech sounded
        if voices:
            names = name_voices(result, voices, recording, config)
            agent_voice = next((label for label, name in names.items() if name == SPEAKER_AGENT), None)
        elif speakers == [SPEAKER_UNKNOWN]:
            result.roles_method = ROLES_NONE
        else:
            result.roles_method, result.roles_confidence = ROLES_CHANNELS, 1.0
            result.utterances = [replace(u, role_confidence=1.0) for u in result.utterances]
        zh = heard.get(agent_voice)
        result.agent_zh_prob = None if zh is None else round(zh, 4)
        mask_result(result, config.privacy)  # before anything is stored or checked
        result.timings["utterances_s"] = time.perf_counter() - clock
        if listen is not None and result.utterances:
            clips = RecordingClips(stream, roles, voice, speakers, result.voice_activity, config,
                                   mono=bool(voices))
            try:
                listen(result, clips)
            except Exception as exc:  # the verdicts fall back to the transcript; the call is not lost
                logger.exception("%s: the second listening failed", recording.file)
                result.warnings.append(f"phrases not checked on the audio ({type(exc).__name__}: {exc}); "
                                       "judged on the transcript alone")
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

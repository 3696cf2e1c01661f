"""One recording from file to CallResult: hash -> decode -> roles -> voice activity -> turns -> decode
with the model -> guard -> utterances -> masking.

``process_recording`` never raises for a bad recording: any failure becomes a CallResult with status
``error`` and an ErrorRecord naming the stage, so one bad file never stops a night. Only a read that
may work later (:class:`~pipeline.errors.TransientInputError`) is raised, for the caller to retry.

Memory does not grow with a recording's length. A recording that fits in one piece
(``[segmentation] stream_piece_s``, 10 minutes) is decoded whole. A longer one is read twice, piece by
piece: the first pass finds each channel's voice activity (each piece with a few seconds of the one
before, and the regions joined), the second cuts the turns' audio out as it streams past and
transcribes them in groups of about ``group_speech_s`` of speech, keeping only what the next turn
needs.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterator

import numpy as np
from datetime import datetime, timezone
from pathlib import Path

from ..config import CallqaConfig
from ..errors import PipelineError, TransientInputError
from ..records import (MIN_ROLE_CONFIDENCE, ROLES_CHANNELS, ROLES_NONE, ROLES_WORDS, SPEAKER_AGENT, SPEAKER_CUSTOMER,
                       SPEAKER_OTHER, SPEAKER_UNKNOWN, STATUS_ERROR, STATUS_OK, CallResult, ErrorRecord, Recording,
                       SpeechRegion, Turn)
from ..storage.hashing import file_sha256
from .audio import TARGET_RATE, AudioStream, detect_speech
from .decode import MutedAudio, TurnClips, WholeAudio, render_prompt, turn_bounds
from .guard import HallucinationGuard, read_phrase_text
from .speech import SpeechModel
from .privacy import mask_result
from .roles import SAME_SIGNAL_WARNING, assign_roles, channel_difference, one_signal, rows_of
from .turns import regions_to_turns
from .utterances import build_utterances

logger = logging.getLogger("callqa.recording")

# errno values of a read that may work a little later (network shares, busy storage)
TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EBUSY, errno.ENETDOWN,
                    errno.ENETUNREACH, errno.ECONNRESET, errno.EHOSTUNREACH}

# Options that do not change what a transcript says: how hard the machine works.
_NOT_IN_FINGERPRINT = {"cpu_threads", "batch_size", "encode_batch", "device", "engine"}


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
                      listen: Callable[[CallResult, "RecordingClips"], None] | None = None) -> CallResult:
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
        voice = _find_voice(stream, roles, config, result.timings)
        result.duration_s = round(stream.samples / TARGET_RATE, 3)
        if stream.truncated:
            result.truncated = True
            result.warnings.append("decoding stopped early on corrupt data; the audio before it was processed")
        speakers = list(roles.speakers)
        if one_signal(roles, voice.max_difference):
            result.warnings.append(SAME_SIGNAL_WARNING)
            speakers, voice.regions = [SPEAKER_UNKNOWN], voice.regions[:1]
        voices = None  # a mono recording's voices, split by their sound
        if speakers == [SPEAKER_UNKNOWN] and config.diarisation.enabled:
            clock = time.perf_counter()
            voices = _split_voices(stream, roles, voice, config, result.warnings, getattr(model, "threads", 1))
            result.timings["diarise_s"] = time.perf_counter() - clock
        turns = []
        if voices:
            for label in sorted({r.speaker for r in voices}):
                regions = [(r.start_s, r.end_s) for r in voices if r.speaker == label]
                result.voice_activity.extend(SpeechRegion(_voice_name(label), round(s, 3), round(e, 3)) for s, e in regions)
                turns.extend(regions_to_turns(regions, _voice_name(label), 0, config.segmentation))
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
            else {_voice_name(label): None for label in {r.speaker for r in voices}} if voices else {SPEAKER_AGENT: None})
        others = _other_voices(voices) if voices else {}
        for indices, audio in _turn_groups(stream, roles, len(speakers), voice, turns, config):
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
            names = _name_voices(result, voices, recording, config)
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


class RecordingClips:
    """A recording's audio cut into clips for the second listening (``pipeline.verify``): from the
    decoded audio when the recording was one piece, else decoded again piece by piece (one pass for all
    of a call's clips). A mono recording's clip has every other voice silenced, as its turns had."""

    def __init__(self, stream: AudioStream, roles, voice: "Voice", speakers: list[str], regions: list[SpeechRegion],
                 config: CallqaConfig, mono: bool):
        self.stream, self.roles, self.voice, self.config = stream, roles, voice, config
        self.row = {speaker: i for i, speaker in enumerate(speakers)}
        self.others = {}
        if mono:
            for speaker in {r.speaker for r in regions}:
                self.others[speaker] = [(r.start_s, r.end_s) for r in regions if r.speaker != speaker]

    def cut(self, spans) -> list[np.ndarray]:
        """One clip per (speaker, start_s, end_s)."""
        bounds = [(self.row.get(speaker, 0), int(start * TARGET_RATE), int(end * TARGET_RATE))
                  for speaker, start, end in spans]
        if self.voice.whole is not None:
            clips = [self.voice.whole[min(row, self.voice.whole.shape[0] - 1), a:b].copy() for row, a, b in bounds]
        else:
            parts: list[list[np.ndarray]] = [[] for _ in bounds]
            offset = 0
            for piece in self.stream.pieces(piece_seconds(self.config)):
                rows = rows_of(piece, self.roles)
                end = offset + rows.shape[1]
                for k, (row, a, b) in enumerate(bounds):
                    if a < end and b > offset:
                        parts[k].append(rows[min(row, rows.shape[0] - 1), max(a, offset) - offset: min(b, end) - offset])
                offset = end
            clips = [np.concatenate(p) if p else np.zeros(0, np.float32) for p in parts]
        for (speaker, start, _end), (_row, a, b), clip in zip(spans, bounds, clips):
            for lo, hi in self.others.get(speaker, []):
                i, j = max(int(lo * TARGET_RATE), a) - a, min(int(hi * TARGET_RATE), b) - a
                if j > i:
                    clip[i:j] = 0.0
        return clips


def _other_voices(voices) -> dict[str, list[tuple[float, float]]]:
    """For each voice of a mono recording, the regions of every other voice (silenced in its turns)."""
    names = {_voice_name(r.speaker) for r in voices}
    return {name: [(r.start_s, r.end_s) for r in voices if _voice_name(r.speaker) != name] for name in names}


def _voice_name(label: int) -> str:
    """A mono recording's voice until it is known whose it is."""
    return f"voice{label + 1}"


_embedders: dict[str, object] = {}
_embedders_lock = threading.Lock()


def speaker_embedder(threads: int = 1):
    """The speaker model, loaded once per process (and verified); raises ModelError if it is not installed."""
    from ..speakers.diarize import Embedder
    from ..speakers.model import verify_speaker_model

    graph = verify_speaker_model()
    with _embedders_lock:
        key = f"{graph}:{threads}"
        if key not in _embedders:
            _embedders[key] = Embedder(graph, threads)
        return _embedders[key]


def _split_voices(stream: AudioStream, roles, voice: Voice, config: CallqaConfig, warnings: list[str],
                  threads: int = 1):
    """A mono recording's voice activity split into voices (None, with a warning, without the model),
    as :func:`pipeline.speakers.diarize.diarise` splits it. A recording of several pieces is cut at its
    pauses and embedded piece by piece: a region across two pieces is not cut at its pauses, and a
    window across two pieces is left out (its time takes the nearest window's voice)."""
    from ..errors import ModelError
    from ..speakers.diarize import diarise, label_regions, speech_windows, split_at_pauses

    try:
        embedder = speaker_embedder(threads)
    except ModelError as exc:
        warnings.append(f"mono recording, speakers not split: {exc}")
        return None
    options = config.diarisation
    regions = voice.regions[0]
    if voice.whole is not None:
        return diarise(voice.whole[0], regions, embedder, options)
    parts, windows, found, waiting = [], [], {}, []
    offset, next_region = 0, 0
    for piece in stream.pieces(piece_seconds(config)):
        row = rows_of(piece, roles)[0]
        lo, hi = offset / TARGET_RATE, (offset + row.shape[0]) / TARGET_RATE
        arrived = []
        while next_region < len(regions) and regions[next_region][0] < hi:
            arrived.append(regions[next_region])
            next_region += 1
        inside, across = [], []  # a region across two pieces is not cut at its pauses
        for r in arrived:
            (inside if r[0] >= lo and r[1] <= hi else across).append(r)
        new = sorted(split_at_pauses(row, inside, options.min_pause_s, offset_s=lo) + across)
        parts += new
        fresh = speech_windows(new, options)
        waiting += range(len(windows), len(windows) + len(fresh))
        windows += fresh
        now = [i for i in waiting if windows[i][0] >= lo and windows[i][1] <= hi]
        if now:
            found.update(zip(now, embedder.embed(row, [(windows[i][0] - lo, windows[i][1] - lo) for i in now])))
        waiting = [i for i in waiting if windows[i][1] > hi and windows[i][0] >= lo]  # the rest never fit a piece
        offset += row.shape[0]
    kept = sorted(found)
    embeddings = np.stack([found[i] for i in kept]) if kept else np.zeros((0, 192), np.float32)
    return label_regions(parts, [windows[i] for i in kept], embeddings, options)


def _name_voices(result: CallResult, voices, recording: Recording, config: CallqaConfig) -> dict[str, str]:
    """Decide which voice is the agent's from what each said, and name every voice's rows: agent,
    customer (the first other voice to speak), other (any further voice: it joined later).
    Returns each voice's name (voice label -> role)."""
    from ..speakers.agent import choose_agent, role_cues

    starts: dict[int, float] = {}  # each voice's first speech
    for r in voices:
        starts[r.speaker] = min(starts.get(r.speaker, r.start_s), r.start_s)
    labels = sorted(starts)
    texts = {label: [u.text for u in result.utterances if u.speaker == _voice_name(label)] for label in labels}
    first = min(starts, key=starts.get)
    decision = choose_agent(texts, first, role_cues(config.rules.lexicons), recording.company)
    names = {}
    if decision.agent is not None:
        names[_voice_name(decision.agent)] = SPEAKER_AGENT
        # the customer is on the line from the start; a supervisor or a transfer joins a call under way
        rest = sorted((label for label in labels if label != decision.agent), key=starts.get)
        for i, label in enumerate(rest):
            names[_voice_name(label)] = SPEAKER_CUSTOMER if i == 0 else SPEAKER_OTHER
    result.roles_method, result.roles_confidence = ROLES_WORDS, decision.confidence
    trusted = decision.confidence >= MIN_ROLE_CONFIDENCE
    result.warnings.append(f"mono recording: {len(labels)} voice{'s' if len(labels) > 1 else ''}; agent: "
                           f"{decision.reason}, confidence "
                           f"{decision.confidence:.2f}" + ("" if trusted else
                           f" (below {MIN_ROLE_CONFIDENCE:g}: roles not trusted)"))

    def region_confidence(start: float, end: float) -> float:
        weights = [(min(end, r.end_s) - max(start, r.start_s), r.confidence) for r in voices
                   if min(end, r.end_s) > max(start, r.start_s)]
        total = sum(w for w, _ in weights)
        return sum(w * c for w, c in weights) / total if total else 0.0

    result.utterances = [replace(u, speaker=names.get(u.speaker, SPEAKER_UNKNOWN),
                                 role_confidence=round(min(decision.confidence, region_confidence(u.start_s, u.end_s)), 3))
                         for u in result.utterances]
    result.voice_activity = [replace(v, speaker=names.get(v.speaker, SPEAKER_UNKNOWN)) for v in result.voice_activity]
    result.suppressed = [replace(x, speaker=names.get(x.speaker, SPEAKER_UNKNOWN)) for x in result.suppressed]
    return names


def release_memory() -> None:
    """Give the memory freed by a group's transcription back to the system (glibc keeps it otherwise,
    and the next group's working memory would come on top of it). No-op where there is no glibc."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None

# Silero reads 512-sample frames; pieces and their overlap are whole frames, so that every run reads
# the frames a run over the whole recording would. A piece's voice activity is found with this much of
# the previous piece before it, and a region the end of a piece cut off is finished by the next run.
VAD_FRAME = 512
PIECE_OVERLAP = 64 * VAD_FRAME  # 2.048 s
# A long recording's voice activity is found in runs of 2 minutes: the voice activity model's memory
# (ONNX Runtime keeps what its largest run needed) then stays near 100 MB whatever the length; a
# recording of one piece is read in one run, as it always was.
VAD_RUN = 3750 * VAD_FRAME  # 120 s


@dataclass
class Voice:
    """Each row's voice activity, found piece by piece. ``whole`` keeps the decoded audio when the
    recording was one piece (it is then transcribed from it, not decoded again)."""

    regions: list[list[tuple[float, float]]]
    max_difference: float = 0.0
    pieces: int = 0
    whole: np.ndarray | None = field(default=None, repr=False)


def piece_seconds(config: CallqaConfig) -> float:
    """``[segmentation] stream_piece_s``, in whole voice-activity frames."""
    return round(config.segmentation.stream_piece_s * TARGET_RATE / VAD_FRAME) * VAD_FRAME / TARGET_RATE


def _find_voice(stream: AudioStream, roles, config: CallqaConfig, timings: dict[str, float]) -> Voice:
    """The first pass: decode piece by piece, find each row's voice activity (the decode and voice
    activity times go to ``timings``). The first piece waits until it is known whether there is a
    second: a recording of one piece is read in one run, a longer one in runs of ``VAD_RUN``."""
    voice = Voice([[] for _ in roles.speakers])
    runs: list[tuple[float, float, list[list[tuple[float, float]]]]] = []  # run start, run end, regions
    tail, offset = None, 0
    timings["decode_s"] = timings["vad_s"] = 0.0
    clock = time.perf_counter()
    for piece in stream.pieces(piece_seconds(config)):
        timings["decode_s"] += time.perf_counter() - clock
        clock = time.perf_counter()
        voice.pieces += 1
        voice.max_difference = max(voice.max_difference, channel_difference(piece))
        rows = rows_of(piece, roles)
        if voice.pieces == 1:
            voice.whole = rows
        else:
            if voice.whole is not None:  # the first piece, now that it is not the only one
                runs += _runs(voice.whole, 0, None, config)
                tail, offset, voice.whole = voice.whole[:, -PIECE_OVERLAP:], voice.whole.shape[1], None
            runs += _runs(rows, offset, tail, config)
            tail, offset = rows[:, -PIECE_OVERLAP:], offset + rows.shape[1]
        timings["vad_s"] += time.perf_counter() - clock
        clock = time.perf_counter()
    if voice.whole is not None:
        voice.regions = [detect_speech(row, config.voice_activity) for row in voice.whole]
    else:
        voice.regions = [_stitched([(lo, hi, found[row]) for lo, hi, found in runs]) for row in range(len(roles.speakers))]
    timings["vad_s"] += time.perf_counter() - clock
    return voice


def _runs(rows: np.ndarray, offset: int, tail: np.ndarray | None, config: CallqaConfig):
    """Voice activity of a piece (starting at sample ``offset``) in runs of ``VAD_RUN``, each read
    with ``PIECE_OVERLAP`` of the audio before it; regions in recording time, per row."""
    runs = []
    for a in range(0, rows.shape[1], VAD_RUN):
        b = min(a + VAD_RUN, rows.shape[1])
        before = tail if a == 0 else rows[:, a - PIECE_OVERLAP:a]
        data = rows[:, a:b] if before is None else np.concatenate([before, rows[:, a:b]], axis=1)
        start = (offset + a - (0 if before is None else before.shape[1])) / TARGET_RATE
        runs.append(((offset + a) / TARGET_RATE, (offset + b) / TARGET_RATE,
                     [[(s + start, e + start) for s, e in detect_speech(data[row], config.voice_activity)]
                      for row in range(rows.shape[0])]))
    return runs


def _stitched(runs: list[tuple[float, float, list[tuple[float, float]]]]) -> list[tuple[float, float]]:
    """One row's voice activity from runs over overlapping pieces: each run gives the regions that
    start in its own piece (the overlap before it is the previous run's), and a region cut off by the
    end of its piece is finished by the next run's region across the boundary."""
    edge = 2 * VAD_FRAME / TARGET_RATE
    accepted: list[tuple[float, float]] = []
    pending: float | None = None  # start of a region the end of the last piece cut off
    for k, (lo, hi, regions) in enumerate(runs):
        carried, pending = pending, None
        for start, end in regions:
            if carried is not None:
                if end <= lo:
                    continue
                if start <= lo + edge:  # the same speech, across the boundary
                    start = carried
                else:  # the speech ended at the boundary
                    accepted.append((carried, lo))
                carried = None
            elif start < lo:
                continue  # in the overlap: the previous run found it
            if k < len(runs) - 1 and end >= hi - edge:
                pending = start
                continue
            accepted.append((start, end))
        if carried is not None:  # nothing crossed the boundary after all
            accepted.append((carried, lo))
    if pending is not None:
        accepted.append((pending, runs[-1][1]))
    return accepted


def _turn_groups(stream: AudioStream, roles, rows: int, voice: Voice, turns: list[Turn],
                 config: CallqaConfig) -> Iterator[tuple[list[int], WholeAudio | TurnClips]]:
    """The turns to transcribe together, as indices into ``turns`` (in their order), with their audio.

    Groups hold about ``group_speech_s`` of turns (with their context), in time order: the model's
    working memory grows with what it is given at once. A call with less speech than that (every call
    of a few minutes) is one group, as it always was. One piece: the turns are read from the decoded
    audio. More: the second pass decodes again and cuts each turn (with its context) out of a rolling
    buffer as soon as the buffer reaches its end.
    """
    if not turns:
        return
    pad, limit = config.segmentation.asr_pad_s, config.segmentation.group_speech_s
    total = stream.samples
    bounds = [turn_bounds(turn, pad, total) for turn in turns]
    order = sorted(range(len(turns)), key=lambda i: (bounds[i][0], i))
    if voice.whole is not None:
        audio, group, speech = WholeAudio(voice.whole[:rows]), [], 0.0
        for i in order:
            group.append(i)
            speech += (bounds[i][1] - bounds[i][0]) / TARGET_RATE
            if speech >= limit and len(group) < len(turns):
                yield sorted(group), audio
                group, speech = [], 0.0
        if group:
            yield sorted(group), audio
        return
    buffer, buffer_start, next_turn = np.zeros((rows, 0), dtype=np.float32), 0, 0
    group, clips, speech = [], TurnClips(pad, total), 0.0
    for piece in stream.pieces(piece_seconds(config)):
        buffer = np.concatenate([buffer, rows_of(piece, roles)[:rows]], axis=1)
        buffer_end = buffer_start + buffer.shape[1]
        while next_turn < len(order) and bounds[order[next_turn]][1] <= buffer_end:
            i = order[next_turn]
            a, b = bounds[i]
            clips.add(turns[i], buffer[turns[i].channel, a - buffer_start: b - buffer_start].copy(), a)
            group.append(i)
            speech += (b - a) / TARGET_RATE
            next_turn += 1
            if speech >= limit:
                yield sorted(group), clips
                group, clips, speech = [], TurnClips(pad, total), 0.0
        keep_from = bounds[order[next_turn]][0] if next_turn < len(order) else buffer_end
        cut = min(max(keep_from - buffer_start, 0), buffer.shape[1])
        buffer, buffer_start = buffer[:, cut:], buffer_start + cut
    if group:
        yield sorted(group), clips

"""A recording read piece by piece: each channel's voice activity in runs over overlapping pieces,
the turns' audio cut out as it streams past (in groups of about ``group_speech_s`` of speech), and
clips for the second listening; memory does not grow with a recording's length.

A recording that fits in one piece (``[segmentation] stream_piece_s``, 10 minutes) is decoded whole
and kept (:attr:`Voice.whole`). A longer one is read twice: :func:`find_voice` finds each channel's
voice activity (each piece with a few seconds of the one before, and the regions joined),
:func:`turn_groups` cuts the turns' audio out of a rolling buffer, keeping only what the next turn needs.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..config import CallqaConfig
from ..records import SpeechRegion, Turn
from .audio import TARGET_RATE, AudioStream, detect_speech
from .decode import TurnClips, WholeAudio, turn_bounds
from .roles import channel_difference, rows_of

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
    levels: list[list[np.ndarray]] = field(default_factory=list, repr=False)  # per row: dB of each frame, by piece
    crosstalk_db: float | None = None  # how loud one channel's speech is in the other (attribute_voice)


def piece_seconds(config: CallqaConfig) -> float:
    """``[segmentation] stream_piece_s``, in whole voice-activity frames."""
    return round(config.segmentation.stream_piece_s * TARGET_RATE / VAD_FRAME) * VAD_FRAME / TARGET_RATE


def find_voice(stream: AudioStream, roles, config: CallqaConfig, timings: dict[str, float]) -> Voice:
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
        if rows.shape[0] == 2:
            levels = frame_levels(rows)
            voice.levels = voice.levels or [[] for _ in range(2)]
            for row in range(2):
                voice.levels[row].append(levels[row])
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


FRAME_S = VAD_FRAME / TARGET_RATE  # 32 ms
LEAK_MARGIN_DB = 6.0  # within this much of what the other channel's leakage makes: leakage, not speech
UNTRUSTED_CROSSTALK_DB = -15.0  # leakage louder than this: the channels cannot be told apart reliably


def frame_levels(rows: np.ndarray) -> np.ndarray:
    """Each row's level in dB per voice-activity frame (the last, partial frame too)."""
    frames = -(-rows.shape[1] // VAD_FRAME)
    padded = np.zeros((rows.shape[0], frames * VAD_FRAME), dtype=np.float32)
    padded[:, :rows.shape[1]] = rows
    power = np.mean(padded.reshape(rows.shape[0], frames, VAD_FRAME) ** 2, axis=2)
    return 10 * np.log10(power + 1e-10)


def _frame_span(start: float, end: float, frames: int) -> tuple[int, int]:
    """The voice-activity frames a stretch from ``start`` to ``end`` seconds covers."""
    return int(start / FRAME_S), min(frames, int(np.ceil(end / FRAME_S)))


def attribute_voice(voice: Voice, min_speech_s: float) -> None:
    """Give each stretch of speech to the channel that carries it. Line echo and headset bleed put
    each side's speech into the other channel 30-40 dB down, where voice activity still hears it.

    The leakage is measured first: where a channel's voice activity is on, the other channel's level
    relative to it, at its 20th percentile (most of a call is one side speaking alone: the other
    channel then holds only that side's leakage, or its own noise floor: ``voice.crosstalk_db``, the
    louder direction, is at most the leakage). A frame of one channel's voice activity whose level is
    within ``LEAK_MARGIN_DB`` of what the other's leakage puts there, while the other speaks, is the
    other's speech, and is taken away; real talk over each other stays (each speaker is loud on their
    own channel), and a clean call, whose leakage is the noise floor, keeps all its voice. Leakage
    nearly as loud as the speech itself (within ``LEAK_MARGIN_DB``: the channels carry much the same
    signal) cannot be told from it: nothing is taken, and the call is warned about instead. Call it
    after the recording was found to carry two signals (one signal is read as mono)."""
    levels = [np.concatenate(parts) for parts in voice.levels]
    frames = min(len(levels[0]), len(levels[1]))
    levels = [level[:frames] for level in levels]
    voiced = [np.zeros(frames, dtype=bool) for _ in range(2)]
    for row in range(2):
        for start, end in voice.regions[row]:
            voiced[row][slice(*_frame_span(start, end, frames))] = True
    gain: dict[int, float] = {}  # row -> level of its leakage in the other channel, relative to it
    for row, other in ((0, 1), (1, 0)):
        if voiced[row].sum() >= 10:
            gain[row] = float(np.percentile(levels[other][voiced[row]] - levels[row][voiced[row]], 20))
    voice.crosstalk_db = round(max(gain.values()), 1) if gain else None
    kept = []
    for row, other in ((0, 1), (1, 0)):
        if other not in gain or gain[other] >= -LEAK_MARGIN_DB:
            kept.append(voiced[row])
            continue
        leak = voiced[row] & voiced[other] & (levels[row] < levels[other] + gain[other] + LEAK_MARGIN_DB)
        kept.append(voiced[row] & ~leak)
    for row in range(2):
        if not (voiced[row] & ~kept[row]).any():
            continue  # nothing taken away: the regions stand as found
        regions = []
        for start, end in voice.regions[row]:
            a, b = _frame_span(start, end, frames)
            run = None
            for f in range(a, b + 1):
                if f < b and kept[row][f]:
                    run = f if run is None else run
                elif run is not None:
                    lo, hi = max(start, run * FRAME_S), min(end, f * FRAME_S)
                    if hi - lo >= min_speech_s:
                        regions.append((round(lo, 3), round(hi, 3)))
                    run = None
        voice.regions[row] = regions


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


def turn_groups(stream: AudioStream, roles, rows: int, voice: Voice, turns: list[Turn],
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

"""A mono recording's voices: its voice activity split by the sound of each voice (the speaker model,
:mod:`pipeline.speakers`), and, once transcribed, which voice is the agent's from what each said.
Until then a voice is ``voice1``, ``voice2``…; each voice's turns are transcribed with the others
silenced (:func:`other_voices`).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from ..config import CallqaConfig
from ..records import (MIN_ROLE_CONFIDENCE, ROLES_WORDS, SPEAKER_AGENT, SPEAKER_CUSTOMER, SPEAKER_OTHER, SPEAKER_UNKNOWN,
                       CallResult, Recording)
from .audio import TARGET_RATE, AudioStream
from .roles import rows_of
from .streaming import Voice, piece_seconds

def other_voices(voices) -> dict[str, list[tuple[float, float]]]:
    """For each voice of a mono recording, the regions of every other voice (silenced in its turns)."""
    names = {voice_name(r.speaker) for r in voices}
    return {name: [(r.start_s, r.end_s) for r in voices if voice_name(r.speaker) != name] for name in names}


def voice_name(label: int) -> str:
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


def split_voices(stream: AudioStream, roles, voice: Voice, config: CallqaConfig, warnings: list[str],
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


def name_voices(result: CallResult, voices, recording: Recording, config: CallqaConfig) -> dict[str, str]:
    """Decide which voice is the agent's from what each said, and name every voice's rows: agent,
    customer (the first other voice to speak), other (any further voice: it joined later).
    Returns each voice's name (voice label -> role)."""
    from ..speakers.agent import choose_agent, role_cues

    starts: dict[int, float] = {}  # each voice's first speech
    for r in voices:
        starts[r.speaker] = min(starts.get(r.speaker, r.start_s), r.start_s)
    labels = sorted(starts)
    texts = {label: [u.text for u in result.utterances if u.speaker == voice_name(label)] for label in labels}
    first = min(starts, key=starts.get)
    decision = choose_agent(texts, first, role_cues(config.rules.lexicons), recording.company)
    names = {}
    if decision.agent is not None:
        names[voice_name(decision.agent)] = SPEAKER_AGENT
        # the customer is on the line from the start; a supervisor or a transfer joins a call under way
        rest = sorted((label for label in labels if label != decision.agent), key=starts.get)
        for i, label in enumerate(rest):
            names[voice_name(label)] = SPEAKER_CUSTOMER if i == 0 else SPEAKER_OTHER
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

"""Who speaks when in a mono recording: speaker embeddings over the voice activity, clustered.

A mono recording has one channel for both voices, so its voice activity says when someone speaks, not
who. Each region of voice activity is first cut at its pauses (:func:`split_at_pauses`: voice activity
joins speech less than about 0.4 s apart, so a question and its quick answer may share a region), then
covered by windows of ``window_s`` (1.0 s; a shorter piece is one window of its own length). Each
window gets a CAM++ embedding (:mod:`pipeline.speakers.embedding`), and the embeddings are clustered by
cosine similarity (average linkage, merged while the clusters are more alike than ``merge_similarity``,
then while a cluster has less speech than ``min_speaker_s``), then refined by assigning every window to
its nearest cluster. Clusters with less speech than ``min_speaker_s`` are folded into the nearest
larger one (a cough, a burst of line noise, two voices at once), and so is a third cluster that is a
twin or a mixture of the two voices (:func:`_distinct`) or that speaks before the two parties have
talked (:func:`_joined_later`: a supervisor or a transfer joins later). Windows are labelled,
consecutive windows of one label joined, and each speaker's regions come back with a confidence per
region: how much closer its windows are to their own cluster than to the next (0: a coin toss, 1:
unmistakable). A change of speaker inside a piece (no pause between them) is speech over speech, or a
reply without a breath: the interruption rule reads it on mono recordings.

The cost is about one embedding per second of speech: windows overlap only where they even out a piece
of uneven length (548 one-second windows for 440 s of speech on the demo mixdowns), and filterbanks
are computed per stretch of speech, not over the silences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import DiarisationOptions
from .embedding import SAMPLE_RATE, fbank

FRAME_S = 0.01  # filterbank frame shift
FBANK_JOIN_S = 0.5  # windows closer than this share one run of the filterbank


@dataclass(frozen=True)
class SpeakerRegion:
    """A stretch of one (numbered) speaker's speech, with how sure the clustering is of it."""

    speaker: int
    start_s: float
    end_s: float
    confidence: float


class Embedder:
    """CAM++ in onnxruntime: ``embed(audio, windows)`` gives unit-length embeddings."""

    def __init__(self, graph_path, threads: int = 1):
        from .model import open_session

        self.session = open_session(graph_path, threads)

    def embed(self, audio: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
        """Embeddings (N, 192), unit length, of ``windows`` (start_s, end_s) of 16 kHz mono ``audio``.
        The filterbanks are computed once per stretch of speech (windows less than ``FBANK_JOIN_S``
        apart share one), not over the silences between stretches."""
        if not windows:
            return np.zeros((0, 192), dtype=np.float32)
        stretches: list[list] = []  # [start_s, end_s, window indices]
        for i in sorted(range(len(windows)), key=lambda i: windows[i][0]):
            start, end = windows[i]
            if stretches and start <= stretches[-1][1] + FBANK_JOIN_S:
                stretches[-1][1] = max(stretches[-1][1], end)
                stretches[-1][2].append(i)
            else:
                stretches.append([start, end, [i]])
        frames: list[np.ndarray] = [np.zeros((0, 80), np.float32)] * len(windows)
        for start, end, members in stretches:
            origin = max(0.0, start - 0.05)
            features = fbank(audio[int(origin * SAMPLE_RATE): int((end + 0.05) * SAMPLE_RATE)])
            for i in members:
                first = min(max(0, int(round((windows[i][0] - origin) / FRAME_S))), max(0, features.shape[0] - 1))
                frames[i] = features[first: first + max(1, int(round((windows[i][1] - windows[i][0]) / FRAME_S)))]
        out = np.zeros((len(windows), 192), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, f in enumerate(frames):
            by_length.setdefault(f.shape[0], []).append(i)
        for n, members in by_length.items():  # equal lengths run as one batch
            if n:
                out[members] = self.session.run(None, {"features": np.stack([frames[i] for i in members])})[0]
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


PAUSE_FRAME = 400  # 25 ms frames of loudness, every FRAME_S
PAUSE_HOP = int(FRAME_S * SAMPLE_RATE)
PAUSE_DEPTH = 0.35  # quiet: below noise + this share of the way (in dB) from the noise floor to speech


def split_at_pauses(audio: np.ndarray, regions: list[tuple[float, float]], min_pause_s: float,
                    offset_s: float = 0.0) -> list[tuple[float, float]]:
    """The regions cut at their pauses: stretches of at least ``min_pause_s`` whose loudness falls
    below ``PAUSE_DEPTH`` (about a third) of the way up (in dB) from the noise floor to the speech
    level (both read from ``audio``: its 10th percentile frame, and the 95th of its speech). Voice activity joins speech less than about 0.4 s apart, so
    one of its regions may hold a question and its quick answer; a pause is where they meet.

    Args:
        audio: 16 kHz mono samples, starting at ``offset_s`` in the recording.
        regions: voice activity inside ``audio``, in recording time.
        min_pause_s: the shortest pause.
        offset_s: where ``audio`` starts.

    Returns:
        The pieces of speech, in time order, without the pauses.
    """
    if audio.size < PAUSE_FRAME * 4 or not regions:
        return list(regions)
    n = (audio.size - PAUSE_FRAME) // PAUSE_HOP + 1
    frames = np.lib.stride_tricks.as_strided(audio, (n, PAUSE_FRAME), (audio.strides[0] * PAUSE_HOP, audio.strides[0]))
    loudness = 10 * np.log10(np.einsum("ij,ij->i", frames, frames) / PAUSE_FRAME + 1e-12)
    centre = PAUSE_FRAME / 2 / SAMPLE_RATE

    def index(t: float) -> int:
        return int(np.clip(round((t - offset_s - centre) / FRAME_S), 0, n))

    speech = np.concatenate([loudness[index(s): index(e)] for s, e in regions])
    if speech.size == 0:
        return list(regions)
    noise, level = np.percentile(loudness, 10), np.percentile(speech, 95)
    quiet = loudness < noise + PAUSE_DEPTH * (level - noise)
    shortest = int(round(min_pause_s / FRAME_S))
    out = []
    for start, end in regions:
        a, b = index(start), index(end)
        piece_start = start
        k = a + 1
        while k < b - 1:
            if not quiet[k]:
                k += 1
                continue
            j = k
            while j < b - 1 and quiet[j]:
                j += 1
            if j - k >= shortest and j < b - 1:
                out.append((piece_start, offset_s + centre + k * FRAME_S))
                piece_start = offset_s + centre + j * FRAME_S
            k = j
        out.append((piece_start, end))
    return out


def speech_windows(regions: list[tuple[float, float]], options: DiarisationOptions) -> list[tuple[float, float]]:
    """Windows covering each region: ``window_s`` long, evenly placed so that together they cover it
    (a region shorter than a window is one window of its own length; one shorter than
    ``min_window_s`` gets none)."""
    windows = []
    for start, end in regions:
        length = end - start
        if length < options.min_window_s:
            continue
        if length <= options.window_s * 1.25:
            windows.append((start, end))
            continue
        n = int(np.ceil(length / options.window_s))
        for a in np.linspace(start, end - options.window_s, n):
            windows.append((float(a), float(a) + options.window_s))
    return windows


def cluster(embeddings: np.ndarray, weights: np.ndarray, options: DiarisationOptions,
            starts: np.ndarray | None = None) -> np.ndarray:
    """Cluster labels (0, 1, ... by decreasing speech) of unit-length embeddings, each window weighted
    by its seconds of speech (``starts``: where each window starts, for :func:`_joined_later`)."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    chosen = np.linspace(0, n - 1, min(n, options.max_cluster_windows)).round().astype(int)
    chosen = np.unique(chosen)
    labels = _average_linkage(embeddings[chosen], options.merge_similarity, weights[chosen], options.min_speaker_s)
    centroids = _centroids(embeddings[chosen], labels, weights[chosen])
    for _ in range(3):  # every window to its nearest cluster, then the clusters again
        assigned = np.argmax(embeddings @ centroids.T, axis=1)
        centroids = _centroids(embeddings, assigned, weights, len(centroids))
    speech = np.array([weights[assigned == k].sum() for k in range(len(centroids))])
    keep = [k for k in np.argsort(-speech) if speech[k] >= options.min_speaker_s] or [int(np.argmax(speech))]
    keep = _distinct(centroids, keep, speech)
    if starts is not None:
        keep = _joined_later(centroids, keep, assigned, weights, np.asarray(starts), options.min_speaker_s)
    kept = centroids[keep]
    assigned = np.argmax(embeddings @ kept.T, axis=1)
    return assigned


def _joined_later(centroids: np.ndarray, keep: list[int], assigned: np.ndarray, weights: np.ndarray,
                  starts: np.ndarray, min_speech_s: float) -> list[int]:
    """The voices, less any that cannot be a third person. A third voice (a supervisor, a transfer)
    joins a call under way: before it first speaks, the two parties have each spoken at least
    ``min_speech_s``. While the latest voice to join does not, the two most alike voices are taken
    for one (the one with less speech is folded), so that a call's two parties are never three: on a
    mixdown, the windows where the agent talks over the customer can gather into a cluster of their
    own, between the two voices and nearer the agent's, which speaks within the first seconds."""
    keep = list(keep)
    while len(keep) > 2:
        first = {k: starts[assigned == k].min() for k in keep}
        latest = max(keep, key=first.get)
        before = [weights[(assigned == k) & (starts < first[latest])].sum() for k in keep if k != latest]
        if sorted(before)[-2] >= min_speech_s:
            return keep
        similarity = centroids[keep] @ centroids[keep].T
        np.fill_diagonal(similarity, -np.inf)
        i, j = np.unravel_index(np.argmax(similarity), similarity.shape)
        keep.pop(max(i, j))  # keep is in order of decreasing speech
    return keep


def _distinct(centroids: np.ndarray, keep: list[int], speech: np.ndarray) -> list[int]:
    """The clusters that are voices of their own. The two with the most speech are; a further one is
    folded back when it is

    - a twin: more like one of them than halfway from their own likeness to a perfect match (one voice
      split in two: short windows of one speaker scatter), or
    - a mixture: more like each of the two than they are like each other, with less than half the
      speech of the smaller of them (windows where both speak at once, as in an interruption, lie
      between the two voices, and two people talking at once is a small share of a call; a third
      person who talks as much as they do may sound between them too, and stays).

    A third person (a supervisor, a transfer) is about as unlike both as they are unlike each other,
    and stays. Relative, because how alike two voices sound depends on the line and the voices (on the
    demo calls, agent and customer centroids are 0.28-0.74 alike)."""
    if len(keep) <= 2:
        return keep
    similarity = centroids @ centroids.T
    a, b = keep[:2]
    twin = (similarity[a, b] + 1.0) / 2
    kept = keep[:2]
    for k in keep[2:]:
        mixture = (min(similarity[k, a], similarity[k, b]) > similarity[a, b]
                   and speech[k] < 0.5 * min(speech[a], speech[b]))
        if max(similarity[k, j] for j in kept) <= twin and not mixture:
            kept.append(k)
    return kept


def _centroids(embeddings: np.ndarray, labels: np.ndarray, weights: np.ndarray, k: int | None = None) -> np.ndarray:
    k = k or int(labels.max()) + 1
    out = np.zeros((k, embeddings.shape[1]), dtype=np.float64)
    for j in range(k):
        members = labels == j
        if members.any():
            out[j] = (embeddings[members] * weights[members, None]).sum(0)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _average_linkage(embeddings: np.ndarray, threshold: float, weights: np.ndarray | None = None,
                     min_speech_s: float = 0.0) -> np.ndarray:
    """Agglomerative clustering, average linkage on cosine similarity, merged while above ``threshold``;
    then, while a cluster has less than ``min_speech_s`` of speech (``weights``: each item's seconds),
    the most alike pair with such a cluster in it is merged. Windows of one voice are about as alike
    as the threshold (0.5-0.7 on average), so a voice can be left in fragments: merged with each other
    first, they make one voice instead of each joining the nearest large cluster one by one."""
    n = len(embeddings)
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    sizes = np.ones(n)
    speech = np.ones(n) if weights is None else np.asarray(weights, dtype=float).copy()
    members = {i: [i] for i in range(n)}
    active = np.ones(n, dtype=bool)
    while active.sum() > 1:
        masked = np.where(active[:, None] & active[None, :], similarity, -np.inf)
        a, b = np.unravel_index(np.argmax(masked), masked.shape)
        if masked[a, b] < threshold:
            small = active & (speech < min_speech_s)
            if not small.any():
                break
            masked = np.where(small[:, None] | small[None, :], masked, -np.inf)
            a, b = np.unravel_index(np.argmax(masked), masked.shape)
        merged = (similarity[a] * sizes[a] + similarity[b] * sizes[b]) / (sizes[a] + sizes[b])
        similarity[a], similarity[:, a] = merged, merged
        similarity[a, a] = -np.inf
        sizes[a] += sizes[b]
        speech[a] += speech[b]
        members[a] += members.pop(b)
        active[b] = False
    labels = np.zeros(n, dtype=int)
    for label, (_, items) in enumerate(sorted(members.items())):
        labels[items] = label
    return labels


def diarise(audio: np.ndarray, regions: list[tuple[float, float]], embedder: Embedder,
            options: DiarisationOptions = DiarisationOptions()) -> list[SpeakerRegion]:
    """Split one channel's voice activity into numbered speakers (0 speaks most).

    Args:
        audio: the channel, 16 kHz float32.
        regions: its voice activity, (start_s, end_s) in time order.
        embedder: the loaded speaker model.
        options: windows and clustering.

    Returns:
        The regions cut at their pauses and where the speaker changes, each with its speaker number
        and confidence, in time order; every second of ``regions`` outside those pauses is in exactly
        one of them.
    """
    pieces = split_at_pauses(audio, regions, options.min_pause_s)
    windows = speech_windows(pieces, options)
    return label_regions(pieces, windows, embedder.embed(audio, windows), options)


def label_regions(regions: list[tuple[float, float]], windows: list[tuple[float, float]], embeddings: np.ndarray,
                  options: DiarisationOptions) -> list[SpeakerRegion]:
    """The speaker regions from the windows' embeddings (see :func:`diarise`); windows may be missing
    (a long recording's windows across two pieces): their time takes the nearest window's speaker."""
    if not windows:
        return [SpeakerRegion(0, s, e, 0.0) for s, e in regions]
    weights = np.array([e - s for s, e in windows])
    labels = cluster(embeddings, weights, options, np.array([s for s, _ in windows]))
    centroids = _centroids(embeddings, labels, weights, int(labels.max()) + 1)
    scores = embeddings @ centroids.T
    if centroids.shape[0] > 1:
        ranked = np.sort(scores, axis=1)
        margins = np.clip((ranked[:, -1] - ranked[:, -2]) / 0.3, 0.0, 1.0)
    else:
        margins = np.ones(len(windows))
    return _label_regions(regions, windows, labels, margins)


def _label_regions(regions, windows, labels, margins) -> list[SpeakerRegion]:
    """Cut each region where its windows' labels change (at the middle of two windows' overlap, or
    their boundary); a region without windows takes the label of the nearest window in time."""
    centres = np.array([(s + e) / 2 for s, e in windows])
    out: list[SpeakerRegion] = []
    k = 0
    for start, end in regions:
        inside = []
        while k < len(windows) and windows[k][0] < end and windows[k][1] <= end + 1e-6 and windows[k][0] >= start - 1e-6:
            inside.append(k)
            k += 1
        if not inside:
            nearest = int(np.argmin(np.abs(centres - (start + end) / 2)))
            out.append(SpeakerRegion(int(labels[nearest]), start, end, round(float(margins[nearest]) / 2, 3)))
            continue
        piece_start, current, run = start, int(labels[inside[0]]), [inside[0]]
        for prev, i in zip(inside, inside[1:]):
            if int(labels[i]) != current:
                cut = (windows[prev][1] + windows[i][0]) / 2
                out.append(SpeakerRegion(current, piece_start, cut, round(float(np.mean(margins[run])), 3)))
                piece_start, current, run = cut, int(labels[i]), []
            run.append(i)
        out.append(SpeakerRegion(current, piece_start, end, round(float(np.mean(margins[run])), 3)))
    return out

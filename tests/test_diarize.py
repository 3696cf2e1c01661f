"""Speaker embeddings (CAM++ without torch) and the split of a mono recording into speakers.

The mono recordings here are the demo's stereo calls summed to one channel: each stereo channel's own
voice activity is then the truth of who spoke when.
"""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest

from tests.conftest import DEMO
from pipeline.transcribe.audio import decode_audio, detect_speech
from pipeline.speakers.embedding import CAMPPlus, read_state_dict
from pipeline.speakers.diarize import (DiarisationOptions, Embedder, _distinct, cluster, diarise, speech_windows,
                                      split_at_pauses)
from pipeline.speakers.model import WEIGHTS_NAME


@pytest.fixture(scope="module")
def embedder(speaker_graph):
    return Embedder(speaker_graph)


def overlap(start, end, regions):
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in regions)


def test_the_graph_gives_the_numpy_networks_embeddings(speaker_graph):
    """The ONNX graph that nights run is checked against the numpy network it was built from, on
    lengths that use the segment pooling's short last segment (230 frames -> 115 after the stride)."""
    from pipeline.speakers.model import open_session

    reference = CAMPPlus.load(speaker_graph.parent / WEIGHTS_NAME)
    session = open_session(speaker_graph)
    for frames in (40, 150, 230):
        features = np.random.default_rng(frames).normal(size=(2, frames, 80)).astype(np.float32)
        a, b = reference.embed(features), session.run(None, {"features": features})[0]
        assert a.shape == (2, 192)
        assert np.allclose(a, b, atol=1e-3), np.abs(a - b).max()


def test_the_weights_reader_refuses_anything_but_tensors(tmp_path):
    """A .pt file is a pickle, and a pickle can run code: only tensors are read."""
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        read_state_dict(path)


def test_one_voice_is_closer_to_itself_than_to_another(embedder, config):
    """Agent and customer of a stereo call, each on their own channel, 2 s stretches of each."""
    audio = decode_audio(DEMO / "recordings" / "call02.flac").channels_data
    vectors = []
    for row in (0, 1):
        regions = [(s, s + 2.0) for s, e in detect_speech(audio[row], config.voice_activity) if e - s >= 2.0][:3]
        assert len(regions) == 3
        vectors.append(embedder.embed(audio[row], regions))
    same = [float(v[i] @ v[j]) for v in vectors for i in range(3) for j in range(i + 1, 3)]
    different = [float(a @ b) for a in vectors[0] for b in vectors[1]]
    assert min(same) > 0.6 and max(different) < 0.5, (same, different)
    assert np.allclose(np.linalg.norm(vectors[0], axis=1), 1.0, atol=1e-5)


def test_windows_cover_each_region_once_without_overlap_beyond_evening_out():
    options = DiarisationOptions(window_s=1.5)
    windows = speech_windows([(0.0, 0.3), (1.0, 2.5), (3.0, 7.1)], options)
    assert (0.0, 0.3) not in windows  # too short for an embedding of its own
    assert windows[0] == (1.0, 2.5)
    long = [w for w in windows if w[0] >= 3.0]
    assert len(long) == 3 and long[0][0] == 3.0 and abs(long[-1][1] - 7.1) < 1e-9
    assert all(abs((e - s) - options.window_s) < 1e-9 for s, e in long)


@pytest.mark.parametrize("call", ["call01.flac", "call04.flac", "call07.flac"])
def test_a_mixed_down_call_is_split_into_its_two_voices(embedder, config, call):
    audio = decode_audio(DEMO / "recordings" / call).channels_data
    truth = [detect_speech(audio[row], config.voice_activity) for row in (0, 1)]
    mono = audio.mean(axis=0)
    regions = detect_speech(mono, config.voice_activity)
    found = diarise(mono, regions, embedder)
    # every second of voice activity outside its pauses is in exactly one speaker region, in time order
    pieces = split_at_pauses(mono, regions, DiarisationOptions().min_pause_s)
    assert sum(r.end_s - r.start_s for r in found) == pytest.approx(sum(e - s for s, e in pieces), abs=1e-6)
    assert sum(e - s for s, e in pieces) > 0.9 * sum(e - s for s, e in regions)
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(found, found[1:]))
    assert all(any(s - 1e-9 <= r.start_s and r.end_s <= e + 1e-9 for s, e in regions) for r in found)
    speakers = sorted({r.speaker for r in found})
    assert speakers[:2] == [0, 1]
    # by time, each voice's speech goes to one speaker number
    agreement = np.zeros((len(speakers), 2))
    for r in found:
        agreement[r.speaker] += [overlap(r.start_s, r.end_s, truth[0]), overlap(r.start_s, r.end_s, truth[1])]
    right = max(agreement[0, 0] + agreement[1, 1], agreement[0, 1] + agreement[1, 0])
    assert right / agreement.sum() >= 0.9, agreement
    assert np.mean([r.confidence for r in found]) > 0.5


def test_one_voice_alone_is_one_speaker(embedder, config):
    audio = decode_audio(DEMO / "recordings" / "call02.flac").channels_data[0]
    regions = detect_speech(audio, config.voice_activity)
    found = diarise(audio, regions, embedder)
    by_speaker = {}
    for r in found:
        by_speaker[r.speaker] = by_speaker.get(r.speaker, 0.0) + r.end_s - r.start_s
    assert max(by_speaker.values()) / sum(by_speaker.values()) > 0.9, by_speaker


def test_a_quick_reply_inside_one_region_of_voice_activity_is_cut_at_its_pause():
    rate = 16000
    rng = np.random.default_rng(0)
    t = np.arange(int(1.5 * rate)) / rate
    speech = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    pause = (rng.normal(0, 1e-4, int(0.2 * rate))).astype(np.float32)  # a 0.2 s breath between two turns
    dip = (rng.normal(0, 1e-4, int(0.05 * rate))).astype(np.float32)  # a 50 ms stop consonant: no pause
    audio = np.concatenate([pause, speech, pause, speech, dip, speech, pause])
    whole = [(0.2, len(audio) / rate - 0.2)]
    pieces = split_at_pauses(audio, whole, min_pause_s=0.1)
    assert len(pieces) == 2, pieces
    (a0, a1), (b0, b1) = pieces
    assert a0 == 0.2 and abs(a1 - 1.7) < 0.05 and abs(b0 - 1.9) < 0.05 and abs(b1 - whole[0][1]) < 1e-9
    assert split_at_pauses(audio, whole, min_pause_s=0.3) == whole  # a pause shorter than asked is no pause


def test_a_third_cluster_that_is_a_twin_of_a_voice_is_folded_but_a_third_person_is_kept():
    def unit(v):
        v = np.asarray(v, dtype=float)
        return v / np.linalg.norm(v)

    agent, customer = unit([1, 0, 0, 0]), unit([0.4, 0.9, 0, 0])  # two people, 0.4 alike
    twin = unit([0.95, 0.05, 0.3, 0])  # the agent's own voice, split off: 0.95 like it
    third = unit([0.3, 0.3, 0.9, 0])  # somebody else, about as unlike both as they are unlike each other
    speech = np.array([30.0, 20.0, 6.0])
    assert _distinct(np.stack([agent, customer, twin]), [0, 1, 2], speech) == [0, 1]
    assert _distinct(np.stack([agent, customer, third]), [0, 1, 2], speech) == [0, 1, 2]
    between = unit([0.55, 0.3, 0.78, 0])  # 0.55 and 0.50 like them, who are 0.41 alike: between the two
    assert _distinct(np.stack([agent, customer, between]), [0, 1, 2], speech) == [0, 1]  # both at once, 6 s
    # a third person who talks about as much as they do and happens to sound between them stays
    assert _distinct(np.stack([agent, customer, between]), [0, 1, 2], np.array([30.0, 20.0, 18.0])) == [0, 1, 2]


def voices_with_likeness(gram, spread, counts, seed=0):
    """Unit 'window embeddings' of len(counts) voices whose directions are ``gram`` alike (cosine);
    each window is its voice's direction plus noise of norm ``spread[v]`` in the other dimensions
    (windows of one voice are then about 1 / (1 + spread**2) alike)."""
    rng = np.random.default_rng(seed)
    directions = np.zeros((len(counts), 192))
    directions[:, : len(counts)] = np.linalg.cholesky(np.asarray(gram, dtype=float))
    out = []
    for v, n in enumerate(counts):
        noise = rng.normal(size=(n, 192))
        noise[:, : len(counts)] = 0
        noise *= spread[v] / np.linalg.norm(noise, axis=1, keepdims=True)
        out.append(directions[v] + noise)
    e = np.concatenate(out)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_a_voice_whose_windows_are_less_alike_than_the_threshold_is_still_one_voice():
    """The customer's 1 s windows are 0.45 alike, under merge_similarity (0.55), and 0.2 like the
    agent's: they gather into one voice, instead of each (1 s, under min_speaker_s) joining the agent."""
    options = DiarisationOptions()
    embeddings = voices_with_likeness([[1, 0.3], [0.3, 1]], [0.3, 1.1], [30, 8])
    assert np.mean((embeddings[30:] @ embeddings[30:].T)[~np.eye(8, dtype=bool)]) < options.merge_similarity
    labels = cluster(embeddings, np.ones(38), options)
    assert set(labels[:30]) == {0} and set(labels[30:]) == {1}, labels


def test_a_third_cluster_speaking_from_the_first_seconds_is_not_a_third_person():
    """Agent (0.64 like the customer) and a cluster 0.80 like the agent and 0.60 like the customer:
    the windows where the agent talks over the customer, as on a mixdown of an interruption. It
    passes the likeness tests of a third voice; what gives it away is when it speaks: from 1.5 s, before the
    customer's first word, so it did not join the call under way. A supervisor with the same
    likenesses who first speaks at 40 s, after both parties have spoken, is a voice of its own."""
    options = DiarisationOptions()
    gram = [[1, 0.64, 0.8], [0.64, 1, 0.6], [0.8, 0.6, 1]]
    embeddings = voices_with_likeness(gram, [0.8, 0.8, 0.8], [16, 20, 8])  # windows 0.6 alike
    weights = np.ones(44)
    agent_times = np.array([0.5, 2.5, 4.0, 5.0] + [20.0 + 2 * i for i in range(12)])
    customer_times = 7.0 + np.arange(20) * 0.6
    early = np.array([1.5, 11.5, 12.5, 19.5, 27.5, 28.5, 30.0, 44.5])  # in the agent's turns and overlaps
    starts = np.concatenate([agent_times, customer_times, early])
    labels = cluster(embeddings, weights, options, starts)
    assert len(set(labels)) == 2, labels
    assert set(labels[36:]) == set(labels[:16]) and set(labels[16:36]).isdisjoint(labels[:16])
    # the same likenesses, the third voice first heard at 40 s
    late = 40.0 + np.arange(8)
    labels = cluster(embeddings, weights, options, np.concatenate([agent_times, customer_times, late]))
    assert len(set(labels)) == 3, labels
    assert len(set(labels[36:])) == 1 and set(labels[36:]).isdisjoint(labels[:36])
    assert len(set(cluster(embeddings, weights, options))) == 3  # without the times only likeness counts


def test_a_third_voice_is_a_speaker_of_its_own(embedder, config):
    """Call01 mixed down, then a third person (a supervisor taking over): the agent's own sentences
    sped up 1.3 times, which raises the pitch and every formant, as a different throat would."""
    audio = decode_audio(DEMO / "recordings" / "call01.flac").channels_data
    agent = audio[0][: 20 * 16000]
    slow = np.interp(np.arange(0, agent.size, 1.3), np.arange(agent.size), agent).astype(np.float32)
    mono = np.concatenate([audio.mean(axis=0), slow])
    start = audio.shape[1] / 16000
    found = diarise(mono, detect_speech(mono, config.voice_activity), embedder)
    speech = {}
    for r in found:
        speech[r.speaker] = speech.get(r.speaker, 0.0) + r.end_s - r.start_s
    assert len(speech) == 3, speech
    third = {r.speaker for r in found if r.start_s >= start}
    assert len(third) == 1, [(r.speaker, r.start_s) for r in found if r.start_s >= start]
    third = third.pop()
    assert all(r.start_s >= start - 1.0 for r in found if r.speaker == third)  # nobody else was taken for it

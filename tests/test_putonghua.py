"""The per-utterance signals of "heard as Putonghua" (pipeline.rules.putonghua)."""

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.rules.putonghua import FEATURES, compression_ratio, coverage, lm_per_char, utterance_features
from pipeline.storage.rows import transcript_of_rows, utterance_of


def test_mandarin_is_dictionary_words_and_cantonese_written_in_characters_is_not():
    mandarin = "您好，星河通信，请问有什么可以帮您？"
    cantonese = "佢而家唔喺度，你等阵再打嚟啦"
    assert coverage(mandarin) > 0.7 > 0.3 > coverage(cantonese)
    assert lm_per_char(mandarin) > lm_per_char(cantonese) + 1  # log10 per character
    assert coverage("hello") is None and lm_per_char("hello") is None


def test_every_signal_of_a_stored_utterance():
    row = {"call_id": "c1", "utterance_idx": 0, "speaker": "agent", "text": "好的，请讲。", "start_s": 1.0, "end_s": 3.0,
           "avg_logprob": -0.2, "no_speech_prob": float("nan"),
           "words": [{"word": "好的", "start_s": 1.0, "end_s": 2.0, "prob": 0.9},
                     {"word": "请讲", "start_s": 2.0, "end_s": 3.0, "prob": 0.5}]}
    features = utterance_features(utterance_of(row))
    assert set(features) == set(FEATURES)
    assert features["avg_logprob"] == -0.2 and features["no_speech_prob"] is None  # NaN is no value
    assert features["word_prob_mean"] == pytest.approx(0.7) and features["word_prob_min"] == 0.5
    assert features["chars_per_s"] == pytest.approx(2.0) and features["latin_share"] == 0.0
    assert utterance_features(utterance_of({**row, "text": "hello 你好", "words": None}))["latin_share"] == pytest.approx(5 / 7)
    assert compression_ratio("谢谢" * 20) > 3 > compression_ratio("您好，星河通信，请问有什么可以帮您？")


# --- the score and the rule ----------------------------------------------------------------------------

import shutil  # noqa: E402

from pipeline.errors import LexiconError  # noqa: E402
from pipeline.rules.engine import RuleEngine, evaluate_calls  # noqa: E402
from pipeline.rules.lexicon import load_lexicons  # noqa: E402
from pipeline.rules.scorefile import load_score  # noqa: E402
from pipeline.scoring.rubric import deduction_for, load_rubric  # noqa: E402

RULE = "dialect.putonghua"
PUTONGHUA = ("您好星河通信请问有什么可以帮您", -0.2, 0.9)  # text, avg_logprob, each word's probability
FOREIGN = ("那个那个那个那个", -1.3, 0.15)  # repetition, low confidence, slow: English forced into Chinese


def call_rows(*utterances, voice=None):
    """A stereo call whose agent says ``utterances`` (text, avg_logprob, word prob, start, end), as
    stored by a night (decoder confidence and word probabilities included), read back as its transcript."""
    call = {"call_id": "c1", "agent_id": "A1", "company": "星河通信", "status": "ok", "channels": 2,
            "duration_s": 60.0}
    rows = []
    for idx, (text, logprob, prob, start, end) in enumerate(utterances):
        words = [{"word": ch, "start_s": start + i * 0.2, "end_s": start + i * 0.2 + 0.2, "prob": prob}
                 for i, ch in enumerate(text)]
        rows.append({"call_id": "c1", "utterance_idx": idx, "speaker": "agent", "start_s": start, "end_s": end,
                     "text": text, "avg_logprob": logprob, "no_speech_prob": 0.05, "words": words})
    if voice is None:
        voice = [(u[3], u[4]) for u in utterances]
    return transcript_of_rows(call, rows, [{"call_id": "c1", "speaker": "agent", "start_s": s, "end_s": e}
                                           for s, e in voice])


def judge(engine, *utterances, voice=None):
    evaluation = evaluate_calls(engine, [call_rows(*utterances, voice=voice)])
    assert not evaluation.crashed
    return ({r.rule_id: r for r in evaluation.results}[RULE],
            [h for h in evaluation.hits if h.rule_id == RULE])


@pytest.fixture(scope="module")
def engine():
    return RuleEngine(load_lexicons())


def test_the_shipped_score_file_is_a_valid_model_over_known_signals():
    score = load_score(Path(load_lexicons().folder) / "putonghua.toml")
    assert set(score.weights) <= set(FEATURES) and 0 < score.threshold < 1
    assert score.weights["avg_logprob"] > 0 and score.weights["compression_ratio"] < 0  # confident: Putonghua
    putonghua, _ = score.probability({"avg_logprob": -0.2, "word_prob_mean": 0.9, "chars_per_s": 4.0,
                                      "compression_ratio": 0.8, "latin_share": 0.0, "no_speech_prob": 0.05})
    foreign, contributions = score.probability({"avg_logprob": -1.3, "word_prob_mean": 0.2, "chars_per_s": 1.0,
                                                "compression_ratio": 1.6, "latin_share": 0.0, "no_speech_prob": 0.3})
    assert putonghua > 0.9 and foreign < score.threshold
    assert min(contributions, key=contributions.get) in {"compression_ratio", "chars_per_s", "word_prob_mean"}


def test_speech_heard_as_not_putonghua_fails_with_the_utterance_its_score_and_the_signal(engine):
    result, hits = judge(engine, (PUTONGHUA[0], PUTONGHUA[1], PUTONGHUA[2], 0.5, 4.5),
                         (FOREIGN[0], FOREIGN[1], FOREIGN[2], 6.0, 12.0))
    assert result.outcome == "fail", result.evidence
    assert result.evidence.startswith("6.0 s of agent speech heard as not Putonghua (1 of 2 scored utterance(s))")
    assert "agent 6.0s “那个那个那个那个” p(普通话)=" in result.evidence
    assert (result.at_s, result.until_s) == (6.0, 12.0)
    [hit] = hits
    assert hit.match_kind == "acoustic" and hit.utterance_idx == 1 and hit.category == "非普通话"
    assert hit.phrase.startswith("p(普通话)=") and "=" in hit.phrase.split(", ")[1]  # the signal that weighed most
    # Putonghua passes and says how much was scored; too little speech heard otherwise passes, named
    clean, _ = judge(engine, (PUTONGHUA[0], PUTONGHUA[1], PUTONGHUA[2], 0.5, 4.5))
    assert clean.outcome == "pass" and "1 scored utterance(s) heard as Putonghua" in clean.evidence
    short, _ = judge(engine, (PUTONGHUA[0], PUTONGHUA[1], PUTONGHUA[2], 0.5, 4.5), (FOREIGN[0], FOREIGN[1], FOREIGN[2], 6.0, 8.0))
    assert short.outcome == "pass" and "2.0 s heard as not Putonghua, under the 3 s that count" in short.evidence
    # utterances too short to judge (嗯, 好的) are not scored
    tiny, _ = judge(engine, ("嗯嗯", -1.5, 0.1, 0.5, 5.0))
    assert tiny.outcome == "pass" and "0 scored utterance(s)" in tiny.evidence


def test_agent_speech_the_model_wrote_nothing_of_is_not_putonghua_on_stereo_calls(engine):
    # 12 s of voice activity on the agent's channel, one 3 s utterance written: 9 s unwritten
    result, _ = judge(engine, (PUTONGHUA[0], PUTONGHUA[1], PUTONGHUA[2], 0.5, 3.5), voice=[(0.5, 3.5), (5.0, 14.0)])
    assert result.outcome == "fail" and result.evidence.startswith("9.0 s of 12.0 s of agent speech heard as not Putonghua")
    assert (result.at_s, result.until_s) == (5.0, 14.0)
    # nothing written at all: not "no agent speech" (not applicable) but heard as not Putonghua
    nothing, _ = judge(engine, voice=[(1.0, 9.0)])
    assert nothing.outcome == "fail" and "wrote nothing of it" in nothing.evidence
    # a cough the model dropped, beside Putonghua, is not
    cough, _ = judge(engine, (PUTONGHUA[0], PUTONGHUA[1], PUTONGHUA[2], 0.5, 8.5), voice=[(0.5, 8.5), (9.0, 10.5)])
    assert cough.outcome == "pass", cough.evidence


def test_review_instead_of_fail_takes_no_points(tmp_path):
    folder = tmp_path / "lexicons"
    shutil.copytree(load_lexicons().folder, folder)
    rules = (folder / "rules.toml").read_text(encoding="utf-8")
    (folder / "rules.toml").write_text(rules.replace('action = "fail"', 'action = "review"', 1), encoding="utf-8")
    engine = RuleEngine(load_lexicons(folder))
    result, hits = judge(engine, (FOREIGN[0], FOREIGN[1], FOREIGN[2], 6.0, 12.0))
    assert result.outcome == "review" and len(hits) == 1
    assert deduction_for(load_rubric(), RULE, result.outcome, hits) == (0.0, False)
    assert deduction_for(load_rubric(), RULE, "fail", hits)[0] > 0


def test_typed_dialogues_are_not_scored_by_sound(engine):
    # a typed line (or an imported transcript) has no decoder confidence: only marker words can fail
    # it, and without them there is no verdict on how it sounded
    call = call_rows((FOREIGN[0], FOREIGN[1], FOREIGN[2], 6.0, 12.0))
    typed = replace(call, utterances=tuple(replace(u, avg_logprob=None, words=[]) for u in call.utterances))
    [result] = [r for r in evaluate_calls(engine, [typed]).results if r.rule_id == RULE]
    assert result.outcome == "not_applicable" and "cannot be judged" in result.evidence
    first, *rest = typed.utterances
    heard = replace(typed, utterances=(replace(first, avg_logprob=-0.3), *rest))  # one the model heard: judged by sound
    [result] = [r for r in evaluate_calls(engine, [heard]).results if r.rule_id == RULE]
    assert result.outcome != "not_applicable"


@pytest.mark.parametrize("change, message", [
    (("avg_logprob = ", "loudness = "), "unknown signal 'loudness'"),
    (("threshold = ", "threshold = 1.5 #"), "threshold must be between 0 and 1"),
    (("[score.scale]\n", "[score.scale]\nno_speech_prob = 0\n"), None),
])
def test_a_bad_score_file_is_an_error_naming_it(tmp_path, change, message):
    folder = tmp_path / "lexicons"
    shutil.copytree(load_lexicons().folder, folder)
    path = folder / "putonghua.toml"
    text = path.read_text(encoding="utf-8")
    if message is None:  # a duplicate key: not TOML
        message = "cannot read the score file"
    path.write_text(text.replace(*change, 1), encoding="utf-8")
    with pytest.raises(LexiconError) as caught:
        load_lexicons(folder)
    assert "putonghua.toml" in str(caught.value) and message in str(caught.value)
    assert "dialect.putonghua" in str(caught.value)  # the rule that names it
    path.unlink()
    with pytest.raises(LexiconError, match="cannot read the score file"):
        load_lexicons(folder)


def test_the_score_file_is_part_of_the_lexicon_version(tmp_path):
    folder = tmp_path / "lexicons"
    shutil.copytree(load_lexicons().folder, folder)
    before = load_lexicons(folder).version
    path = folder / "putonghua.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("threshold = ", "threshold = 0.2 #", 1), encoding="utf-8")
    assert load_lexicons(folder).version != before
    assert load_lexicons(folder).scores["putonghua.toml"].threshold == 0.2


def test_the_models_language_identification_below_the_floor_fails(engine):
    call = call_rows((PUTONGHUA[0], PUTONGHUA[1], PUTONGHUA[2], 0.5, 4.5))
    for zh, outcome in ((0.04, "fail"), (0.9, "pass"), (None, "pass")):
        [result] = [r for r in evaluate_calls(engine, [replace(call, agent_zh_prob=zh)]).results if r.rule_id == RULE]
        assert result.outcome == outcome, (zh, result.evidence)
    [result] = [r for r in evaluate_calls(engine, [replace(call, agent_zh_prob=0.04)]).results if r.rule_id == RULE]
    assert result.evidence.startswith("the speech model's language identification gives 4.0 s of agent speech "
                                      "p(zh)=0.04 (below 0.5)")
    assert (result.at_s, result.until_s) == (0.5, 4.5)


class FakeWhisper:
    """Encodes a batch to its own features; its language head says zh with the window's first value."""

    def __init__(self):
        self.asked = []
        self.model = self

    def encode(self, features):
        return features

    def detect_language(self, output):
        import numpy as np

        rows = np.asarray(output)
        self.asked.append(len(rows))
        return [[("<|zh|>", float(row[0, 0])), ("<|en|>", 1 - float(row[0, 0]))] for row in rows]


def test_the_language_tap_identifies_only_the_windows_asked_from_the_encoder_output():
    import numpy as np

    from pipeline.transcribe.model import EncoderTap

    whisper = FakeWhisper()
    tap = EncoderTap(whisper)
    tap.listen({1, 4}, "zh")
    batches = [np.full((3, 2, 2), 0.1, dtype=np.float32), np.full((3, 2, 2), 0.2, dtype=np.float32)]
    batches[0][1], batches[1][1] = 0.9, 0.3  # window 1 and window 4
    for batch in batches:
        assert tap.encode(batch) is batch  # the pipeline gets the encoder output as it was
    assert tap.heard == {1: pytest.approx(0.9), 4: pytest.approx(0.3)}
    assert whisper.asked == [1, 1]  # one row a batch identified, not the whole batch
    tap.listen(set(), "zh")
    tap.encode(batches[0])
    assert tap.heard == {} and whisper.asked == [1, 1]  # off: no identification at all


def test_a_night_records_how_chinese_the_agents_speech_sounded(demo_results):
    import pandas as pd

    calls = pd.read_parquet(demo_results / "calls")
    scored = calls[calls["status"] == "ok"]
    assert scored["agent_zh_prob"].notna().all()
    assert (scored["agent_zh_prob"] > 0.9).all()  # synthetic Putonghua, stereo and mono alike
    assert (scored["channels"] == 1).any()


def test_the_encoder_tap_reads_a_batch_only_as_far_as_its_longest_window():
    import numpy as np

    from pipeline.transcribe.model import EncoderTap, trimmed

    batch = np.zeros((2, 80, 3000), dtype=np.float32)
    batch[0, :, :1234] = -0.5  # 12.34 s of speech features, then faster-whisper's zero padding
    batch[1, :, :400] = -0.5
    assert trimmed(batch, 100).shape == (2, 80, 1300)  # the longest window, rounded up to whole seconds
    full = np.full((1, 80, 3000), -0.5, dtype=np.float32)
    assert trimmed(full, 100) is full  # nothing to trim: the batch itself
    whisper = FakeWhisper()
    seen = []
    whisper.encode = lambda features: seen.append(features.shape) or features
    EncoderTap(whisper).encode(batch)
    EncoderTap(whisper, trim=False).encode(batch)
    EncoderTap(whisper, minimum_s=20.0).encode(batch)  # [asr] encode_min_s: at least 20 s of it
    EncoderTap(whisper, minimum_s=10.0).encode(batch)  # a floor below the speech changes nothing
    assert seen == [(2, 80, 1300), (2, 80, 3000), (2, 80, 2000), (2, 80, 1300)]  # "full": as Whisper was trained
    assert trimmed(batch, 100, minimum=4000).shape == (2, 80, 3000)  # never past the window


def test_the_encoder_tap_encodes_a_batch_a_window_at_a_time_and_joins_the_outputs():
    import numpy as np

    from pipeline.transcribe.model import EncoderTap

    whisper = FakeWhisper()
    sizes = []
    whisper.encode = lambda features: sizes.append(len(features)) or features * 2
    batch = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4) + 1
    tap = EncoderTap(whisper, trim=False, chunk=1)
    tap.listen({2}, "zh")
    output = np.asarray(tap.encode(batch))
    assert sizes == [1, 1, 1]  # one window at a time
    assert np.array_equal(output, batch * 2)  # joined in order, as one encoding of the batch would be
    assert set(tap.heard) == {2}  # the language of the window asked, from the joined output
    sizes.clear()
    EncoderTap(whisper, trim=False, chunk=0).encode(batch)
    assert sizes == [3]  # 0 (a GPU): the whole batch at once

"""The per-utterance signals of "heard as Putonghua" (pipeline.rules.putonghua)."""

import pytest

from pipeline.rules.putonghua import FEATURES, compression_ratio, coverage, lm_per_char, utterance_features


def test_mandarin_is_dictionary_words_and_cantonese_written_in_characters_is_not():
    mandarin = "您好，星河通信，请问有什么可以帮您？"
    cantonese = "佢而家唔喺度，你等阵再打嚟啦"
    assert coverage(mandarin) > 0.7 > 0.3 > coverage(cantonese)
    assert lm_per_char(mandarin) > lm_per_char(cantonese) + 1  # log10 per character
    assert coverage("hello") is None and lm_per_char("hello") is None


def test_every_signal_of_a_stored_utterance():
    row = {"text": "好的，请讲。", "start_s": 1.0, "end_s": 3.0, "avg_logprob": -0.2, "no_speech_prob": float("nan"),
           "words": [{"word": "好的", "prob": 0.9}, {"word": "请讲", "prob": 0.5}]}
    features = utterance_features(row)
    assert set(features) == set(FEATURES)
    assert features["avg_logprob"] == -0.2 and features["no_speech_prob"] is None  # NaN is no value
    assert features["word_prob_mean"] == pytest.approx(0.7) and features["word_prob_min"] == 0.5
    assert features["chars_per_s"] == pytest.approx(2.0) and features["latin_share"] == 0.0
    assert utterance_features({**row, "text": "hello 你好", "words": None})["latin_share"] == pytest.approx(5 / 7)
    assert compression_ratio("谢谢" * 20) > 3 > compression_ratio("您好，星河通信，请问有什么可以帮您？")

"""Personal numbers are masked in every stored text field, in the forms people say them."""

import pytest

from pipeline.config import PrivacyOptions
from pipeline.privacy import find_numbers, mask_result, mask_text
from pipeline.records import CallResult, SuppressedText, Utterance, Word
from tests.conftest import make_recording

ON = PrivacyOptions()


@pytest.mark.parametrize("said, stored", [
    ("我的手机号是一三八零零一三八零零零", "我的手机号是***********"),  # read digit by digit
    ("一三八，零零一三，八零零零。", "***,****,****。"),  # as Whisper punctuates the groups
    ("幺三八 零零一三 八零零零", "*** **** ****"),  # 幺 for 一
    ("138-0013-8000", "***-****-****"),
    ("一三七0000一一一一", "***********"),  # mixed forms
    ("座机零二一六八八八八八八八", "座机***********"),  # landline with area code: 11 digits
    ("身份证号四四零一零六一九九零零一零一一二三X", "身份证号*****************X".replace("X", "*")),
    ("卡号6222 0212 3456 7890 123", "卡号**** **** **** **** ***"),
])
def test_spoken_numbers_are_masked(said, stored):
    from pipeline.text import normalise_text

    assert mask_text(normalise_text(said), ON) == normalise_text(stored)


@pytest.mark.parametrize("text", ["话费五十八元", "2026年11月20日", "10086", "报装单号八八二六五", "每月九十九元，三张副卡"])
def test_amounts_dates_and_short_numbers_stay(text):
    assert mask_text(text, ON) == text


def test_masking_is_configurable():
    assert mask_text("一三八零零一三八零零零", PrivacyOptions(mask=False)) == "一三八零零一三八零零零"
    only_cards = PrivacyOptions(kinds=("bank_card",), min_digits=30)
    assert mask_text("一三八零零一三八零零零", only_cards) == "一三八零零一三八零零零"
    assert "*" in mask_text("6222021234567890123", only_cards)
    assert [s.kind for s in find_numbers("13800138000 和 6222021234567890", ON)] == ["phone", "bank_card"]


def test_every_text_field_of_a_call_is_masked():
    words = [Word(w, i * 0.3, i * 0.3 + 0.3, 0.9) for i, w in enumerate(["我的", "号码", "一三八", "零零一三", "八零零零"])]
    utt = Utterance("c1", 0, "customer", 0.0, 2.0, "我的号码一三八零零一三八零零零", "我的號碼一三八零零一三八零零零",
                    -0.2, 0.01, words)
    result = CallResult(make_recording(__import__("pathlib").Path("c1.wav")), "ok", "m", None,
                        utterances=[utt], suppressed=[SuppressedText("agent", 5, 6, "一三八零零一三八零零零",
                                                                     "一三八零零一三八零零零", "repetition")])
    mask_result(result, ON)
    u = result.utterances[0]
    assert u.text == "我的号码***********" and u.raw_text == "我的號碼***********"
    assert [w.word for w in u.words] == ["我的", "号码", "***", "****", "****"]  # a number split over words
    assert result.suppressed[0].text == result.suppressed[0].raw_text == "***********"


def test_findings_and_evidence_never_carry_the_number():
    """Rules run on the masked transcript, so matched_text and evidence cannot leak it."""
    from pipeline.dialogue import parse_dialogue
    from pipeline.lexicon import load_lexicons
    from pipeline.rules import RuleEngine, evaluate_calls

    call, utterances, voice = parse_dialogue("[0.5s] agent: 你好，请讲\n[3s] agent: " +
                                             mask_text("一三八零零一三八零零零，不知道", ON) + "\n")
    hits, results = evaluate_calls(RuleEngine(load_lexicons()), [call], utterances, voice)
    dumped = repr(hits) + repr(results)
    assert "一三八" not in dumped and "***" in dumped

"""Personal numbers are masked in every stored text field, in the forms people say them."""

import re
import shutil
from dataclasses import replace

import pytest

from pipeline.config import PrivacyOptions
from pipeline.transcribe.privacy import find_numbers, mask_result, mask_text
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


def test_no_table_stores_a_number_the_speech_model_heard(tmp_path, monkeypatch, config):
    """The night's real path, from the recording to every table, with the speech model replaced by one
    that hears a phone number in every turn: no stored text may carry its digits. The opening rule
    fails (no greeting) and quotes the agent's first line in its evidence, so a number left unmasked
    anywhere before the rules would be stored there too."""
    from pipeline.engines import whisper
    from pipeline.night import run_night
    from pipeline.storage.parquet import read_table
    from pipeline.transcribe import recording
    from tests.conftest import DATA, ROOT
    from tests.night_driver import StandInSpeech

    said = "我的号码是一三八零零一三八零零零"
    hears_a_number = StandInSpeech(lambda turns: [said] * len(turns), label="fake cpu/int8", per_char=False)
    monkeypatch.setattr(whisper, "load_whisper", lambda options, workers=1: hears_a_number)
    heard = recording.process_recording(make_recording(DATA / "fmt_pcm16_8k_stereo.wav"), hears_a_number, config)
    assert heard.ok and len(heard.utterances) == 2
    # the fixture is 2.5 s: allow short calls to be scored, so that the rules quote what was said
    rubric = tmp_path / "rubric.toml"
    rubric.write_text((ROOT / "lexicons" / "rubric.toml").read_text(encoding="utf-8").replace(
        "default_deduction = 5", "default_deduction = 5\nmin_agent_speech_s = 0.5"), encoding="utf-8")
    config = replace(config, rules=replace(config.rules, rubric=str(rubric)))
    out = tmp_path / "out"
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "fmt_pcm16_8k_stereo.wav", folder / "call.wav")
    night = run_night(folder, out, config)  # the night's own path: the engine, rules, scores and tables
    assert night.summary.scored == 1

    text_columns = {"utterances": ("text", "raw_text"), "suppressed": ("text", "raw_text"),
                    "hits": ("matched_text",), "rule_results": ("evidence",), "errors": ("message",)}
    stored = [w["word"] for words in read_table(out, "utterances")["words"] for w in words]
    for table, columns in text_columns.items():
        frame = read_table(out, table)
        stored += [v for column in columns for v in frame[column]]
    assert len(stored) >= 2 + 2 + 2 + 18  # words, text and raw_text of two utterances, 18 rule results
    assert not [v for v in stored if re.search("[0-9零〇一二三四五六七八九幺两]{7,}", v)]
    evidence = read_table(out, "rule_results").set_index("rule_id").loc["opening.greeting", "evidence"]
    assert "***********" in evidence  # the quoted line, masked

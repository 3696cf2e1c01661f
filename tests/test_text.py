from pipeline.text import cer_counts, edit_distance
from pipeline.text import fold_width, normalise_text, strip_punctuation, to_simplified


def test_traditional_becomes_simplified():
    # what Whisper base writes for telephone Mandarin (DEVELOPERS.md)
    assert to_simplified("請將") == "请将"
    assert to_simplified("稍後") == "稍后"
    assert to_simplified("公號一零零一為您服務") == "公号一零零一为您服务"


def test_full_width_forms_fold_to_ascii():
    assert fold_width("ＡＢＣ１２３，！？　") == "ABC123,!? "
    assert normalise_text("您好，請講！  謝謝") == "您好,请讲! 谢谢"


def test_strip_punctuation_keeps_letters_and_digits():
    assert strip_punctuation("您好, 请讲! ABC 12。") == "您好请讲ABC12"


def test_character_error_rate_counts():
    assert edit_distance("星河通信", "心和通信") == 2
    assert edit_distance("", "abc") == 3
    assert cer_counts("您好，請講。", "您好请讲") == (0, 4)
    assert cer_counts("您好请讲", "你好请将") == (2, 4)

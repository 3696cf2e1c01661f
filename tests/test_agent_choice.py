"""Which voice of a mono recording is the agent's: from what each says, then who spoke first."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import LexiconError
from pipeline.speakers.agent import choose_agent, read_role_cues

CUES = read_role_cues(Path(__file__).resolve().parent.parent / "lexicons" / "roles.txt")


def test_the_voice_that_opens_with_the_company_and_its_number_is_the_agent():
    voices = {0: ["您好，星河通信，工号一零零一为您服务，请问有什么可以帮您？", "好的，请您稍等。"],
              1: ["你好，我想查一下话费。", "好的，谢谢。"]}
    decision = choose_agent(voices, 0, CUES, "星河通信")
    assert decision.agent == 0 and decision.confidence > 0.99
    assert "星河通信" in decision.reason and "工号" in decision.reason


def test_a_customer_who_speaks_first_is_still_the_customer():
    """The customer says 喂 before the agent's greeting: speaking first weighs less than the greeting."""
    voices = {0: ["喂？喂，听得到吗？", "我想问一下宽带的事。"],
              1: ["您好，星河通信，很高兴为您服务。", "请问有什么可以帮您？"]}
    decision = choose_agent(voices, 0, CUES, "星河通信")
    assert decision.agent == 1 and decision.confidence > 0.99
    assert "spoke first" not in decision.reason


def test_whisper_homophones_still_count():
    """Telephone Whisper writes 星河 as 心和 and 工号 as 工好: matched on sounds, they count."""
    voices = {0: ["你好,心和通信,工好3527为您服务"], 1: ["我要投诉。"]}
    assert choose_agent(voices, 1, CUES, "星河通信").agent == 0


def test_when_nothing_tells_them_apart_the_choice_is_not_confident():
    voices = {0: ["嗯。", "对。"], 1: ["好的。", "是的。"]}
    decision = choose_agent(voices, 0, CUES, "星河通信")
    assert decision.agent == 0 and 0.5 < decision.confidence < 0.7  # who spoke first, and no more
    assert choose_agent({0: ["嗯"]}, 0, CUES, "星河通信").confidence == 0.5  # one voice: a coin toss


def test_a_third_voice_is_ranked_like_the_others():
    voices = {0: ["我的宽带断了三天了。"], 1: ["您好，星河通信，工号一零零二为您服务。"], 2: ["我是值班主管，请问有什么可以帮您？"]}
    decision = choose_agent(voices, 0, CUES, "星河通信")
    assert decision.agent == 1  # the greeting with the company and the number outweighs the supervisor's offer


def test_the_cue_list_reports_a_bad_line(tmp_path):
    path = tmp_path / "roles.txt"
    path.write_text("# comment\n2 工号\n请问\nx 为您 服务\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="roles.txt:4"):
        read_role_cues(path)
    path.write_text("2 工号\n请问\n", encoding="utf-8")
    assert read_role_cues(path) == [(2.0, "工号"), (1.0, "请问")]


def test_a_bad_cue_list_stops_a_night_before_any_audio_is_read(tmp_path):
    import shutil
    from dataclasses import replace

    from pipeline.config import load_config
    from pipeline.night import check_standards
    from pipeline.speakers.agent import role_cues

    config = load_config()
    lexicons = tmp_path / "lexicons"
    shutil.copytree(config.rules.lexicons, lexicons)
    config = replace(config, rules=replace(config.rules, lexicons=str(lexicons)))
    assert role_cues(lexicons) == CUES
    (lexicons / "roles.txt").write_text("2 工号\nx 为您 服务\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="roles.txt:2"):
        check_standards(config)
    (lexicons / "roles.txt").unlink()
    check_standards(config)  # no list: mono voices are named by who spoke first alone
    assert role_cues(lexicons) == []

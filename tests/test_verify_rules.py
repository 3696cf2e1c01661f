"""Phrase verdicts decided by checks on the audio (issue 25), from stored checks alone: no audio, no model.

A check says how the phrase's character scored against its rivals' where they part (stored per
utterance by a night that had the audio); the rules decide from it with rules.toml [verify] and the
phrase's bias, so these tests build checks by hand on typed dialogues.
"""

import dataclasses
import re
import shutil
import textwrap

import pytest

from pipeline.errors import LexiconError
from pipeline.records import FAIL, PASS, REVIEW
from pipeline.rules.dialogue import parse_dialogue
from pipeline.rules.engine import RuleEngine, evaluate_calls
from pipeline.rules.lexicon import load_lexicons
from pipeline.rules.verification import NOT_SAID, SAID, UNSURE, VerifyOptions, decide
from pipeline.scoring.rubric import deduction_for, load_rubric
from pipeline.config import LEXICONS_DIR
from pipeline.storage.rows import check_of
from pipeline.text import match_key


@pytest.fixture(scope="module")
def lexicons():
    return load_lexicons()


@pytest.fixture(scope="module")
def engine(lexicons):
    return RuleEngine(lexicons)


LEXICONS = load_lexicons()


def bias_of(phrase: str) -> float:
    """The phrase's bias= in the project's lexicons (else [verify] default_bias)."""
    found = [p.bias for g in LEXICONS.groups.values() for p in g.phrases if p.text == phrase and p.bias is not None]
    return found[0] if found else LEXICONS.verify.default_bias


def check(phrase: str, text: str, rival: str, margin: float, at: int | None = None, heard: str | None = None):
    """A stored check of ``phrase`` at its place in ``text`` (or key offset ``at``) that decides with
    ``margin`` once the phrase's bias is added (negative: the rival was said), as a night stores it: the
    rival's character scored that much less the bias above the phrase's."""
    key = match_key(text)
    start = key.index(match_key(heard or phrase)) if at is None else at
    return {"phrase": phrase, "key_start": start, "key_end": start + len(match_key(phrase)),
            "heard": heard or phrase, "options": [phrase, rival], "logprobs": [0.0, bias_of(phrase) - margin],
            "priors": [0.0, 0.0], "prefix": "", "clip_start_s": 0.0, "clip_end_s": 3.0}


def scored(stored: dict, margin: float) -> dict:
    """The same check deciding with another margin."""
    return {**stored, "logprobs": [0.0, bias_of(stored["phrase"]) - margin]}


def outcomes(engine, dialogue: str, checks: dict[int, list[dict]]):
    call = parse_dialogue(textwrap.dedent(dialogue), company="星河通信")
    utterances = tuple(dataclasses.replace(u, checks=[check_of(c) for c in checks.get(i, [])])
                       for i, u in enumerate(call.utterances))
    evaluation = evaluate_calls(engine, [dataclasses.replace(call, utterances=utterances)])
    assert not evaluation.crashed
    return {r.rule_id: r for r in evaluation.results}, evaluation.hits


OPENING = "您好，星河通信，请讲。"
CALL = f"""
    [0.5s] agent: {OPENING}
    [4s] customer: 我想查一下话费。
    [7s] agent: 谢谢，不好意思，您的话费是五十元。
    [12s] customer: 好的。
    [14s] agent: 感谢您的来电，再见。
"""


def test_a_check_decides_by_its_margin_the_band_and_the_bias():
    raw = {**check("您好", OPENING, "你好", 0.0), "logprobs": [0.0, -1.9]}  # 你 scored 1.9 below 您
    options = VerifyOptions(low=-1.0, high=0.0, prior_weight=0.0, default_bias=5.0)
    verdict = decide(check_of(raw), options)
    assert (verdict.state, verdict.margin, verdict.rival) == (SAID, 1.9, "你好")
    assert verdict.describe() == "您好 over 你好 by 1.9"
    assert decide(check_of(raw), options, bias=None).margin == pytest.approx(6.9)  # no bias= of its own: default_bias
    assert decide(check_of({**raw, "logprobs": [0.0, 2.3]}), options).state == NOT_SAID
    assert decide(check_of({**raw, "logprobs": [0.0, 0.5]}), options).state == UNSURE
    assert decide(check_of({**raw, "logprobs": [0.0, 2.3]}), options, bias=3.0).state == SAID  # the lexicon's bias=
    assert "(not 您好)" in decide(check_of({**raw, "logprobs": [0.0, 2.3]}), options).describe()
    # the prior: each option's score on silence, weighted, taken off
    with_prior = check_of({**raw, "priors": [0.0, -3.0]})
    assert decide(with_prior, VerifyOptions(prior_weight=1.0)).margin == pytest.approx(-1.1)
    assert decide(check_of({**raw, "options": ["您好"], "logprobs": [0.0]}), options) is None  # nothing compared


def test_the_greeting_follows_the_audio_not_the_transcript(engine):
    # the transcript says 您好 (the prompt's habit); the audio says 你好: the greeting fails, with the evidence
    results, hits = outcomes(engine, CALL, {0: [check("您好", OPENING, "你好", -2.3)]})
    assert results["opening.greeting"].outcome == FAIL
    assert results["courtesy.ninhao"].outcome == FAIL
    assert "你好 over 您好 by 2.3" in results["opening.greeting"].evidence
    assert not [h for h in hits if h.rule_id == "opening.greeting"]
    # the audio says 您好: a verified hit, its margin and the rival that lost
    results, hits = outcomes(engine, CALL, {0: [check("您好", OPENING, "你好", 1.9)]})
    assert results["opening.greeting"].outcome == PASS
    hit = next(h for h in hits if h.rule_id == "opening.greeting")
    assert (hit.match_kind, hit.margin, hit.rival) == ("verified", 1.9, "你好")
    assert "您好 over 你好 by 1.9" in results["opening.greeting"].evidence


def test_a_stand_in_is_asked_as_the_phrase_it_stands_for(engine):
    call = CALL.replace(OPENING, "你好，星河通信，请讲。")
    results, _ = outcomes(engine, call, {})  # no check (no audio): 你好 stands in for 您好, as before
    assert results["opening.greeting"].outcome == PASS
    stored = check("您好", "你好，星河通信，请讲。", "你好", -2.0, at=0, heard="你好")
    results, _ = outcomes(engine, call, {0: [stored]})
    assert results["opening.greeting"].outcome == FAIL
    results, hits = outcomes(engine, call, {0: [scored(stored, 1.5)]})
    assert results["opening.greeting"].outcome == PASS
    assert next(h for h in hits if h.rule_id == "opening.greeting").phrase == "您好"


def test_unsure_is_review_with_no_points_taken(engine):
    results, hits = outcomes(engine, CALL, {0: [check("您好", OPENING, "你好", -0.4)]})
    result = results["opening.greeting"]
    assert result.outcome == REVIEW
    assert "unsure" in result.evidence
    assert [h.match_kind for h in hits if h.rule_id == "opening.greeting"] == ["unsure"]
    rubric = load_rubric()
    assert deduction_for(rubric, "opening.greeting", REVIEW, hits)[0] == 0  # no points taken
    assert deduction_for(rubric, "opening.greeting", FAIL, [])[0] > 0


def test_a_phrase_the_transcript_wrote_as_a_sound_alike_is_heard(engine):
    # Whisper wrote the opening's 请讲 as 新疆: no finding by text; the audio says 请讲
    call = CALL.replace(OPENING, "您好，星河通信，新疆。").replace("[7s] agent: 谢谢", "[7s] agent: 好的，谢谢")
    text = "您好，星河通信，新疆。"
    results, _ = outcomes(engine, call, {})
    assert results["courtesy.qingjiang"].outcome == FAIL
    stored = check("请讲", text, "新疆", 2.5, heard="新疆")
    results, hits = outcomes(engine, call, {0: [stored]})
    assert results["courtesy.qingjiang"].outcome == PASS
    assert next(h for h in hits if h.rule_id == "courtesy.qingjiang").match_kind == "acoustic"
    # the audio says 新疆 after all: it stays failed, and says what was heard
    results, _ = outcomes(engine, call, {0: [scored(stored, -3.0)]})
    assert results["courtesy.qingjiang"].outcome == FAIL
    assert "新疆 over 请讲 by 3.0" in results["courtesy.qingjiang"].evidence


def test_a_bare_wei_only_where_the_audio_says_it(engine):
    line = "为什么这么说呢？我帮您看一下。"
    call = CALL.replace("[7s] agent: 谢谢，", f"[7s] agent: {line}谢谢，")
    results, _ = outcomes(engine, call, {})
    assert results["forbidden.phrase"].outcome == FAIL  # without audio: 为 at the start reads as 喂
    stored = check("喂", line, "为", -5.0, at=0, heard="为")
    results, hits = outcomes(engine, call, {2: [stored]})
    assert results["forbidden.phrase"].outcome == PASS
    assert "为 over 喂 by 5.0" in results["forbidden.phrase"].evidence
    assert not [h for h in hits if h.rule_id == "forbidden.phrase"]
    results, hits = outcomes(engine, call, {2: [scored(stored, 3.0)]})
    assert results["forbidden.phrase"].outcome == FAIL
    assert [h.match_kind for h in hits if h.rule_id == "forbidden.phrase"] == ["verified"]
    results, _ = outcomes(engine, call, {2: [scored(stored, -0.5)]})
    assert results["forbidden.phrase"].outcome == REVIEW


def test_a_hold_notice_written_as_shouhuo_is_heard(engine):
    call = """
        [0.5s] agent: 您好，星河通信，请讲。
        [4s] customer: 帮我查一下。
        [6s] agent: 请您收获，我帮您查一下记录。
        [20s] agent: 让您久等了，查到了。谢谢，抱歉，再见。
    """
    text = "请您收获，我帮您查一下记录。"
    results, _ = outcomes(engine, call.replace("我帮您查一下记录", "记录"), {})
    assert results["hold.notice"].outcome == FAIL  # 收获 is no notice by text
    stored = check("稍候", text, "收获", 1.0, heard="收获")
    results, _ = outcomes(engine, call.replace("我帮您查一下记录", "记录"), {2: [{**stored, "key_start": 2, "key_end": 4}]})
    assert results["hold.notice"].outcome == PASS


def test_without_verification_the_transcript_alone_decides(lexicons):
    off = RuleEngine(dataclasses.replace(lexicons, verify=dataclasses.replace(lexicons.verify, enabled=False)))
    results, _ = outcomes(off, CALL, {0: [check("您好", OPENING, "你好", -2.3)]})
    assert results["opening.greeting"].outcome == PASS


def test_verify_settings_and_phrase_options_are_validated(tmp_path):
    folder = tmp_path / "lexicons"
    shutil.copytree(LEXICONS_DIR, folder)
    rules = folder / "rules.toml"
    rules.write_text(re.sub(r"(?m)^low = .*$", "low = 2.0", rules.read_text(encoding="utf-8")), encoding="utf-8")
    courtesy = folder / "courtesy.txt"
    courtesy.write_text(courtesy.read_text(encoding="utf-8").replace("再见 | confusable=在见,再建",
                                                                      "再见 | confusable=, | bias=much"), encoding="utf-8")
    with pytest.raises(LexiconError) as raised:
        load_lexicons(folder)
    text = str(raised.value)
    assert "rules.toml:" in text and "low must not be above high" in text
    assert "courtesy.txt:" in text and "confusable= needs" in text and "bias must be a number" in text

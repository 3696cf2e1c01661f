"""Rubric arithmetic, agent aggregates with hand-computed expectations, rescoring after a lexicon change."""

import shutil
import textwrap
from dataclasses import asdict
from datetime import datetime, timezone

import pandas as pd
import pytest

from pipeline.errors import RubricError
from pipeline.records import CallScore, Hit, RuleResult
from pipeline.scoring.rubric import deduction_for, load_rubric, score_calls
from pipeline.scoring.scores import agent_scores, top_failing_rule
from tests.conftest import ROOT

RUBRIC = """
[score]
start = 100
floor = 20
pass_mark = 80
default_deduction = 4

[severity]
"轻" = 2
"中" = 5
"重" = 15

[rules."a"]
deduction = 10
[rules."forbidden"]
per = "hit"
deduction = 6
cap = 25
red_line_severity = "重"
[rules."fatal"]
deduction = 1
red_line = true
"""


@pytest.fixture
def rubric(tmp_path):
    path = tmp_path / "rubric.toml"
    path.write_text(RUBRIC, encoding="utf-8")
    return load_rubric(path, ["a", "b", "forbidden", "fatal"])


def hit(rule, severity=None, call="c1"):
    return Hit(call, rule, "agent", 1.0, 2.0, 0, "phrase", "phrase", "exact", None, severity)


def result(call, rule, outcome):
    return RuleResult(call, "A1", rule, outcome, 0, "evidence")


def test_deductions_caps_and_red_lines(rubric):
    assert deduction_for(rubric, "a", "fail", []) == (10.0, False)
    assert deduction_for(rubric, "a", "pass", []) == (0.0, False)
    assert deduction_for(rubric, "a", "not_applicable", []) == (0.0, False)
    assert deduction_for(rubric, "b", "fail", []) == (4.0, False)  # no table: default_deduction
    # per hit, by severity tier; a hit without severity costs the rule's deduction
    assert deduction_for(rubric, "forbidden", "fail", [hit("forbidden", "轻"), hit("forbidden", "中"),
                                                       hit("forbidden")]) == (13.0, False)
    assert deduction_for(rubric, "forbidden", "fail", [hit("forbidden", "中")] * 6) == (25.0, False)  # cap
    assert deduction_for(rubric, "forbidden", "fail", [hit("forbidden", "重")]) == (15.0, True)  # red line
    assert deduction_for(rubric, "fatal", "fail", []) == (1.0, True)


def test_call_scores_floor_pass_mark_and_error_calls(rubric):
    calls = [CallScore(c, "ok") for c in ("good", "meh", "bad", "red")] + [CallScore("broken", "error")]
    results = [
        result("good", "a", "pass"),
        result("good", "b", "not_applicable"),
        result("meh", "a", "fail"),  # 100 - 10 - 4 = 86: passes
        result("meh", "b", "fail"),
        result("bad", "a", "fail"),  # 100 - 10 - 4 - 25 (capped) = 61
        result("bad", "b", "fail"),
        result("bad", "forbidden", "fail"),
        result("bad", "fatal", "pass"),
        result("red", "fatal", "fail"),  # 99 but a red line
    ]
    hits = [hit("forbidden", "中", "bad")] * 6
    scored, deducted = score_calls(rubric, calls, results, hits, "lexv")
    by = {c.call_id: c for c in scored}
    assert (by["good"].score, by["good"].passed, by["good"].red_line) == (100, True, False)
    assert (by["meh"].score, by["meh"].passed) == (86, True)
    assert (by["bad"].score, by["bad"].passed) == (61, False)
    assert (by["red"].score, by["red"].passed, by["red"].red_line) == (99, False, True)
    assert by["broken"].score is None and by["broken"].passed is None  # never scored
    assert {c.rubric_version for c in scored} == {rubric.version} and by["good"].lexicon_version == "lexv"
    assert [r.deduction for r in deducted if r.call_id == "bad"] == [10, 4, 25, 0]
    assert all(r.deduction is None for r in results) and calls[0].score is None  # what it was given is unchanged
    [floor] = score_calls(rubric, [CallScore("x", "ok")], [result("x", "b", "fail") for _ in range(30)], [])[0]
    assert floor.score == 20  # 100 - 120 stops at the floor


def test_rubric_validation_names_file_and_line(tmp_path):
    path = tmp_path / "rubric.toml"
    path.write_text('[score]\nstart = 100\npass_mark = 120\n[rules."nope"]\ndeduction = 3\n'
                    '[rules."a"]\nper = "minute"\n[severity]\n"超重" = 3\n', encoding="utf-8")
    with pytest.raises(RubricError) as info:
        load_rubric(path, ["a"])
    assert info.value.problems == [
        "rubric.toml:3: [score]: need floor <= pass_mark <= start",
        "rubric.toml:9: [severity]: unknown option '超重'; known: 轻, 中, 重",
        "rubric.toml:4: rule 'nope' is not defined in rules.toml",
        "rubric.toml:7: rule 'a': per must be one of call, hit, not 'minute'",
    ]


def test_the_project_rubric_is_valid_for_the_project_rules():
    from pipeline.scoring.tables import load_rules_and_rubric

    lexicons, rubric = load_rules_and_rubric(None, None)
    assert set(rubric.rules) == {r.rule_id for r in lexicons.rules}
    assert rubric.rules["forbidden.phrase"].red_line_severity == "重"


def frame(rows, columns):
    return pd.DataFrame(rows, columns=columns)


def test_agent_aggregates_against_hand_computed_values():
    calls = frame([
        # call_id, agent, date, status, score, passed, red_line
        ("c1", "A", "2026-11-16", "ok", 90.0, True, False),  # Monday of ISO week 47
        ("c2", "A", "2026-11-16", "ok", 70.0, False, True),
        ("c3", "B", "2026-11-16", "ok", 100.0, True, False),
        ("c4", "B", "2026-11-16", "error", None, None, None),
        ("c5", "A", "2026-11-17", "ok", 80.0, True, False),
        ("c6", "A", "2026-11-09", "ok", 60.0, False, False),  # week 46, for the week-on-week change
    ], ["call_id", "agent_id", "call_date", "status", "score", "passed", "red_line"])
    results = frame([
        ("c1", "r1", "fail"), ("c2", "r1", "fail"), ("c2", "r2", "pass"), ("c3", "r1", "pass"),
        ("c5", "r1", "pass"), ("c5", "r2", "not_applicable"), ("c6", "r1", "fail"),
    ], ["call_id", "rule_id", "outcome"])
    scores = agent_scores(calls, results).set_index(["period_type", "period", "agent_id"])
    a_day = scores.loc[("day", "2026-11-16", "A")]
    assert (a_day["calls"], a_day["error_calls"], a_day["mean_score"], a_day["median_score"]) == (2, 0, 80.0, 80.0)
    assert (a_day["pass_rate"], a_day["red_lines"], a_day["rank"], a_day["percentile"]) == (0.5, 1, 2, 0.0)
    assert dict(a_day["rule_fail_rates"]) == {"r1": 1.0, "r2": 0.0}
    b_day = scores.loc[("day", "2026-11-16", "B")]
    assert (b_day["calls"], b_day["error_calls"], b_day["mean_score"], b_day["rank"], b_day["percentile"]) == (
        1, 1, 100.0, 1, 100.0)  # the failed recording is counted apart, not scored
    a_next = scores.loc[("day", "2026-11-17", "A")]
    assert a_next["mean_score_change"] == 0.0 and a_next["pass_rate_change"] == 0.5  # 80 vs 80, 1.0 vs 0.5
    a_week = scores.loc[("week", "2026-W47", "A")]
    assert (a_week["calls"], a_week["mean_score"], a_week["median_score"]) == (3, 80.0, 80.0)
    assert a_week["pass_rate"] == pytest.approx(2 / 3) and a_week["period_start"] == "2026-11-16"
    assert a_week["mean_score_change"] == 20.0  # week 46: one call at 60
    assert dict(a_week["rule_fail_rates"]) == {"r1": pytest.approx(2 / 3), "r2": 0.0}
    a_month = scores.loc[("month", "2026-11", "A")]
    assert (a_month["calls"], a_month["mean_score"], a_month["period_start"]) == (4, 75.0, "2026-11-01")
    assert pd.isna(a_month["mean_score_change"])  # no October
    assert top_failing_rule(a_week["rule_fail_rates"]) == "r1 (67%)"
    assert top_failing_rule([("r1", 0.0)]) == ""


def test_rescoring_after_a_lexicon_change_touches_no_audio(tmp_path):
    """Write a night from a dialogue, then rescore with one more forbidden phrase, in a process where
    the speech model and the audio decoder cannot even be imported."""
    import json
    import subprocess
    import sys

    from pipeline.rules.dialogue import parse_dialogue
    from pipeline.rules.engine import RuleEngine
    from pipeline.publish import refresh_agent_scores
    from pipeline.scoring.tables import load_rules_and_rubric, score_transcripts
    from pipeline.storage.parquet import read_table
    from pipeline.storage.rows import transcripts_of, with_scores
    from pipeline.storage.staging import write_run

    out = tmp_path / "out"
    said = parse_dialogue(textwrap.dedent("""
        [0.5s] agent: 您好，星河通信，请讲。
        [3s] customer: 我想查话费。
        [6s] agent: 好的，谢谢，您的话费是五十八元，这个价格很划算。
        [12s] agent: 感谢您的来电，再见。
    """), call_id="c1", agent_id="A1", company="星河通信")
    date = "2026-11-20"
    call = {"call_id": "c1", "agent_id": "A1", "company": "星河通信", "status": "ok", "channels": 2,
            "duration_s": said.duration_s, "call_date": date, "file": "c1.wav",
            "started_at": datetime(2026, 11, 20, 1, tzinfo=timezone.utc), "model": "m",
            "processed_at": datetime.now(timezone.utc), "run_id": "r"}
    # word timings, as Whisper gives them: one per character, 0.2 s each
    utterances = [{**asdict(u), "call_date": date, "words": [
        {"word": ch, "start_s": u.start_s + 0.2 * i, "end_s": u.start_s + 0.2 * (i + 1), "prob": 0.9}
        for i, ch in enumerate(u.text)]} for u in said.utterances]
    voice = [{"call_id": "c1", "speaker": who, "start_s": start, "end_s": end, "call_date": date}
             for who, start, end in said.voice]
    rows = {"calls": [call], "utterances": utterances, "voice_activity": voice, "errors": []}
    lexicons, rubric = load_rules_and_rubric(None, None)
    tables = with_scores(rows, score_transcripts(RuleEngine(lexicons), rubric, transcripts_of(rows)))
    assert rows["calls"] == [call] and "score" not in call  # new rows; the ones given are unchanged
    write_run(out, tables)
    refresh_agent_scores(out, rubric)
    assert read_table(out, "calls")["score"].tolist() == [97.0]  # no 抱歉 (courtesy.baoqian, 3 points)

    # a QA manager adds 很划算 (say) as a forbidden phrase of severity 中, and rescores
    lex = tmp_path / "lexicons"
    shutil.copytree(ROOT / "lexicons", lex)
    with open(lex / "forbidden.txt", "a", encoding="utf-8") as fh:
        fh.write("\n[forbidden.test]\n@category = 测试\n@severity = 中\n很划算\n")
    code = ("import json, sys\n"
            "sys.modules.update(dict.fromkeys(['faster_whisper', 'ctranslate2', 'av']))  # importing them fails\n"
            "from pipeline.rescore import rescore\n"
            f"print(json.dumps(rescore({str(out)!r}, {str(lex)!r}, None).to_dict()))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["calls"] == 1 and summary["lexicon_version"] != lexicons.version and summary["failed"] == 0
    calls = read_table(out, "calls")
    assert calls["score"].tolist() == [89.0] and calls["lexicon_version"].tolist() == [summary["lexicon_version"]]
    results = read_table(out, "rule_results").set_index("rule_id")
    assert results.loc["forbidden.phrase", "outcome"] == "fail" and results.loc["forbidden.phrase", "deduction"] == 8
    hits = read_table(out, "hits")
    assert hits.query("rule_id == 'forbidden.phrase'")["matched_text"].tolist() == ["很划算"]
    # the result points at the phrase as timed from its words, not at the start of the utterance
    said_at = hits.query("rule_id == 'forbidden.phrase'")["start_s"].iloc[0]
    assert results.loc["forbidden.phrase", "at_s"] == said_at and said_at > 6.5
    assert len(read_table(out, "rule_results")) == len(lexicons.rules) == 21  # replaced, not duplicated
    scores = read_table(out, "agent_scores")
    assert scores.query("period_type == 'day'")["mean_score"].tolist() == [89.0]
    assert set(scores["period_type"]) == {"day", "week", "month"}


def test_the_promises_of_a_night_are_listed_for_supervisors_and_follow_a_rescore(demo_truth_results, tmp_path):
    """commitments: one row per follow-up promised, with when it falls due and the limit that applies;
    a rescore whose lexicons find no promise takes them away, and one with the project's brings them back."""
    from pipeline.rescore import rescore
    from pipeline.storage.parquet import read_table

    out = tmp_path / "out"
    shutil.copytree(demo_truth_results, out)
    table = read_table(out, "commitments")
    assert set(table.call_id) == {"call01", "call02", "call06", "call08", "call13", "call15", "call17"}
    call01 = table[table.call_id == "call01"].iloc[0]
    assert (call01.due_words, call01.matter, call01.limit_h, bool(call01.within_limit)) == (
        "三个工作日内", "ordinary", 24.0, False)
    assert call01.due_hours == pytest.approx(134.96)  # Thursday 09:02 -> the end of Tuesday
    assert call01.due_at == pd.Timestamp("2026-11-17T16:00:00Z")  # 24:00 in Shanghai
    assert call01.customer_said and call01.agent_id == "A1001" and call01.rule_id == "service.commitment_time"
    call13 = table[table.call_id == "call13"].iloc[0]
    assert (call13.due_hours, call13.limit_h, bool(call13.within_limit)) == (24.0, 48.0, True)
    no_time = table[table.due_hours.isna()]
    assert len(no_time) and no_time.within_limit.isna().all() and set(no_time.call_id) >= {"call06"}
    lexicons = tmp_path / "lexicons"
    shutil.copytree(ROOT / "lexicons", lexicons)
    rules = lexicons / "rules.toml"
    rules.write_text(rules.read_text(encoding="utf-8").replace(  # 外省 and the like: said in no demo call
        'promise = ["service.promise"]', 'promise = ["service.matter_provinces"]'), encoding="utf-8")
    rescore(out, lexicons_dir=lexicons, workers=1)
    assert read_table(out, "commitments").empty
    rescore(out, workers=1)
    again = read_table(out, "commitments")
    assert len(again) == len(table) and set(again.call_id) == set(table.call_id)

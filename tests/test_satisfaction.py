"""The customers' ratings against the rules and the scores, on an example computed by hand."""

import math
from datetime import datetime, timezone

import pytest

from pipeline.review.satisfaction import (agent_satisfaction, difference_interval, mean_interval,
                                           rule_satisfaction, score_rating_correlation, t_quantile)
from pipeline.storage.parquet import write_table

DATE = "2026-11-30"


AT = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc)


def call(call_id, agent, score, rating, status="ok"):
    return {"call_date": DATE, "call_id": call_id, "agent_id": agent, "file": f"{call_id}.wav", "started_at": AT,
            "status": status, "model": "test", "processed_at": AT, "run_id": "r1", "score": score,
            "satisfaction": rating}


def result(call_id, rule, outcome, deduction=0.0, final=None):
    return {"call_date": DATE, "call_id": call_id, "agent_id": "x", "rule_id": rule, "outcome": outcome,
            "hit_count": 0, "evidence": "", "lexicon_version": "v", "final_outcome": final, "deduction": deduction}


@pytest.fixture
def rated(tmp_path):
    """Seven rated calls and one unrated. Rule A fails on c1-c3 (ratings 1, 2, 2) and passes on c4-c7
    (4, 5, 5, 4); rule B fails on c1 and c4 (1, 4), passes on c2, c3, c5 (2, 2, 5), is not applicable
    elsewhere; rule C (2 points) fails on c1, c2 (1, 2) and passes on c4-c6 (4, 5, 5); c8 has no rating;
    c9 failed to transcribe (not scored, its rating left out)."""
    calls = [call("c1", "A1", 70.0, 1), call("c2", "A1", 80.0, 2), call("c3", "A1", 85.0, 2),
             call("c4", "A2", 90.0, 4), call("c5", "A2", 95.0, 5), call("c6", "A2", 100.0, 5),
             call("c7", "A2", 100.0, 4), call("c8", "A2", 60.0, None), call("c9", "A1", None, 1, status="error")]
    results = [result("c1", "A", "fail", 10.0), result("c2", "A", "fail", 10.0), result("c3", "A", "fail", 10.0),
               result("c4", "A", "pass"), result("c5", "A", "pass"), result("c6", "A", "pass"),
               result("c7", "A", "fail", 10.0, final="pass"),  # overturned in review: counts as a pass
               result("c8", "A", "fail", 10.0),  # unrated: left out
               result("c1", "B", "fail", 2.0), result("c4", "B", "fail", 2.0), result("c2", "B", "pass"),
               result("c3", "B", "pass"), result("c5", "B", "pass"), result("c6", "B", "not_applicable"),
               result("c7", "B", "review"),
               result("c1", "C", "fail", 2.0), result("c2", "C", "fail", 2.0), result("c4", "C", "pass"),
               result("c5", "C", "pass"), result("c6", "C", "pass")]
    write_table(tmp_path, "calls", calls)
    write_table(tmp_path, "rule_results", results)
    return tmp_path


def test_t_quantiles_match_the_tables():
    for df, value in ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (10, 2.228), (30, 2.042)):
        assert t_quantile(df) == pytest.approx(value, abs=0.001)
    assert t_quantile(2.0) < t_quantile(1.9) < t_quantile(1.0)  # Welch's fractional degrees of freedom


def test_rule_means_intervals_and_difference_by_hand(rated):
    table = rule_satisfaction(rated, min_calls=3).set_index("rule_id")
    a = table.loc["A"]
    # fail: 1, 2, 2 -> mean 5/3, s = sqrt(1/3), half = 4.303 * s / sqrt(3) = 1.434
    assert (a.fail_n, a.pass_n) == (3, 4)
    assert a.fail_mean == pytest.approx(5 / 3)
    # 5/3 - 1.434 = 0.232 is below the scale: the interval stops at 1
    assert (a.fail_low, a.fail_high) == pytest.approx((1.0, 5 / 3 + 1.434), abs=0.002)
    # pass: 4, 5, 5, 4 -> mean 4.5, s = sqrt(1/3), half = 3.182 * s / 2 = 0.9186
    assert a.pass_mean == pytest.approx(4.5)
    assert (a.pass_low, a.pass_high) == pytest.approx((4.5 - 0.9186, 5.0), abs=0.003)  # 5.42: above the scale
    # Welch: se^2 = (1/3)/3 + (1/3)/4 = 0.19444, df = 0.037809 / (0.0061728 + 0.0023148) = 4.4545
    assert a.difference == pytest.approx(4.5 - 5 / 3)
    se = math.sqrt(1 / 9 + 1 / 12)
    df = (1 / 9 + 1 / 12) ** 2 / ((1 / 9) ** 2 / 2 + (1 / 12) ** 2 / 3)
    assert df == pytest.approx(4.4545, abs=0.001)
    assert a.difference_low == pytest.approx(4.5 - 5 / 3 - t_quantile(df) * se)
    assert a.difference_low > 0  # failing A goes with unhappier customers
    assert a.points == 10.0
    b = table.loc["B"]
    # fail: 1, 4 (mean 2.5); pass: 2, 2, 5 (mean 3); review and not_applicable left out
    assert (b.fail_n, b.pass_n, b.fail_mean, b.pass_mean) == (2, 3, 2.5, 3.0)
    assert b.difference == pytest.approx(0.5)
    assert b.difference_low < 0
    assert list(table.index) == ["C", "A", "B"]  # the largest difference first


def test_rules_are_pointed_out_when_their_failure_does_not_matter_or_costs_too_little(rated):
    table = rule_satisfaction(rated, min_calls=2).set_index("rule_id")
    assert bool(table.loc["B"].no_effect)  # 2 and 3 rated calls, interval reaches 0
    assert not bool(table.loc["A"].no_effect)
    # A and C both go with unhappier customers; C costs 2 points, the median of (10, 2, 2), A costs 10
    assert table.loc["C"].difference_low > 0 and table.loc["A"].difference_low > 0
    assert bool(table.loc["C"].underweighted) and not bool(table.loc["A"].underweighted)
    assert not bool(table.loc["B"].underweighted)
    strict = rule_satisfaction(rated, min_calls=3).set_index("rule_id")
    assert not bool(strict.loc["B"].no_effect)  # too few failed calls to say


def test_agents_qa_score_beside_their_customers_rating(rated):
    table = agent_satisfaction(rated).set_index("agent_id")
    assert table.loc["A1"].calls == 3 and table.loc["A1"].qa_mean == pytest.approx(235 / 3)
    assert table.loc["A1"].rated == 3 and table.loc["A1"].rating_mean == pytest.approx(5 / 3)
    assert table.loc["A2"].calls == 5 and table.loc["A2"].rated == 4  # c8 unrated
    assert table.loc["A2"].rating_mean == pytest.approx(4.5)
    assert list(table.index) == ["A1", "A2"]  # lowest QA mean first


def test_score_and_rating_correlate_with_fishers_interval(rated):
    found = score_rating_correlation(rated)
    assert found["n"] == 7
    scores, ratings = [70, 80, 85, 90, 95, 100, 100], [1, 2, 2, 4, 5, 5, 4]
    mx, my = sum(scores) / 7, sum(ratings) / 7
    cov = sum((x - mx) * (y - my) for x, y in zip(scores, ratings))
    r = cov / math.sqrt(sum((x - mx) ** 2 for x in scores) * sum((y - my) ** 2 for y in ratings))
    assert found["r"] == pytest.approx(r)
    assert found["low"] < r < found["high"] <= 1


def test_no_ratings_give_an_empty_table_not_an_error(tmp_path):
    write_table(tmp_path, "calls", [call("c1", "A1", 90.0, None)])
    write_table(tmp_path, "rule_results", [result("c1", "A", "pass")])
    assert rule_satisfaction(tmp_path).empty
    assert math.isnan(agent_satisfaction(tmp_path).loc[0, "rating_mean"])


def test_small_samples_have_no_interval():
    assert math.isnan(mean_interval([3])[1])
    assert mean_interval([]) [3] == 0
    assert math.isnan(difference_interval([3], [4, 5])[1])
    assert difference_interval([4, 4], [2, 2]) == (2.0, 2.0, 2.0)


def test_the_demos_ratings_in_the_cli_report(demo_truth_results, capsys):
    """`callqa rules report --satisfaction` on the demo's scripts and its synthetic ratings (15 of 17
    calls rated): every rule with rated calls on both sides, the agents' scores beside their ratings."""
    from flows.cli import main

    table = rule_satisfaction(demo_truth_results)
    assert table.loc[table.rule_id == "closing.hangup_order", ["fail_n", "pass_n"]].values.tolist() == [[3, 11]]
    hangup = table.set_index("rule_id").loc["closing.hangup_order"]
    assert hangup.fail_mean == pytest.approx((1 + 3 + 1) / 3)  # call04, call09, call16: the agent hung up
    assert agent_satisfaction(demo_truth_results).rated.sum() == 15
    assert main(["rules", "report", "--satisfaction", "--results", str(demo_truth_results)]) == 0
    printed = capsys.readouterr().out
    assert "closing.hangup_order 客户先挂机" in printed and "A1004" in printed and "Pearson r" in printed


def test_the_cli_says_what_to_do_when_nobody_rated_a_call(tmp_path, capsys):
    from flows.cli import main

    write_table(tmp_path, "calls", [call("c1", "A1", 90.0, None)])
    assert main(["rules", "report", "--satisfaction", "--results", str(tmp_path)]) == 0
    assert "give the manifest a satisfaction column" in " ".join(capsys.readouterr().out.split())

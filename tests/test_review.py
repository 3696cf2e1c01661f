"""Human review: verdicts and appeals saved, scores that follow them, the sample, precision, the page."""

from __future__ import annotations

import http.client
import json
import math
import shutil
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from multiprocessing import get_context

import pandas as pd
import pytest

from pipeline.errors import ReviewError
from pipeline.review import precision, reviews
from pipeline.review.server import ReviewApp
from pipeline.scoring.rubric import load_rubric
from pipeline.records import RuleResult, Verdict
from pipeline.scoring.verdicts import apply_verdicts, final_outcome
from pipeline.storage.parquet import append_rows, read_table

from browser import Browser, serving


@pytest.fixture
def results(demo_truth_results, tmp_path):
    """A copy of the demo night's output that a test may review (the session's copy stays unreviewed)."""
    out = tmp_path / "out"
    shutil.copytree(demo_truth_results, out)
    return out


def _fails(out):
    rr = read_table(out, "rule_results")
    calls = read_table(out, "calls")
    ok = calls.loc[calls["status"] == "ok", "call_id"]
    return rr[(rr["outcome"] == "fail") & rr["call_id"].isin(ok)].sort_values(["call_id", "rule_id"])


def _expected_score(out, call_id, without_rule):
    """The call's score with one rule's deduction removed, by the rubric's own arithmetic."""
    rubric = load_rubric()
    rr = read_table(out, "rule_results")
    others = rr[(rr["call_id"] == call_id) & (rr["rule_id"] != without_rule)]["deduction"].sum()
    return max(rubric.floor, rubric.start - others)


def test_a_verdict_decides_the_outcome_the_score_follows():
    assert [final_outcome("fail", v) for v in ("confirmed", "overturned", "unsure", None)] == ["fail", "pass", "fail", "fail"]
    assert [final_outcome("review", v) for v in ("confirmed", "overturned", "unsure")] == ["fail", "pass", "review"]
    assert [final_outcome("pass", v) for v in ("confirmed", "overturned")] == ["pass", "fail"]
    results = [RuleResult("c1", "A1", "r1", "fail", 1, "e"), RuleResult("c1", "A1", "r2", "pass", 0, "e"),
               RuleResult("c2", "A1", "r1", "fail", 1, "e")]
    now = datetime.now(timezone.utc)
    verdicts = {("c1", "r1"): Verdict("c1", "r1", "overturned", "fail", "Li", now),
                ("c1", "r2"): Verdict("c1", "r2", "overturned", "fail", "Li", now)}  # made on a fail: stale now
    judged = apply_verdicts(results, verdicts)
    assert [(r.verdict, r.final_outcome) for r in judged] == [("overturned", "pass"), (None, "pass"), (None, "fail")]
    assert all(r.verdict is None and r.final_outcome is None for r in results)  # new results; these unchanged


def test_the_latest_verdict_counts():
    t0 = datetime(2026, 11, 20, tzinfo=timezone.utc)
    rows = [{"review_id": "b", "kind": "verdict", "call_id": "c", "rule_id": "r", "verdict": "overturned",
             "machine_outcome": "fail", "recorded_at": t0 + timedelta(seconds=5)},
            {"review_id": "a", "kind": "verdict", "call_id": "c", "rule_id": "r", "verdict": "confirmed",
             "machine_outcome": "fail", "recorded_at": t0},
            {"review_id": "z", "kind": "appeal", "call_id": "c", "rule_id": "r", "recorded_at": t0 + timedelta(days=1)}]
    from pipeline.storage.rows import latest_verdicts

    assert latest_verdicts(rows)[("c", "r")].verdict == "overturned"


def test_an_overturned_finding_deducts_nothing_after_rescore_and_in_the_next_night(results):
    from pipeline.night import run_night
    from pipeline.rescore import rescore
    from tests.conftest import DEMO

    fail = _fails(results).iloc[0]
    expected = _expected_score(results, fail.call_id, fail.rule_id)
    before = read_table(results, "calls").set_index("call_id").loc[fail.call_id, "score"]
    assert fail.deduction > 0 and before < expected
    reviews.record_verdict(results, fail.call_id, fail.rule_id, "overturned", "李质检", "the agent did say it")
    rescore(results)
    calls = read_table(results, "calls").set_index("call_id")
    assert calls.loc[fail.call_id, "score"] == expected
    rr = read_table(results, "rule_results").set_index(["call_id", "rule_id"]).loc[(fail.call_id, fail.rule_id)]
    assert (rr["outcome"], rr["verdict"], rr["final_outcome"], rr["deduction"]) == ("fail", "overturned", "pass", 0)
    day = read_table(results, "agent_scores").query("period_type == 'day' and agent_id == @fail.agent_id "
                                                   "and period == @fail.call_date").iloc[0]
    assert (day["reviewed_findings"], day["overturned_findings"]) == (1, 1)
    # the nightly run applies the reviews too (the demo's transcripts are reused: nothing is transcribed)
    run_night(DEMO / "recordings", results)
    assert read_table(results, "calls").set_index("call_id").loc[fail.call_id, "score"] == expected
    # a later verdict replaces it: confirmed, the deduction is back
    reviews.record_verdict(results, fail.call_id, fail.rule_id, "confirmed", "王主管")
    rescore(results)
    assert read_table(results, "calls").set_index("call_id").loc[fail.call_id, "score"] == before
    assert len(reviews.read_reviews(results)) == 2  # the history keeps both


def test_a_pass_overturned_is_a_miss_that_costs_the_rules_points(results):
    from pipeline.rescore import rescore

    rr = read_table(results, "rule_results")
    calls = read_table(results, "calls").set_index("call_id")
    perfect = calls[(calls["status"] == "ok") & (calls["score"] == 100)].index[0]
    passed = rr[(rr["call_id"] == perfect) & (rr["outcome"] == "pass") & (rr["rule_id"] == "courtesy.ninhao")].iloc[0]
    reviews.record_verdict(results, perfect, passed.rule_id, "overturned", "李质检", "said 你好, not 您好")
    rescore(results)
    rubric = load_rubric()
    assert read_table(results, "calls").set_index("call_id").loc[perfect, "score"] == 100 - rubric.weight(
        "courtesy.ninhao").deduction


def test_appeals_are_filed_and_decided(results):
    fail = _fails(results).iloc[1]
    reviews.record_appeal(results, fail.call_id, fail.rule_id, fail.agent_id, "我说了您好，录音里能听到")
    listed = reviews.appeals(results)
    assert listed[["call_id", "rule_id", "appeal_status"]].values.tolist() == [[fail.call_id, fail.rule_id, "open"]]
    reviews.decide_appeal(results, fail.call_id, fail.rule_id, True, "王主管", "听过录音，确实说了")
    listed = reviews.appeals(results)
    assert (listed.iloc[0]["appeal_status"], listed.iloc[0]["decided_by"]) == ("upheld", "王主管")
    queue = reviews.review_queue(results).set_index(["call_id", "rule_id"]).loc[(fail.call_id, fail.rule_id)]
    assert (queue["verdict"], queue["appeal_status"]) == ("overturned", "upheld")
    with pytest.raises(ReviewError, match="no open appeal"):
        reviews.decide_appeal(results, fail.call_id, fail.rule_id, False, "王主管")
    with pytest.raises(ReviewError, match="reason"):
        reviews.record_appeal(results, fail.call_id, fail.rule_id, fail.agent_id, "  ")


def test_review_actions_refuse_what_they_cannot_save(results):
    fail = _fails(results).iloc[0]
    with pytest.raises(ReviewError, match="no call"):
        reviews.record_verdict(results, "no-such-call", fail.rule_id, "confirmed", "Li")
    with pytest.raises(ReviewError, match="no result for rule"):
        reviews.record_verdict(results, fail.call_id, "no.such_rule", "confirmed", "Li")
    with pytest.raises(ReviewError, match="verdict must be"):
        reviews.record_verdict(results, fail.call_id, fail.rule_id, "maybe", "Li")
    with pytest.raises(ReviewError, match="reviewer"):
        reviews.record_verdict(results, fail.call_id, fail.rule_id, "confirmed", " ")
    rr = read_table(results, "rule_results")
    na = rr[rr["outcome"] == "not_applicable"].iloc[0]
    with pytest.raises(ReviewError, match="no finding to review"):
        reviews.record_verdict(results, na.call_id, na.rule_id, "confirmed", "Li")
    assert reviews.read_reviews(results).empty


def test_the_sample_is_stratified_by_rule_outcome_and_week_and_tops_up(results):
    drawn = reviews.draw_sample(results, per_rule=2, seed=7)
    rr = read_table(results, "rule_results")
    calls = read_table(results, "calls")
    rr = rr[rr["call_id"].isin(calls.loc[calls["status"] == "ok", "call_id"]) & rr["outcome"].isin(["fail", "pass", "review"])]
    rr = rr.assign(week=rr["call_date"].map(reviews.iso_week))
    sizes = rr.groupby(["rule_id", "outcome", "week"]).size()
    got = drawn.groupby(["rule_id", "machine_outcome", "sample_week"]).agg(n=("call_id", "size"), size=("sample_size", "max"))
    assert set(got.index) == set(sizes.index)  # every stratum is in the sample
    for key, size in sizes.items():
        assert got.loc[key, "size"] == size and got.loc[key, "n"] == min(2, size), key
    assert not drawn.duplicated(["call_id", "rule_id"]).any()
    assert reviews.draw_sample(results, per_rule=2, seed=8).empty  # already drawn: nothing twice
    more = reviews.draw_sample(results, per_rule=3, seed=9)
    assert len(more) == int(sum(min(3, s) - min(2, s) for s in sizes))
    assert reviews.review_queue(results)["sampled"].sum() == len(drawn) + len(more)
    with pytest.raises(ReviewError, match="ISO week"):
        reviews.draw_sample(results, weeks=["2026-47"])


def _sample_row(i, week, size, day):
    return {"review_id": f"s{week}{i:03d}", "kind": "sample", "call_id": f"{week}-{i}", "rule_id": "forbidden.phrase",
            "agent_id": "A1", "machine_outcome": "fail", "recorded_at": datetime(2026, 11, 30, tzinfo=timezone.utc),
            "sample_week": week, "sample_size": size, "call_date": day}


def _verdict_row(call_id, verdict, day, minute=0):
    return {"review_id": f"v{call_id}{minute}", "kind": "verdict", "call_id": call_id, "rule_id": "forbidden.phrase",
            "machine_outcome": "fail", "verdict": verdict, "reviewer": "Li", "call_date": day,
            "recorded_at": datetime(2026, 12, 1, 9, minute, tzinfo=timezone.utc)}


def test_precision_matches_a_hand_computed_example(tmp_path):
    # week W47: 100 fails, 10 sampled and reviewed, 8 confirmed (plus one unsure and one not reviewed);
    # week W48: 300 fails, 10 reviewed, 5 confirmed. A verdict outside the sample does not count.
    rows = [_sample_row(i, "2026-W47", 100, "2026-11-18") for i in range(12)]
    rows += [_sample_row(i, "2026-W48", 300, "2026-11-25") for i in range(10)]
    rows += [_verdict_row(f"2026-W47-{i}", "confirmed" if i < 8 else "overturned", "2026-11-18") for i in range(10)]
    rows += [_verdict_row("2026-W47-10", "unsure", "2026-11-18")]
    rows += [_verdict_row(f"2026-W48-{i}", "confirmed" if i < 5 else "overturned", "2026-11-25") for i in range(10)]
    rows += [_verdict_row("outside-the-sample", "overturned", "2026-11-25")]
    rows += [_verdict_row("2026-W48-0", "overturned", "2026-11-25", minute=1),  # changed its mind...
             _verdict_row("2026-W48-0", "confirmed", "2026-11-25", minute=2)]  # ...and back: the latest counts
    append_rows(tmp_path, "reviews", rows)
    table = precision.rule_precision(tmp_path, threshold=0.6).set_index("rule_id").loc["forbidden.phrase"]
    # p = (100 * 0.8 + 300 * 0.5) / 400 = 0.575
    # var = 0.25^2 * 0.8 * 0.2 / 10 + 0.75^2 * 0.5 * 0.5 / 10 = 0.001 + 0.0140625 = 0.0150625
    # n_eff = 0.575 * 0.425 / 0.0150625 = 16.224; Wilson at z = 1.96: 0.3439 .. 0.7774
    assert table["precision"] == pytest.approx(0.575)
    assert (table["precision_low"], table["precision_high"]) == (pytest.approx(0.3439, abs=1e-4),
                                                               pytest.approx(0.7774, abs=1e-4))
    assert (table["reviewed_fails"], table["confirmed"], table["overturned"], table["unsure"]) == (20, 13, 7, 1)
    assert table["below_threshold"]  # 0.575 < 0.6
    # one stratum alone: plain Wilson, 8 of 10 -> 0.4902 .. 0.9433
    low, high = precision.wilson(0.8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert math.isnan(precision.stratified_rate([(50, 0, 0)])["estimate"])


def test_precision_names_the_phrases_reviewers_overturn_most(results, capsys):
    from flows.cli import main

    reviews.draw_sample(results, per_rule=5, seed=1)
    sample = reviews.read_reviews(results).query("kind == 'sample' and rule_id == 'forbidden.phrase' "
                                                 "and machine_outcome == 'fail'")
    assert len(sample) >= 1
    for row in sample.itertuples():
        reviews.record_verdict(results, row.call_id, row.rule_id, "overturned", "Li")
    table = precision.rule_precision(results).set_index("rule_id")
    assert table.loc["forbidden.phrase", "precision"] == 0 and table.loc["forbidden.phrase", "below_threshold"]
    hits = read_table(results, "hits").query("rule_id == 'forbidden.phrase' and call_id in @sample.call_id")
    said = pd.Series([m if m == p else f"{m} → {p}" for m, p in zip(hits["matched_text"], hits["phrase"])]).value_counts()
    every = precision.overturned_phrases(results, "forbidden.phrase", top=100)["forbidden.phrase"]
    assert dict(every) == said.to_dict()
    top = table.loc["forbidden.phrase", "overturned_phrases"]  # the five most overturned
    assert len(top) == min(5, len(said)) and [n for _, n in top] == sorted(said, reverse=True)[:len(top)]
    assert main(["rules", "report", "--results", str(results)]) == 0
    printed = capsys.readouterr().out
    assert "precision under 80%" in printed and "forbidden.phrase" in printed


# -- the server ---------------------------------------------------------------------------------


@pytest.fixture
def server(results):
    with serving(ReviewApp(results)) as url:
        yield url, int(url.rsplit(":", 1)[1]), results


def _post(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _raw_get(port, path):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path)  # sent as written: no client normalises the '..' away
    response = connection.getresponse()
    return response.status, response.read()


def test_two_reviewers_saving_at_once_lose_nothing(server):
    url, _, out = server
    fails = _fails(out).head(8)
    jobs = [{"call_id": f.call_id, "rule_id": f.rule_id, "verdict": verdict, "reviewer": reviewer}
            for f in fails.itertuples() for reviewer, verdict in (("李", "confirmed"), ("王", "overturned"))]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        answers = list(pool.map(lambda body: _post(url + "/api/verdict", body), jobs))
    assert [status for status, _ in answers] == [200] * len(jobs)
    stored = reviews.read_reviews(out)
    assert len(stored) == len(jobs) and stored["review_id"].is_unique
    assert sorted(zip(stored["call_id"], stored["reviewer"])) == sorted((j["call_id"], j["reviewer"]) for j in jobs)


def _append_many(args):
    out, who, n = args
    t = datetime.now(timezone.utc)
    for i in range(n):
        append_rows(out, "reviews", [{"review_id": f"{who}-{i}", "kind": "verdict", "call_id": "c", "rule_id": "r",
                                      "verdict": "unsure", "reviewer": who, "recorded_at": t, "call_date": "2026-11-20"}])
    return n


def test_two_processes_appending_at_once_lose_nothing(tmp_path):
    with get_context("spawn").Pool(2) as pool:
        assert pool.map(_append_many, [(tmp_path, "a", 25), (tmp_path, "b", 25)]) == [25, 25]
    stored = read_table(tmp_path, "reviews")
    assert sorted(stored["review_id"]) == sorted([f"a-{i}" for i in range(25)] + [f"b-{i}" for i in range(25)])
    import duckdb

    assert duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/reviews/*/*.parquet', "
                      "hive_partitioning = true)").fetchall()[0][0] == 50


def test_the_server_refuses_bad_requests(server, tmp_path):
    url, port, out = server
    fail = _fails(out).iloc[0]
    assert _raw_get(port, "/clip/../../etc/passwd")[0] == 400
    assert _raw_get(port, "/%2e%2e/%2e%2e/etc/passwd")[0] == 400
    assert _raw_get(port, "/clip?call=no-such-call")[0] == 404
    assert _raw_get(port, "/api/call?call=no-such-call")[0] == 404
    assert _raw_get(port, f"/clip?call={fail.call_id}&start=5&end=1")[0] == 400
    status, body = _raw_get(port, f"/clip?call={fail.call_id}&start=1&end=4")
    assert status == 200 and body[:4] == b"RIFF"
    assert _post(url + "/api/verdict", {"call_id": "nope", "rule_id": fail.rule_id, "verdict": "confirmed",
                                        "reviewer": "Li"})[0] == 404
    status, answer = _post(url + "/api/verdict", {"call_id": fail.call_id, "rule_id": fail.rule_id, "verdict": "confirmed"})
    assert status == 400 and "reviewer" in answer["error"]
    assert _post(url + "/api/verdict", ["not", "an", "object"])[0] == 400
    # bad parameters and bodies are 400s with a reason, never a bare 500; a comment is a paragraph
    assert _raw_get(port, "/api/precision?threshold=abc")[0] == 400
    assert _raw_get(port, "/api/precision?threshold=1.5")[0] == 400
    request = urllib.request.Request(url + "/api/verdict", b"[" * 100_000 + b"]" * 100_000,
                                     {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    nested = b"[" * 5_000 + b"]" * 5_000  # small, but deeper than Python's parser goes
    request = urllib.request.Request(url + "/api/verdict", nested, {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 400 and "nested" in json.loads(refused.value.read())["error"]
    status, answer = _post(url + "/api/verdict", {"call_id": fail.call_id, "rule_id": fail.rule_id,
                                                  "verdict": "confirmed", "reviewer": "Li", "comment": "长" * 2001})
    assert status == 400 and "too long (2001 characters; 2000 at most)" in answer["error"]
    assert reviews.read_reviews(out).empty  # nothing refused was saved
    # a recording that is a link out of the recordings folder is not served
    calls = read_table(out, "calls").set_index("call_id")
    recordings = tmp_path / "moved"
    recordings.mkdir()
    (recordings / calls.loc[fail.call_id, "file"]).symlink_to("/etc/hostname")
    app = ReviewApp(out, recordings)
    with pytest.raises(ReviewError, match="outside the recordings"):
        app.recording_path(fail.call_id)


def test_a_reviewer_overturns_a_finding_in_chromium_and_the_score_follows(server, tmp_path):
    from pipeline.rescore import rescore

    url, _, out = server
    fails = _fails(out)
    expected = {}
    browser = Browser(tmp_path / "chromium-profile")
    try:
        page = browser.open(url + "/")
        page.wait_for("document.body.dataset.ready === '1'")
        rows = page.evaluate("[...document.querySelectorAll('tr.finding')].map(tr => [tr.dataset.call, tr.dataset.rule])")
        assert sorted(map(tuple, rows)) == sorted(zip(fails["call_id"], fails["rule_id"]))  # the fails, by default
        page.press("o")  # no finding open: nothing is saved
        index = next(i for i, (c, r) in enumerate(rows) if r == "forbidden.phrase")
        call_id, rule_id = rows[index]
        expected = _expected_score(out, call_id, rule_id)
        page.click(f'tr.finding[data-i="{index}"]')
        page.wait_for("document.querySelector('#player') && document.querySelector('#player').dataset.state === 'ok'")
        assert page.evaluate("document.querySelectorAll('#transcript .line.marked mark').length") >= 1  # the phrase marked
        page.press("o")  # without a reviewer's name the page refuses
        page.wait_for("document.querySelector('#msg').dataset.state === 'error'")
        assert reviews.read_reviews(out).empty
        page.type("#reviewer", "王质检")
        page.click("#d-title")  # focus back on the page, out of the name field (a transcript line would play)
        page.press("p")  # play the clip that starts at the finding
        played = page.wait_for("(() => { const a = document.querySelector('#player');"
                               " return a.dataset.state === 'playing' && a.currentTime > 0.2 && [+a.dataset.start]; })()")[0]
        finding_at = float(fails.set_index(["call_id", "rule_id"]).loc[(call_id, rule_id), "at_s"])
        assert finding_at - 1.5 <= played <= finding_at  # the clip starts just before the finding
        page.press("o")
        page.wait_for(f"document.body.dataset.saved === {json.dumps(f'{call_id}|{rule_id}|overturned')}")
        page.wait_for(f"document.querySelector('tr.finding[data-call=\"{call_id}\"][data-rule=\"{rule_id}\"]"
                      " td[data-verdict]').dataset.verdict === 'overturned'")
        page.screenshot(tmp_path / "review.png")
    finally:
        browser.close()
    saved = reviews.read_reviews(out)
    assert saved[["kind", "call_id", "rule_id", "verdict", "reviewer"]].values.tolist() == [
        ["verdict", call_id, rule_id, "overturned", "王质检"]]
    rescore(out)
    assert read_table(out, "calls").set_index("call_id").loc[call_id, "score"] == expected
    assert (tmp_path / "review.png").stat().st_size > 10_000


def test_saves_are_compacted_and_read_once(results, monkeypatch):
    """Each save is a file; past COMPACT_AT files of a date their rows are copied into one file and
    the files removed, so a page with thousands of verdicts reads a few files; a reader that lists the
    folder mid-compaction (rows in both) keeps one row per review id."""
    import shutil as sh

    from pipeline.storage import parquet

    monkeypatch.setattr(parquet, "COMPACT_AT", 5)
    fails = _fails(results)
    for k in range(12):
        row = fails.iloc[k % len(fails)]
        reviews.record_verdict(results, row.call_id, row.rule_id, ("confirmed", "overturned")[k % 2], f"r{k}")
    saved = reviews.read_reviews(results)
    assert len(saved) == 12 and saved["review_id"].is_unique
    for folder in (results / "reviews").iterdir():
        assert len(list(folder.glob("*.parquet"))) <= 5  # compacted as they came
    folder = next((results / "reviews").iterdir())
    first = sorted(folder.glob("*.parquet"))[0]
    sh.copy(first, folder / ("zz-" + first.name))  # as if read between a compaction's copy and removal
    again = reviews.read_reviews(results)
    assert len(again) == 12 and set(again["review_id"]) == set(saved["review_id"])
    latest = reviews.review_queue(results).set_index(["call_id", "rule_id"])["reviewer"].dropna()
    assert latest.loc[(fails.iloc[11 % len(fails)].call_id, fails.iloc[11 % len(fails)].rule_id)] == "r11"

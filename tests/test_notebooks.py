"""Both notebooks run top to bottom on the demo output, and produce their figures, players and page."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.model

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in notebook.cells:  # they are committed clean: outputs belong to whoever runs them
        assert cell.cell_type != "code" or not cell.outputs, f"{name} is committed with outputs"
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()  # raises on any cell error
    return notebook


def outputs(notebook, mime: str) -> list:
    return [out["data"][mime] for cell in notebook.cells if cell.cell_type == "code"
            for out in cell.outputs if "data" in out and mime in out["data"]]


def test_qa_overview_runs_and_draws_every_chart(demo_truth_results, tmp_path, monkeypatch):
    monkeypatch.setenv("CALLQA_RESULTS", str(demo_truth_results))
    monkeypatch.setenv("CALLQA_FIGURES", str(tmp_path / "figures"))
    monkeypatch.delenv("CALLQA_CALL", raising=False)
    notebook = execute("qa_overview.ipynb")
    assert len(outputs(notebook, "image/png")) == 6
    saved = sorted(p.stem for p in (tmp_path / "figures").glob("*.png"))
    assert saved == ["leaderboard", "rule_failures", "score_distribution", "timeline", "trend_day", "trend_week"]
    tables = "".join(outputs(notebook, "text/html"))
    assert "A1001" in tables and "forbidden.phrase" in tables and "2026-W47" in tables
    assert "#fff3cd" in tables  # the drill-down's transcript highlights the lines with findings
    assert "No review sample" in "".join(outputs(notebook, "text/markdown"))  # nobody has reviewed the demo yet
    # the customers' (synthetic) ratings: every rule's rated calls, the agents' ratings beside their scores
    assert "fail_mean" in tables and "rating_mean" in tables and "客户先挂机" in tables
    assert "Pearson r" in "".join(outputs(notebook, "text/markdown"))


def test_qa_overview_shows_the_precision_of_a_reviewed_sample_and_the_scores_after_review(demo_truth_results, tmp_path,
                                                                                         monkeypatch):
    import shutil

    from pipeline.review import precision, reviews
    from pipeline.rescore import rescore
    from pipeline.storage.parquet import read_table

    out = tmp_path / "out"
    shutil.copytree(demo_truth_results, out)
    sample = reviews.draw_sample(out, per_rule=2, seed=7)
    fails = sample[(sample["rule_id"] == "forbidden.phrase") & (sample["machine_outcome"] == "fail")]
    assert len(fails) == 2  # the demo has two calls with forbidden phrases, in one week
    overturned, confirmed = fails.sort_values("call_id").itertuples()
    reviews.record_verdict(out, overturned.call_id, "forbidden.phrase", "overturned", "王质检", "客户说的，不是坐席")
    reviews.record_verdict(out, confirmed.call_id, "forbidden.phrase", "confirmed", "王质检")
    rescore(out)
    monkeypatch.setenv("CALLQA_RESULTS", str(out))
    monkeypatch.setenv("CALLQA_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("CALLQA_PRECISION_THRESHOLD", "0.9")
    monkeypatch.delenv("CALLQA_CALL", raising=False)
    notebook = execute("qa_overview.ipynb")
    text = "".join(outputs(notebook, "text/markdown"))
    assert "Agreement with the reviewers" in text and "2 reviewed sample results" in text
    assert "Precision under 90%:** `forbidden.phrase` (50%" in text  # one of its two reviewed fails was right
    tables = "".join(outputs(notebook, "text/html"))
    assert "#fde2e1" in tables  # the rule under the threshold is marked in the precision table
    board = read_table(out, "agent_scores")
    agent = read_table(out, "calls").set_index("call_id").loc[overturned.call_id, "agent_id"]
    week = board[(board["period_type"] == "week") & (board["agent_id"] == agent)]
    assert week["overturned_findings"].sum() == 1  # the stored scorecards count the overturned finding
    assert ">overturned_findings<" in tables  # and the notebook's leaderboard shows the count
    assert precision.rule_precision(out).set_index("rule_id").loc["forbidden.phrase", "precision"] == 0.5


def test_trainer_examples_runs_with_players_and_writes_the_page(demo_truth_results, tmp_path, monkeypatch):
    monkeypatch.setenv("CALLQA_RESULTS", str(demo_truth_results))
    monkeypatch.setenv("CALLQA_EXPORT", str(tmp_path / "page"))
    monkeypatch.setenv("CALLQA_RULE", "forbidden.phrase")
    notebook = execute("trainer_examples.ipynb")
    html = "".join(outputs(notebook, "text/html"))
    assert html.count("<audio") == 2  # both calls with forbidden phrases, each with a player
    assert "call04" in html and "依据" in html
    assert (tmp_path / "page" / "index.html").is_file() and len(list((tmp_path / "page" / "clips").glob("*.wav"))) == 2

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


def test_qa_overview_runs_and_draws_every_chart(demo_results, tmp_path, monkeypatch):
    monkeypatch.setenv("CALLQA_RESULTS", str(demo_results))
    monkeypatch.setenv("CALLQA_FIGURES", str(tmp_path / "figures"))
    monkeypatch.delenv("CALLQA_CALL", raising=False)
    notebook = execute("qa_overview.ipynb")
    assert len(outputs(notebook, "image/png")) == 6
    saved = sorted(p.stem for p in (tmp_path / "figures").glob("*.png"))
    assert saved == ["leaderboard", "rule_failures", "score_distribution", "timeline", "trend_day", "trend_week"]
    tables = "".join(outputs(notebook, "text/html"))
    assert "A1001" in tables and "forbidden.phrase" in tables and "2026-W47" in tables
    assert "#fff3cd" in tables  # the drill-down's transcript highlights the lines with findings


def test_trainer_examples_runs_with_players_and_writes_the_page(demo_results, tmp_path, monkeypatch):
    monkeypatch.setenv("CALLQA_RESULTS", str(demo_results))
    monkeypatch.setenv("CALLQA_EXPORT", str(tmp_path / "page"))
    monkeypatch.setenv("CALLQA_RULE", "forbidden.phrase")
    notebook = execute("trainer_examples.ipynb")
    html = "".join(outputs(notebook, "text/html"))
    assert html.count("<audio") == 2  # both calls with forbidden phrases, each with a player
    assert "call04" in html and "依据" in html
    assert (tmp_path / "page" / "index.html").is_file() and len(list((tmp_path / "page" / "clips").glob("*.wav"))) == 2

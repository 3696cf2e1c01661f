"""Rules and rubric over a set of calls' stored rows, and agent scores rebuilt from what is stored.

Both ways a night's tables are made call these: :mod:`pipeline.night` (tonight's transcripts) and
:mod:`pipeline.rescore` (stored transcripts, after a lexicon or rubric change).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ..records import STATUS_ERROR, STATUS_OK
from ..rules.engine import RuleEngine, evaluable, evaluate_calls
from ..rules.lexicon import LexiconSet, load_lexicons
from ..schemas import PARTITION_COLUMN
from ..storage.parquet import read_table, replace_table
from ..storage.rows import error_row
from .rubric import Rubric, load_rubric, score_calls
from .scores import agent_scores


def load_rules_and_rubric(lexicons_dir: str | Path | None, rubric_path: str | Path | None) -> tuple[LexiconSet, Rubric]:
    """Both validated together: the rubric may only name rules that ``rules.toml`` defines.

    Raises:
        LexiconError: any problem in the lexicons, with file and line.
        RubricError: any problem in the rubric, with file and line.
    """
    lexicons = load_lexicons(lexicons_dir)
    return lexicons, load_rubric(rubric_path, [r.rule_id for r in lexicons.rules])


def score_tables(engine: RuleEngine, rubric: Rubric, tables: dict[str, list]) -> dict[str, list]:
    """Rules and scores for a set of calls' rows (as stored), in place.

    Adds the ``hits`` and ``rule_results`` tables and fills the score columns of ``calls``. A call a
    rule crashed on becomes status ``error`` at stage ``rules``, unscored, with an ``errors`` row; a
    call that failed that way before and passes every rule now is ``ok`` again.

    Returns:
        ``tables``.
    """
    calls = tables["calls"]
    for call in calls:
        if call.get("status") == STATUS_ERROR and evaluable(call):  # a rule crashed on it last time
            call["status"], call["error_stage"] = STATUS_OK, None
    evaluation = evaluate_calls(engine, calls, tables.get("utterances", []), tables.get("voice_activity", []))
    if evaluation.crashed:
        now = datetime.now(timezone.utc)
        errors = tables.setdefault("errors", [])
        for call in calls:
            error = evaluation.crashed.get(call["call_id"])
            if error is not None:
                call["status"], call["error_stage"] = STATUS_ERROR, error.stage
                errors.append(error_row(error, call.get("run_id") or "", call[PARTITION_COLUMN], now))
    tables["hits"], tables["rule_results"] = evaluation.hits, evaluation.results
    score_calls(rubric, calls, evaluation.results, evaluation.hits, engine.lexicons.version)
    return tables


def refresh_agent_scores(out_dir: str | Path, rubric: Rubric) -> int:
    """Recompute ``agent_scores`` from all stored calls and rule results and rewrite it.

    Returns:
        Rows written.
    """
    calls = read_table(out_dir, "calls", ["call_id", "agent_id", "status", "score", "passed", "red_line"])
    results = read_table(out_dir, "rule_results", ["call_id", "rule_id", "outcome"])
    scores = agent_scores(calls, results)
    scores["rubric_version"] = rubric.version
    scores[PARTITION_COLUMN] = scores["period_start"]
    rows = scores.astype(object).where(scores.notna(), None).to_dict("records")
    return replace_table(out_dir, "agent_scores", rows)

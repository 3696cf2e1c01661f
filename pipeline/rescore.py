"""Scoring stored calls again: rules and rubric over what is in Parquet, never audio or the model.

Used by the nightly run (score the night, refresh agent scores) and by ``callqa rescore`` after a
lexicon or rubric change: a month of stored utterances is rescored in minutes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from .lexicon import LexiconSet, load_lexicons
from .rules import RuleEngine, apply_rules
from .schemas import PARTITION_COLUMN
from .scoring import Rubric, agent_scores, load_rubric, score_calls
from .store import read_arrow, read_table, replace_table, write_table

logger = logging.getLogger("callqa.rescore")


def load_rules_and_rubric(lexicons_dir: str | Path | None, rubric_path: str | Path | None) -> tuple[LexiconSet, Rubric]:
    """Both validated together: the rubric may only name rules that ``rules.toml`` defines.

    Raises:
        LexiconError: any problem in either, with file and line.
    """
    lexicons = load_lexicons(lexicons_dir)
    return lexicons, load_rubric(rubric_path, [r.rule_id for r in lexicons.rules])


def score_tables(engine: RuleEngine, rubric: Rubric, tables: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Rules and scores for a set of calls' rows (as stored): adds ``hits`` and ``rule_results`` and
    fills the score columns of ``calls``."""
    apply_rules(engine, tables)
    score_calls(rubric, tables["calls"], tables["rule_results"], tables["hits"], engine.lexicons.version)
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


@dataclass
class RescoreSummary:
    calls: int
    utterances: int
    hits: int
    rule_results: int
    agent_score_rows: int
    lexicon_version: str
    rubric_version: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _rows(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def rescore(out_dir: str | Path, lexicons_dir: str | Path | None = None, rubric_path: str | Path | None = None,
            date_from: str | None = None, date_to: str | None = None) -> RescoreSummary:
    """Recompute hits, rule results, call scores and agent scores from stored utterances.

    Args:
        out_dir: an output folder written by ``callqa run``.
        lexicons_dir: lexicons to apply (default: the project's).
        rubric_path: rubric to apply (default: ``lexicons/rubric.toml``).
        date_from, date_to: call dates to rescore, inclusive (default: all).

    Raises:
        LexiconError: the lexicons or the rubric are invalid (nothing is written).
    """
    started = time.perf_counter()
    lexicons, rubric = load_rules_and_rubric(lexicons_dir, rubric_path)
    engine = RuleEngine(lexicons)
    dates = (date_from, date_to)
    calls = read_arrow(out_dir, "calls", dates=dates)
    # Word timings are only needed where a rule finds something: they are read for those calls after.
    utterances = read_arrow(out_dir, "utterances", ["call_id", "utterance_idx", "speaker", "start_s", "end_s",
                                                     "text"], dates=dates)
    voice = read_arrow(out_dir, "voice_activity", dates=dates)
    tables = {"calls": calls.to_pylist(), "utterances": utterances.to_pylist(), "voice_activity": voice.to_pylist()}
    score_tables(engine, rubric, tables)
    _time_hits_from_words(out_dir, engine, tables, dates)
    call_ids = {row["call_id"] for row in tables["calls"]}
    for table in ("hits", "rule_results", "calls"):
        write_table(out_dir, table, tables[table], replace=call_ids)
    rows = refresh_agent_scores(out_dir, rubric)
    return RescoreSummary(len(tables["calls"]), len(tables["utterances"]), len(tables["hits"]),
                          len(tables["rule_results"]), rows, lexicons.version, rubric.version,
                          round(time.perf_counter() - started, 2))


def _time_hits_from_words(out_dir, engine: RuleEngine, tables: dict, dates) -> None:
    """Give hits their word-level times (the first pass read utterances without words)."""
    import pyarrow.compute as pc

    from .rules import make_view

    if not tables["hits"]:
        return
    wanted = {(h["call_id"], h["utterance_idx"]) for h in tables["hits"]}
    stored = read_arrow(out_dir, "utterances", ["call_id", "utterance_idx", "speaker", "start_s", "end_s", "text",
                                                "words"], dates=dates)
    stored = stored.filter(pc.is_in(stored["call_id"], value_set=pa_array({c for c, _ in wanted})))
    views = {}
    for row in stored.to_pylist():
        if (row["call_id"], row["utterance_idx"]) in wanted:
            views[(row["call_id"], row["utterance_idx"])] = make_view(row, engine.sounds)
    for hit in tables["hits"]:
        view = views.get((hit["call_id"], hit["utterance_idx"]))
        if view is None:
            continue
        start_s, end_s = view.span_time(*hit["_span"])
        hit["start_s"], hit["end_s"] = round(float(start_s), 3), round(float(end_s), 3)


def pa_array(values):
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())

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


def _score_chunk(job: tuple) -> dict:
    """Rules and scores for some calls; runs in a worker process. Arrow in, Arrow out (cheap to pass)."""
    import pyarrow as pa

    from .store import to_arrow

    out_dir, lexicons_dir, rubric_path, dates, calls, utterances, voice = job
    lexicons, rubric = load_rules_and_rubric(lexicons_dir, rubric_path)
    engine = RuleEngine(lexicons)
    tables = {"calls": calls.to_pylist(), "utterances": utterances.to_pylist(), "voice_activity": voice.to_pylist()}
    score_tables(engine, rubric, tables)
    _time_hits_from_words(out_dir, engine, tables, dates)
    result = {"utterances": len(tables["utterances"])}
    for name in ("calls", "rule_results", "hits"):
        rows = tables[name]
        arrow = to_arrow(name, rows)
        result[name] = arrow.append_column(PARTITION_COLUMN, pa.array([r[PARTITION_COLUMN] for r in rows], pa.string()))
    return result


def rescore(out_dir: str | Path, lexicons_dir: str | Path | None = None, rubric_path: str | Path | None = None,
            date_from: str | None = None, date_to: str | None = None, workers: int | None = None) -> RescoreSummary:
    """Recompute hits, rule results, call scores and agent scores from stored utterances.

    Args:
        out_dir: an output folder written by ``callqa run``.
        lexicons_dir: lexicons to apply (default: the project's).
        rubric_path: rubric to apply (default: ``lexicons/rubric.toml``).
        date_from, date_to: call dates to rescore, inclusive (default: all).
        workers: processes that evaluate rules in parallel (default: one per CPU core).

    Raises:
        LexiconError: the lexicons or the rubric are invalid (nothing is written).
    """
    import os
    from concurrent.futures import ProcessPoolExecutor

    import pyarrow as pa
    import pyarrow.compute as pc

    started = time.perf_counter()
    lexicons, rubric = load_rules_and_rubric(lexicons_dir, rubric_path)  # fail before reading anything
    dates = (date_from, date_to)
    calls = read_arrow(out_dir, "calls", dates=dates)
    # word timings are only needed where a rule finds something: those are read in _time_hits_from_words
    utterances = read_arrow(out_dir, "utterances", ["call_id", "utterance_idx", "speaker", "start_s", "end_s",
                                                     "text"], dates=dates)
    voice = read_arrow(out_dir, "voice_activity", dates=dates)
    call_ids = calls["call_id"].to_pylist()
    workers = max(1, min(workers or os.cpu_count() or 1, len(call_ids) // 2000 or 1))
    chunks = [call_ids[i::workers] for i in range(workers)]
    jobs = []
    for chunk in chunks:
        wanted = pa.array(chunk, pa.string())
        jobs.append((str(out_dir), lexicons.folder, rubric.source, dates,
                     calls.filter(pc.is_in(calls["call_id"], value_set=wanted)),
                     utterances.filter(pc.is_in(utterances["call_id"], value_set=wanted)),
                     voice.filter(pc.is_in(voice["call_id"], value_set=wanted))))
    if workers == 1:
        parts = [_score_chunk(jobs[0])]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_score_chunk, jobs))
    merged = {name: pa.concat_tables([p[name] for p in parts]) for name in ("calls", "rule_results", "hits")}
    replace = set(call_ids)
    for table in ("hits", "rule_results", "calls"):
        write_table(out_dir, table, merged[table], replace=replace)
    rows = refresh_agent_scores(out_dir, rubric)
    return RescoreSummary(len(call_ids), sum(p["utterances"] for p in parts), merged["hits"].num_rows,
                          merged["rule_results"].num_rows, rows, lexicons.version, rubric.version,
                          round(time.perf_counter() - started, 2))


def _time_hits_from_words(out_dir, engine: RuleEngine, tables: dict, dates) -> None:
    """Give hits their word-level times: the first pass read utterances without words (the biggest
    column); only the utterances that have findings are read again with them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .rules import _stored_key, moments_from_hits, word_span_time

    if not tables["hits"]:
        return
    wanted = {f"{h['call_id']}#{h['utterance_idx']}" for h in tables["hits"]}
    stored = read_arrow(out_dir, "utterances", ["call_id", "utterance_idx", "start_s", "end_s", "text", "words"],
                        dates=dates)
    keys = pc.binary_join_element_wise(stored["call_id"], pc.cast(stored["utterance_idx"], pa.string()), "#")
    stored = stored.filter(pc.is_in(keys, value_set=pa.array(sorted(wanted), pa.string())))
    rows = {f"{r['call_id']}#{r['utterance_idx']}": r for r in stored.to_pylist()}
    for hit in tables["hits"]:
        row = rows.get(f"{hit['call_id']}#{hit['utterance_idx']}")
        if row is None:
            continue
        start_s, end_s = word_span_time(row["words"], len(_stored_key(row["text"])), *hit["_span"],
                                        (hit["start_s"], hit["end_s"]))
        hit["start_s"], hit["end_s"] = round(float(start_s), 3), round(float(end_s), 3)
    moments_from_hits(tables["rule_results"], tables["hits"])

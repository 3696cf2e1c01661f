"""Scoring stored calls again: rules and rubric over what is in Parquet, never audio or the model.

``callqa rescore`` after a lexicon or rubric change, or after reviewers' verdicts (each reviewed
finding's deduction follows its latest verdict, :mod:`pipeline.scoring.verdicts`): a month of stored utterances is rescored in
minutes, in parallel worker processes (Arrow in and out). A call a rule crashed on before is checked
again (the rule may be fixed); a call a rule crashes on now is failed at stage ``rules`` and not
scored, with an ``errors`` row.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from .rules.engine import RuleEngine, moments_from_hits
from .rules.matching import word_span_time
from .schemas import PARTITION_COLUMN
from .records import Scoring, has_transcript
from .publish import refresh_agent_scores, stored_verdicts
from .scoring.tables import load_rules_and_rubric, score_transcripts
from .storage.lock import OutputLock
from .storage.parquet import read_arrow, remove_rows, to_arrow, transaction, write_table
from .storage.rows import transcripts_of, with_scores, words_of
from .storage.transaction import recover
from .text import stored_key

SCORED_TABLES = ("hits", "rule_results", "commitments", "calls")  # what a rescore writes, calls last
SPARSE_TABLES = ("hits", "commitments")  # tables where a call may have no row at all

logger = logging.getLogger("callqa.rescore")


@dataclass
class RescoreSummary:
    """What a rescore did. ``failed``: calls a rule crashed on (not scored; see the ``errors`` table)."""

    calls: int
    utterances: int
    hits: int
    rule_results: int
    agent_score_rows: int
    lexicon_version: str
    rubric_version: str
    seconds: float
    failed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RescoreJob:
    """Some stored calls to check and score again, in a worker process (Arrow in: cheap to pass)."""

    out_dir: str
    lexicons_dir: str | None
    rubric_path: str | None
    dates: tuple[str | None, str | None]
    calls: pa.Table
    utterances: pa.Table
    voice: pa.Table
    verdicts: dict


def _score_chunk(job: RescoreJob) -> dict:
    """Rules and scores for some calls; runs in a worker process. Arrow in, Arrow out (cheap to pass)."""
    lexicons, rubric = load_rules_and_rubric(job.lexicons_dir, job.rubric_path)
    engine = RuleEngine(lexicons)
    tables = {"calls": job.calls.to_pylist(), "utterances": job.utterances.to_pylist(),
              "voice_activity": job.voice.to_pylist(), "errors": []}
    evaluated = {row["file"] for row in tables["calls"] if has_transcript(row)}
    scoring = score_transcripts(engine, rubric, transcripts_of(tables), verdicts=job.verdicts)
    tables = with_scores(tables, _time_hits_from_words(job.out_dir, scoring, job.dates))
    result = {"utterances": len(tables["utterances"]), "evaluated_files": evaluated}
    for name in SCORED_TABLES + ("errors",):
        rows = tables[name]
        arrow = to_arrow(name, rows)
        dates_of = [r[PARTITION_COLUMN] if isinstance(r, dict) else r.call_date for r in rows]
        result[name] = arrow.append_column(PARTITION_COLUMN, pa.array(dates_of, pa.string()))
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
        LexiconError, RubricError: the lexicons or the rubric are invalid (nothing is written).
        OutputBusyError: a night or another rescore is writing ``out_dir``.
        StoreError: the output cannot be read or written.
    """
    started = time.perf_counter()
    lexicons, rubric = load_rules_and_rubric(lexicons_dir, rubric_path)  # fail before reading anything
    with OutputLock(out_dir, "rescore"):
        recover(out_dir)
        return _rescore(out_dir, lexicons, rubric, (date_from, date_to), workers, started)


def _rescore(out_dir, lexicons, rubric, dates, workers, started) -> RescoreSummary:
    calls = read_arrow(out_dir, "calls", dates=dates)
    # word timings are only needed where a rule finds something: those are read in _time_hits_from_words;
    # a score file (how the speech sounds: dialect.putonghua) reads the decoder's confidence and the words'
    # and the checks of phrases on the audio, stored by the night that had it (decided again here)
    columns = ["call_id", "utterance_idx", "speaker", "start_s", "end_s", "text", "checks", "numbers"]
    if lexicons.scores:
        columns += ["avg_logprob", "no_speech_prob", "words"]
    utterances = read_arrow(out_dir, "utterances", columns, dates=dates)
    voice = read_arrow(out_dir, "voice_activity", dates=dates)
    call_ids = calls["call_id"].to_pylist()
    verdicts = stored_verdicts(out_dir)  # the score follows each reviewed finding's final verdict
    workers = max(1, min(workers or os.cpu_count() or 1, len(call_ids) // 2000 or 1))
    chunks = [call_ids[i::workers] for i in range(workers)]
    jobs = []
    for chunk in chunks:
        wanted, members = pa.array(chunk, pa.string()), set(chunk)
        jobs.append(RescoreJob(str(out_dir), lexicons.folder, rubric.source, dates,
                               calls.filter(pc.is_in(calls["call_id"], value_set=wanted)),
                               utterances.filter(pc.is_in(utterances["call_id"], value_set=wanted)),
                               voice.filter(pc.is_in(voice["call_id"], value_set=wanted)),
                               {key: v for key, v in verdicts.items() if key[0] in members}))
    if workers == 1:
        parts = [_score_chunk(jobs[0])]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_score_chunk, jobs))
    merged = {name: pa.concat_tables([p[name] for p in parts]) for name in SCORED_TABLES + ("errors",)}
    replace = set(call_ids)
    with transaction(out_dir) as txn:  # published together, or not at all
        for table in SCORED_TABLES:
            if table in SPARSE_TABLES:  # a call may have none now: its old rows go even where no new row is
                remove_rows(out_dir, table, replace, txn)
            write_table(out_dir, table, merged[table], replace=replace, txn=txn)
        # a call checked again drops the rules error it had, and gets one if a rule crashes on it now
        remove_rows(out_dir, "errors", set().union(*(p["evaluated_files"] for p in parts)), txn)
        if merged["errors"].num_rows:
            write_table(out_dir, "errors", merged["errors"], txn=txn)
        rows = refresh_agent_scores(out_dir, rubric, txn)
    return RescoreSummary(len(call_ids), sum(p["utterances"] for p in parts), merged["hits"].num_rows,
                          merged["rule_results"].num_rows, rows, lexicons.version, rubric.version,
                          round(time.perf_counter() - started, 2), merged["errors"].num_rows)


def _time_hits_from_words(out_dir, scoring: Scoring, dates) -> Scoring:
    """Give hits their word-level times: the first pass read utterances without words (the biggest
    column); only the utterances that have findings are read again with them."""
    if not scoring.hits:
        return scoring
    wanted = {f"{h.call_id}#{h.utterance_idx}" for h in scoring.hits}
    stored = read_arrow(out_dir, "utterances", ["call_id", "utterance_idx", "start_s", "end_s", "text", "words"],
                        dates=dates)
    keys = pc.binary_join_element_wise(stored["call_id"], pc.cast(stored["utterance_idx"], pa.string()), "#")
    stored = stored.filter(pc.is_in(keys, value_set=pa.array(sorted(wanted), pa.string())))
    rows = {f"{r['call_id']}#{r['utterance_idx']}": r for r in stored.to_pylist()}
    hits = []
    for hit in scoring.hits:
        row = rows.get(f"{hit.call_id}#{hit.utterance_idx}")
        if row is not None:
            start_s, end_s = word_span_time(words_of(row["words"]), len(stored_key(row["text"])), hit.key_start,
                                            hit.key_end, (hit.start_s, hit.end_s))
            hit = replace(hit, start_s=round(float(start_s), 3), end_s=round(float(end_s), 3))
        hits.append(hit)
    return replace(scoring, hits=tuple(hits), results=tuple(moments_from_hits(scoring.results, hits)))

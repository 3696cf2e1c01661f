"""Rules and rubric over a set of calls' transcripts, and agent scores from calls and rule results: no
file I/O and no rows (the storage layer builds the transcripts and turns the answer into rows; what is
read and written around them is :mod:`pipeline.publish`'s).

Both ways a night's tables are made call these: :mod:`pipeline.night` (tonight's transcripts) and
:mod:`pipeline.rescore` (stored transcripts, after a lexicon or rubric change).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..config import LEXICONS_DIR
from ..records import STATUS_ERROR, STATUS_OK, STATUS_UNSCORABLE, CallScore, CallTranscript, Scoring, Verdict
from ..rules.engine import RuleEngine, evaluate_calls
from ..rules.lexicon import LexiconSet, load_lexicons
from ..schemas import PARTITION_COLUMN
from .rubric import DEFAULT_RUBRIC, Rubric, load_rubric, score_calls
from .scorable import assess
from .scores import agent_scores
from .verdicts import apply_verdicts


def load_rules_and_rubric(lexicons_dir: str | Path | None, rubric_path: str | Path | None) -> tuple[LexiconSet, Rubric]:
    """Both validated together: the rubric may only name rules that ``rules.toml`` defines.

    Raises:
        LexiconError: any problem in the lexicons, with file and line.
        RubricError: any problem in the rubric, with file and line.
    """
    lexicons = load_lexicons(lexicons_dir)
    return lexicons, load_rubric(rubric_path, [r.rule_id for r in lexicons.rules])


@dataclass(frozen=True)
class Standards:
    """The rules and rubric a night checks and scores by, loaded and validated together."""

    lexicons: LexiconSet
    rubric: Rubric
    engine: RuleEngine

    @property
    def version(self) -> str:
        """The lexicons' and the rubric's content hashes: what a task compares with the night's."""
        return f"{self.lexicons.version}/{self.rubric.version}"


_loaded: dict[tuple, Standards] = {}
_loading = threading.Lock()


def _signature(*places: str | Path | None) -> tuple:
    """Names, sizes and times of the files in ``places`` (folders or files): changes when one is edited."""
    found = []
    for place in places:
        if place is None:
            found.append(None)
            continue
        path = Path(place)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            try:
                stat = file.stat()
                found.append((str(file.resolve()), stat.st_size, stat.st_mtime_ns))
            except OSError:
                found.append((str(file), None, None))
    return tuple(found)


def load_standards(lexicons_dir: str | Path | None, rubric_path: str | Path | None) -> Standards:
    """The lexicons, rubric and rule engine, loaded once per process while their files are unchanged
    (a night's check, plan and every batch on this worker share one load).

    Raises:
        LexiconError, RubricError: as :func:`load_rules_and_rubric`.
    """
    key = _signature(lexicons_dir or LEXICONS_DIR, rubric_path or DEFAULT_RUBRIC)
    with _loading:
        if key not in _loaded:
            lexicons, rubric = load_rules_and_rubric(lexicons_dir, rubric_path)
            _loaded.clear()  # one set at a time: an edited lexicon replaces the old one
            _loaded[key] = Standards(lexicons, rubric, RuleEngine(lexicons))
        return _loaded[key]


def score_transcripts(engine: RuleEngine, rubric: Rubric, transcripts: Iterable[CallTranscript],
                      timings: dict[str, float] | None = None,
                      verdicts: dict[tuple[str, str], Verdict] | None = None) -> Scoring:
    """Rules and scores for a set of calls' transcripts.

    Every call is first assessed (:mod:`pipeline.scoring.scorable`): ``ok`` or ``unscorable`` with its
    reason, under the rubric's current policy. The rules then run on the ``ok`` calls only, and the
    rubric scores them. A call a rule crashed on becomes status ``error`` at stage ``rules``, unscored,
    with its error; a call that failed that way before is assessed and checked again.

    Args:
        timings: where the seconds of the rules (``rules_s``) and of the assessment and scores
            (``scoring_s``) are added, when given.
        verdicts: reviewers' verdicts (:func:`pipeline.publish.stored_verdicts`): the
            score follows each result's outcome after review.

    Returns:
        A :class:`~pipeline.records.CallScore` per transcript, the hits and rule results, the crashes.
    """
    timings = {} if timings is None else timings
    clock = time.perf_counter()
    transcripts = list(transcripts)
    assessed: dict[str, CallScore] = {}
    for call in transcripts:
        assessment = assess(call, rubric.score)
        warnings = tuple(call.warnings) + tuple(w for w in assessment.warnings if w not in call.warnings)
        assessed[call.call_id] = CallScore(call.call_id, STATUS_OK if assessment.scorable else STATUS_UNSCORABLE,
                                           assessment.reason, None, warnings)
    timings["scoring_s"] = timings.get("scoring_s", 0.0) + time.perf_counter() - clock
    clock = time.perf_counter()
    evaluation = evaluate_calls(engine, [replace(c, status=STATUS_OK, error_stage=None) for c in transcripts
                                         if assessed[c.call_id].status == STATUS_OK])
    timings["rules_s"] = timings.get("rules_s", 0.0) + time.perf_counter() - clock
    clock = time.perf_counter()
    for call_id, error in evaluation.crashed.items():
        assessed[call_id] = replace(assessed[call_id], status=STATUS_ERROR, error_stage=error.stage,
                                    status_reason=f"{error.error_type}: {error.message}")
    judged = apply_verdicts(evaluation.results, verdicts)
    calls, results = score_calls(rubric, assessed.values(), judged, evaluation.hits, engine.lexicons.version)
    timings["scoring_s"] += time.perf_counter() - clock
    return Scoring(tuple(calls), tuple(evaluation.hits), tuple(results), tuple(evaluation.crashed.values()),
                   rubric.version, engine.lexicons.version, tuple(evaluation.commitments))


def agent_score_rows(calls: pd.DataFrame, results: pd.DataFrame, rubric: Rubric) -> list[dict]:
    """``agent_scores`` rows from every stored call (call_id, agent_id, call_date, status, score, passed,
    red_line) and rule result (call_id, rule_id, outcome, verdict, final_outcome)."""
    scores = agent_scores(calls, results)
    scores["rubric_version"] = rubric.version
    scores[PARTITION_COLUMN] = scores["period_start"]
    return scores.astype(object).where(scores.notna(), None).to_dict("records")

"""callqa's library: call recordings in, transcripts, findings and scores out, as Parquet tables.

The front door: the entry points a program, a notebook or the Prefect flows use. The pipeline has
two halves, one subpackage each, and the packages that store and read what they make:

- ``pipeline.transcribe``  audio -> utterances (decode, voice activity, turns, model, guard, masking)
- ``pipeline.rules``       utterances -> findings and rule results (lexicons, matching, checks)
- ``pipeline.verify``      the second listening: the phrases verdicts rest on, checked on the audio
                           while a night has it (stored with the utterances, decided by the rules)
- ``pipeline.scoring``     rule results -> call scores and agent scorecards (the rubric)
- ``pipeline.storage``     the Parquet tables (the only reader and writer), hashing, what is stored
- ``pipeline.review``      reading results: notebooks' frames, charts, example calls for trainers;
                           human review (verdicts, appeals, the sample, precision, the review page)
- ``pipeline.night``       a night of recordings through both halves, written once, run by threads
                           or by Prefect (rows staged by path, counts returned)
- ``pipeline.rescore``     stored transcripts through the second half again

Example::

    from pipeline import load_config, run_night, load_results, leaderboard
    night = run_night("demo/recordings", "out/demo", load_config())
    print(night.summary.processed, "calls scored")
    print(leaderboard(load_results("out/demo")))

This package never imports Prefect (a test checks); orchestration lives in ``flows/``. Names are
imported on first use, so ``import pipeline`` stays light.
"""

from __future__ import annotations

import importlib
import logging

__version__ = "0.1.0"

logger = logging.getLogger("callqa")  # the library's one logger family ("callqa.*"); no handlers added

# name -> module that defines it
_ENTRY_POINTS = {
    # configuration and errors
    "CallqaConfig": "pipeline.config",
    "load_config": "pipeline.config",
    "PipelineError": "pipeline.errors",
    # a night, with or without Prefect
    "run_night": "pipeline.night",
    "drive_night": "pipeline.night",
    "ThreadRunner": "pipeline.night",
    "plan_night": "pipeline.night",
    "run_batch": "pipeline.night",
    "finish_night": "pipeline.night",
    "check_standards": "pipeline.night",
    "NightPlan": "pipeline.night",
    "NightOutcome": "pipeline.night",
    "RunSummary": "pipeline.summary",
    # the first half: one recording
    "discover_recordings": "pipeline.transcribe.discover",
    "load_model": "pipeline.transcribe.model",
    "install_bundled_model": "pipeline.transcribe.model",
    "process_recording": "pipeline.transcribe.recording",
    "verifier_for": "pipeline.verify",
    # between the halves: a call's transcript, from a fresh result or from stored rows
    "CallTranscript": "pipeline.records",
    "transcripts_of": "pipeline.storage.rows",
    # the second half
    "load_lexicons": "pipeline.rules.lexicon",
    "RuleEngine": "pipeline.rules.engine",
    "evaluate_calls": "pipeline.rules.engine",
    "read_dialogue": "pipeline.rules.dialogue",
    "load_rubric": "pipeline.scoring.rubric",
    "score_transcripts": "pipeline.scoring.tables",
    "agent_scores": "pipeline.scoring.scores",
    "rescore": "pipeline.rescore",
    # the tables
    "read_table": "pipeline.storage.parquet",
    "TABLES": "pipeline.schemas",
    # reading results
    "load_results": "pipeline.review.explore",
    "leaderboard": "pipeline.review.explore",
    "call_detail": "pipeline.review.explore",
    "pick_examples": "pipeline.review.examples",
    "export_examples": "pipeline.review.examples",
    # human review
    "record_verdict": "pipeline.review.reviews",
    "record_appeal": "pipeline.review.reviews",
    "decide_appeal": "pipeline.review.reviews",
    "draw_sample": "pipeline.review.reviews",
    "review_queue": "pipeline.review.reviews",
    "rule_precision": "pipeline.review.precision",
    "ReviewApp": "pipeline.review.server",
}

__all__ = sorted(_ENTRY_POINTS)


def __getattr__(name: str):
    module = _ENTRY_POINTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

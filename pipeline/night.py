"""A night without Prefect: the same steps as the ``callqa-transcribe`` flow, in one process.

For tests, benchmarks (the library side of the Prefect overhead figure) and embedding callqa in
another scheduler. No incremental skip and no retries: those are the flow's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

from .asr import load_model
from .config import CallqaConfig, load_config, resolve_concurrency
from .discover import discover_recordings
from .guard import HallucinationGuard
from .process import process_recording
from .rescore import load_rules_and_rubric, refresh_agent_scores, score_tables
from .rules import RuleEngine
from .store import rows_for_run, write_run


def run_folder(input_dir: str | Path, out_dir: str | Path, config: CallqaConfig | None = None,
               run_id: str = "library", workers: int | None = None) -> dict[str, int]:
    """Transcribe, check and score every recording of ``input_dir`` into ``out_dir``.

    Returns:
        Rows written per table (``agent_scores`` included).
    """
    config = config or load_config()
    lexicons, rubric = load_rules_and_rubric(config.rules.lexicons, config.rules.rubric)  # fail before the audio
    workers = resolve_concurrency(config, workers)
    model = load_model(config.asr, workers)
    discovery = discover_recordings(input_dir, config.input)
    guard = HallucinationGuard(config.guard)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda r: process_recording(r, model, config, guard=guard), discovery.recordings))
    tables = score_tables(RuleEngine(lexicons), rubric,
                          rows_for_run(results, discovery.errors, run_id, ZoneInfo(config.input.timezone)))
    written = write_run(out_dir, tables)
    written["agent_scores"] = refresh_agent_scores(out_dir, rubric)
    return written

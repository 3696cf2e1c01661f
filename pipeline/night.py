"""The night: a folder of recordings becomes Parquet tables, with or without Prefect.

The steps, each a function the Prefect flow (``flows/nightly.py``) also calls, as tasks:

1. :func:`check_standards`  the lexicons, rubric and hallucination list are valid (else nothing runs)
2. :func:`plan_night`       discover the recordings, reuse what is already transcribed, group the
                             rest into batches of about a minute of audio
3. :func:`transcribe_batch` a batch of recordings through the first half (``pipeline.transcribe``);
                             a recording that cannot be read just now is set aside as
                             :class:`Unreadable`, to be tried again alone
4. :func:`transcribe_again` one such recording, once more (the caller waits between tries)
5. :func:`finish_night`     tonight's transcripts and the reused ones -> rules and scores (the second
                             half), tables written, agent scores rebuilt, the night's summary

:func:`run_night` runs all of it in one process, in threads sharing one model, waiting
``[run] retry_delays_s`` between tries of an unreadable recording; the flow runs the same steps as
Prefect tasks with Prefect's retries. A test runs one folder both ways and compares the tables.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence, TypeVar
from zoneinfo import ZoneInfo

from .config import CallqaConfig, load_config, resolve_concurrency
from .errors import TransientInputError
from .records import STATUS_ERROR, CallResult, ErrorRecord, Recording
from .rules.engine import RuleEngine
from .speakers.agent import role_cues
from .scoring.tables import load_rules_and_rubric, refresh_agent_scores, score_tables
from .scoring.verdicts import stored_verdicts
from .storage.incremental import StoredTranscripts, find_stored_transcripts
from .storage.lock import OutputLock
from .storage.parquet import transaction, write_run
from .storage.transaction import recover
from .storage.rows import rows_for_run
from .summary import RunSummary, summarise, summary_markdown
from .engines import engine_for
from .transcribe.discover import Discovery
from .transcribe.guard import load_phrases

logger = logging.getLogger("callqa.night")

T = TypeVar("T")
Progress = Callable[[str, int], None]  # (event, total): event is "start" or a finished recording's file


def check_standards(config: CallqaConfig) -> None:
    """Fail a night before any audio is touched when the rules cannot be trusted.

    Raises:
        LexiconError: the phrase lists or ``rules.toml`` are invalid.
        RubricError: the rubric is invalid.
        HallucinationListError: the guard's phrase list is invalid.
    """
    load_rules_and_rubric(config.rules.lexicons, config.rules.rubric)
    load_phrases(config.guard.phrases_file)
    role_cues(config.rules.lexicons)


def plan_batches(items: Sequence[T], duration_of: Callable[[T], float | None], target_s: float,
                 max_items: int) -> list[list[T]]:
    """Group ``items`` (in their order) into batches of about ``target_s`` seconds of audio.

    An orchestrator pays a fixed cost per task (Prefect: about 0.1 s of a worker's time, measured on 2
    cores), which is nothing next to a 3-minute call and a sixth of the work of a 2.5-second one.
    An item of ``target_s`` or more, or of unknown duration (None), is a batch of its own (it is
    retried and reported on its own). Short items fill a batch until adding the next would pass
    ``target_s`` or ``max_items``. ``target_s`` 0 gives one batch per item.
    """
    batches: list[list[T]] = []
    current: list[T] = []
    filled = 0.0
    for item in items:
        seconds = duration_of(item)
        if target_s <= 0 or seconds is None or seconds >= target_s:
            batches.append([item])
            continue
        if current and (filled + seconds > target_s or len(current) >= max_items):
            batches.append(current)
            current, filled = [], 0.0
        current.append(item)
        filled += seconds
    if current:
        batches.append(current)
    return batches


@dataclass
class NightPlan:
    """What a night will do: the recordings found, those reused, and the batches to transcribe.

    Attributes:
        model_label: the model as outputs record it (``calls.model``); empty when nothing is to be
            transcribed.
        discovery: recordings, inputs rejected before processing, files ignored.
        reused: recordings already transcribed the way tonight would: only checked and scored.
        batches: the other recordings, grouped into tasks.
    """

    input_dir: Path
    out_dir: Path
    config: CallqaConfig
    run_id: str
    model_label: str
    discovery: Discovery
    reused: StoredTranscripts
    batches: list[list[Recording]]

    @property
    def total(self) -> int:
        return len(self.discovery.recordings)

    @property
    def to_transcribe(self) -> list[Recording]:
        return [recording for batch in self.batches for recording in batch]


def plan_night(input_dir: str | Path, out_dir: str | Path, config: CallqaConfig, run_id: str = "library") -> NightPlan:
    """Discover the night's recordings, skip those already transcribed, batch the rest.

    Raises:
        InputError: the input folder is missing or unreadable.
        ManifestError: manifest.csv cannot be used at all.
        ModelError: the model cannot be resolved (its id is part of what is compared).
    """
    engine = engine_for(config)
    discovery = engine.discover(Path(input_dir))
    label, reused = "", StoredTranscripts()
    if discovery.recordings:
        label = engine.label()
        reused = find_stored_transcripts(out_dir, discovery.recordings, engine.fingerprint(label),
                                         ZoneInfo(config.input.timezone), engine.content_path)
    skip = reused.call_ids
    to_transcribe = [r for r in discovery.recordings if r.call_id not in skip]
    durations = {r.call_id: engine.duration(r) for r in to_transcribe} if config.run.batch_audio_s else {}
    batches = plan_batches(to_transcribe, lambda r: durations.get(r.call_id), config.run.batch_audio_s,
                           config.run.batch_max_calls)
    logger.info("%d recordings: %d reused (transcribed before with this model and options), %d to transcribe "
                "in %d batches; %d rejected, %d ignored", len(discovery.recordings), len(reused),
                len(to_transcribe), len(batches), len(discovery.errors), len(discovery.ignored))
    return NightPlan(Path(input_dir), Path(out_dir), config, run_id, label, discovery, reused, batches)


@dataclass(frozen=True)
class Unreadable:
    """A recording of a batch that could not be read just now: it is tried again on its own."""

    recording: Recording
    reason: str


@dataclass
class BatchOutcome:
    """What a batch gave: a result per recording read, and the recordings to try again."""

    results: list[CallResult] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)


def transcribe_batch(recordings: list[Recording], config: CallqaConfig, workers: int) -> BatchOutcome:
    """Transcribe a batch of recordings one after the other with the night's engine (``[asr] engine``;
    Whisper: the process's model; import: the transcripts read).

    Args:
        recordings: the batch.
        config: the night's options.
        workers: how many batches run at once in this process (they share the model and the cores).

    Returns:
        A result per recording (a bad recording is an error result), and those that could not be
        read for a reason that may pass.

    Raises:
        ModelError: the model cannot be loaded.
    """
    engine = engine_for(config)
    outcome = BatchOutcome()
    for recording in recordings:
        try:
            outcome.results.append(engine.process(recording, workers))
        except TransientInputError as exc:
            outcome.unreadable.append(Unreadable(recording, str(exc)))
    return outcome


def transcribe_again(recording: Recording, config: CallqaConfig, workers: int) -> CallResult:
    """One recording that could not be read in its batch, once more.

    Raises:
        TransientInputError: it still cannot be read (the caller waits and tries again, or gives up
            with :func:`unreadable_result`).
    """
    return engine_for(config).process(recording, workers)


def unreadable_result(recording: Recording, model: str, exc: BaseException) -> CallResult:
    """The result of a recording that still could not be read after every try."""
    return CallResult(recording=recording, status=STATUS_ERROR, model=model, processed_at=datetime.now(timezone.utc),
                      error=ErrorRecord(recording.file, recording.call_id, getattr(exc, "stage", "read"),
                                        type(exc).__name__, f"{exc} (after every retry)", recording.started_at))


@dataclass
class NightOutcome:
    """A finished night: its summary, the rows it wrote, and tonight's transcription results."""

    summary: RunSummary
    tables: dict[str, list]
    results: list[CallResult]

    def markdown(self) -> str:
        """The night for the Prefect UI (the flow's ``callqa-night`` artifact)."""
        return summary_markdown(self.summary, self.results, self.tables["rule_results"], self.tables["errors"])


def finish_night(plan: NightPlan, results: list[CallResult], started_at: float) -> NightOutcome:
    """Check and score tonight's transcripts and the reused ones, write every table, rebuild agent
    scores, and count the night.

    Args:
        plan: the night's plan.
        results: one per recording transcribed tonight (ok or failed).
        started_at: ``time.time()`` when the night began (for its wall time and speed); a clock
            time, not a monotonic one, because a Dask worker on another machine may finish the night.

    Raises:
        LexiconError, RubricError: the rules became invalid since the night began.
        StoreError: the output cannot be written.
    """
    tables = rows_for_run(results, plan.discovery.errors, plan.run_id, ZoneInfo(plan.config.input.timezone))
    for table, rows in plan.reused.rows.items():
        tables[table].extend(rows)
    for row in plan.reused.rows["calls"]:
        row["run_id"] = plan.run_id  # checked and scored by this run; processed_at keeps the transcription time
    lexicons, rubric = load_rules_and_rubric(plan.config.rules.lexicons, plan.config.rules.rubric)
    stages: dict[str, float] = {}
    score_tables(RuleEngine(lexicons), rubric, tables, stages, stored_verdicts(plan.out_dir))
    clock = time.perf_counter()
    with transaction(plan.out_dir) as txn:  # every table of the night is published together, or none
        written = write_run(plan.out_dir, tables, txn)
        written["agent_scores"] = refresh_agent_scores(plan.out_dir, rubric, txn)
    stages["writing_s"] = time.perf_counter() - clock
    summary = summarise(plan.run_id, results, tables, len(plan.discovery.recordings), len(plan.discovery.errors),
                        plan.discovery.ignored, time.time() - started_at, written, stages)
    logger.info("%d inputs: %d scored, %d unscorable, %d failed (%d transcribed tonight, %d reused); %.1fx real time",
                summary.inputs, summary.scored, summary.unscorable, summary.failed, summary.processed,
                summary.cached, summary.speed_x_realtime)
    return NightOutcome(summary, tables, results)


def run_night(input_dir: str | Path, out_dir: str | Path, config: CallqaConfig | None = None,
              run_id: str = "library", workers: int | None = None, progress: Progress | None = None,
              sleep: Callable[[float], None] = time.sleep) -> NightOutcome:
    """The whole night in this process, without Prefect: the same steps and results as the flow.

    Args:
        input_dir: the folder of recordings (with an optional manifest.csv).
        out_dir: the output folder.
        config: the options (default: defaults and the environment).
        run_id: what the rows record as the run.
        workers: batches in flight at once, sharing one model (default ``[run] concurrency``).
        progress: told ``("start", total)``, then each finished recording's file.
        sleep: how to wait between tries of an unreadable recording (tests pass a no-op).

    Returns:
        The finished night.

    Raises:
        OutputBusyError: another night or rescore is writing ``out_dir``.
        PipelineError: the night itself cannot run (invalid rules, input, model or output); a bad
            recording never raises, it becomes an ``errors`` row.
    """
    started_at = time.time()
    config = config or load_config()
    check_standards(config)
    workers = resolve_concurrency(config, workers)
    with OutputLock(out_dir, "night"):
        recover(out_dir)  # what a night killed in this folder left: finished or undone
        return _run_locked(input_dir, out_dir, config, run_id, workers, progress, sleep, started_at)


def _run_locked(input_dir, out_dir, config: CallqaConfig, run_id: str, workers: int, progress: Progress | None,
                sleep: Callable[[float], None], started_at: float) -> NightOutcome:
    plan = plan_night(input_dir, out_dir, config, run_id)
    tell = progress or (lambda event, total: None)
    tell("start", plan.total)
    for file in plan.reused.files:
        tell(file, plan.total)
    results: list[CallResult] = []
    unreadable: list[Unreadable] = []
    if plan.batches:
        engine_for(config).prepare(workers)  # the model loaded once, before the threads share it
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for outcome in pool.map(lambda batch: transcribe_batch(batch, config, workers), plan.batches):
                results.extend(outcome.results)
                unreadable.extend(outcome.unreadable)
                for result in outcome.results:
                    tell(result.recording.file, plan.total)
    for item in unreadable:
        result = None
        for delay in config.run.retry_delays_s:
            sleep(delay)
            try:
                result = transcribe_again(item.recording, config, workers)
                break
            except TransientInputError as exc:
                item = Unreadable(item.recording, str(exc))
        results.append(result or unreadable_result(item.recording, plan.model_label, TransientInputError(item.reason)))
        tell(item.recording.file, plan.total)
    return finish_night(plan, results, started_at)

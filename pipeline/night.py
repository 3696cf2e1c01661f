"""The night: a folder of recordings (or transcripts) becomes Parquet tables, in one function run by
threads or by Prefect.

:func:`drive_night` is the night, written once: check the rules, take the output's lock, finish or
undo what a killed night left, plan, run the batches, retry what could not be read, publish. What
runs each step is a :class:`Runner`: :class:`ThreadRunner` (threads in this process sharing one
model, :func:`run_night`) or the Prefect flow's (``flows/nightly.py``: each step a task, on threads
or on a Dask cluster). The steps, each a function a runner calls:

1. :func:`plan_night`       discover the inputs, find what is already transcribed, group the rest into
                             batches of about a minute of audio; each batch is kept in the output's
                             staging area and the plan names it
2. :func:`prepare_engine`   the engine made ready (Whisper: the model loaded once)
3. :func:`run_batch`        a batch through the first half (or, reused, its stored transcripts read),
                             then rules and scores; its rows staged; returns counts, never rows
4. :func:`retry_recording`  a recording that could not be read in its batch, alone, waiting
                             ``[run] retry_delays_s`` between tries (the one retry policy)
5. :func:`finish_night`     the staged rows published in one transaction, agent scores rebuilt, the
                             night's summary

What crosses between steps is names and counts (:mod:`pipeline.storage.staging`): the process that
drives a night of 100,000 calls holds no transcript.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, TypeVar
from zoneinfo import ZoneInfo

from .config import CallqaConfig, load_config, resolve_concurrency
from .errors import LexiconError, TransientInputError
from .records import STATUS_ERROR, CallResult, CallTranscript, ErrorRecord, Recording, Verdict
from .engines import engine_for
from .speakers.agent import role_cues
from .publish import refresh_agent_scores, stored_verdicts
from .scoring.tables import Standards, load_standards, score_transcripts
from .storage.incremental import StoredTranscripts, find_stored_transcripts, stored_rows
from .storage.lock import OutputLock
from .storage.parquet import transaction
from .storage.rows import rows_for_run, transcript_of_result, transcripts_of, with_scores
from .storage.staging import clear, load_batch, night_staging, publish_staged, salvage, save_batch, stage_rows
from .storage.transaction import recover
from .summary import RunSummary, Tally, summarise, summary_markdown
from .transcribe.guard import load_phrases

logger = logging.getLogger("callqa.night")

T = TypeVar("T")
Progress = Callable[[str, int], None]  # (event, total): event is "start" or a finished recording's file
REUSE_BATCH = 1000  # reused calls rescored per task: reading stored rows, no audio


def check_standards(config: CallqaConfig) -> Standards:
    """Fail a night before any audio is touched when the rules cannot be trusted.

    Returns:
        The rules and rubric (loaded once per process while their files are unchanged).

    Raises:
        LexiconError: the phrase lists or ``rules.toml`` are invalid.
        RubricError: the rubric is invalid.
        HallucinationListError: the guard's phrase list is invalid.
    """
    standards = load_standards(config.rules.lexicons, config.rules.rubric)
    load_phrases(config.guard.phrases_file)
    role_cues(config.rules.lexicons)
    return standards


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


@dataclass(frozen=True)
class NightContext:
    """What every step of a night is given (small: it crosses the wire with each task)."""

    out_dir: Path
    config: CallqaConfig
    run_id: str
    model_label: str
    staging: Path
    standards: str  # the rules' and rubric's versions the night checked: every batch scores by them
    workers: int

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.config.input.timezone)


@dataclass
class Batch:
    """A batch as the plan keeps it in the staging area: recordings, and what scoring them needs."""

    name: str
    recordings: list[Recording]
    reuse: bool = False  # transcribed before the same way: stored rows are rescored
    verdicts: dict[tuple[str, str], Verdict] = field(default_factory=dict)  # reviewers', for these calls
    dates: dict[str, str] = field(default_factory=dict)  # reused: call id -> stored call date


@dataclass(frozen=True)
class BatchRef:
    """A batch as the flow knows it: a name, and a label for the task."""

    name: str
    label: str
    size: int


@dataclass
class NightPlan:
    """What a night will do.

    Attributes:
        context: what every step is given.
        total: the recordings found (transcribed tonight or reused).
        reused: how many are reused (transcribed before with this model and options).
        rejected: inputs rejected before processing (their rows are staged by the plan).
        ignored: files that are not audio.
        batches: to transcribe; ``reuse``: stored transcripts to rescore.
        tally: what the plan itself staged (the rejected inputs).
    """

    context: NightContext
    total: int
    reused: int
    rejected: int
    ignored: list[str]
    batches: list[BatchRef]
    reuse: list[BatchRef]
    tally: Tally

    @property
    def to_transcribe(self) -> int:
        return sum(ref.size for ref in self.batches)


def _label(recordings: list[Recording]) -> str:
    return recordings[0].file + (f" and {len(recordings) - 1} more" if len(recordings) > 1 else "")


def plan_night(input_dir: str | Path, out_dir: str | Path, config: CallqaConfig, run_id: str = "library",
               workers: int = 1) -> NightPlan:
    """Discover the night's inputs, find those already transcribed, batch the rest, keep every batch in
    the staging area, and stage the rows of the inputs rejected before processing.

    Raises:
        InputError: the input folder is missing or unreadable.
        ManifestError: manifest.csv cannot be used at all.
        ModelError: the model cannot be resolved (its id is part of what is compared).
    """
    clock = time.perf_counter()
    standards = load_standards(config.rules.lexicons, config.rules.rubric)  # checked by drive_night; cached
    engine = engine_for(config)
    discovery = engine.discover(Path(input_dir))
    label, reused = "", StoredTranscripts()
    tz = ZoneInfo(config.input.timezone)
    if discovery.recordings:
        label = engine.label()
        reused = find_stored_transcripts(out_dir, discovery.recordings, engine.fingerprint(label), tz,
                                         engine.content_path)
    skip = reused.call_ids
    to_transcribe = [r for r in discovery.recordings if r.call_id not in skip]
    durations = {r.call_id: engine.duration(r) for r in to_transcribe} if config.run.batch_audio_s else {}
    per_task = getattr(engine, "calls_per_task", None)  # an engine whose calls cost little groups more
    groups = plan_batches(to_transcribe, lambda r: durations.get(r.call_id),
                          config.run.batch_audio_s if per_task is None else float(per_task),
                          per_task or config.run.batch_max_calls)
    verdicts: dict[str, dict] = {}
    for key, verdict in stored_verdicts(out_dir).items():
        verdicts.setdefault(key[0], {})[key] = verdict
    context = NightContext(Path(out_dir), config, run_id, label, night_staging(out_dir, run_id), standards.version,
                           workers)
    clear(context.staging)  # a night's names are its own

    def keep(name: str, recordings: list[Recording], **extra) -> BatchRef:
        mine = {key: v for r in recordings for key, v in verdicts.get(r.call_id, {}).items()}
        save_batch(context.staging, name, Batch(name, recordings, verdicts=mine, **extra))
        return BatchRef(name, _label(recordings), len(recordings))

    batches = [keep(f"batch-{i:06d}", group) for i, group in enumerate(groups, 1)]
    reuse = [keep(f"reuse-{i:06d}", chunk, reuse=True, dates={r.call_id: reused.dates[r.call_id] for r in chunk})
             for i, chunk in enumerate((reused.recordings[at:at + REUSE_BATCH]
                                        for at in range(0, len(reused), REUSE_BATCH)), 1)]
    rejected = _score_and_stage(context, "rejected", [], rows_for_run([], discovery.errors, run_id, tz), {})
    rejected.tally.tasks, rejected.tally.task_s = 0, 0.0  # part of the plan, not a batch task
    rejected.tally.stage_s["plan_s"] += time.perf_counter() - clock
    logger.info("%d recordings: %d reused (transcribed before with this model and options), %d to transcribe "
                "in %d batches; %d rejected, %d ignored", len(discovery.recordings), len(reused),
                len(to_transcribe), len(batches), len(discovery.errors), len(discovery.ignored))
    return NightPlan(context, len(discovery.recordings), len(reused), len(discovery.errors), discovery.ignored,
                     batches, reuse, rejected.tally)


def prepare_engine(config: CallqaConfig, workers: int) -> str:
    """The night's engine made ready (Whisper: its model loaded once, before the batches share it).

    Returns:
        The engine's label (``calls.model``).

    Raises:
        ModelError: the model cannot be loaded.
    """
    engine = engine_for(config)
    engine.prepare(workers)
    return engine.label()


@dataclass(frozen=True)
class Unreadable:
    """A recording of a batch that could not be read just now: it is tried again on its own."""

    recording: Recording
    reason: str
    batch: str


@dataclass
class BatchReport:
    """What a batch did, in counts: its rows are in the staging area.

    Attributes:
        name: the batch.
        files: the inputs it finished (for progress).
        tally: its counts.
        rows: rows staged per table.
        unreadable: recordings to try again.
    """

    name: str
    files: list[str]
    tally: Tally
    rows: dict[str, int]
    unreadable: list[Unreadable] = field(default_factory=list)


def _score_and_stage(context: NightContext, name: str, results: list[CallResult], tables: dict[str, list],
                     verdicts: dict, unreadable: Sequence[Unreadable] = (), files: list[str] | None = None,
                     started: float | None = None, transcripts: list[CallTranscript] | None = None) -> BatchReport:
    """Rules and scores on a batch's transcripts (``transcripts``, else those of ``results``), staged
    with its rows (``tables``); the batch's counts (``started``: when the task began)."""
    config = context.config
    standards = load_standards(config.rules.lexicons, config.rules.rubric)
    if standards.version != context.standards:
        raise LexiconError([f"the lexicons or the rubric changed while the night was running (checked "
                            f"{context.standards}, now {standards.version}): run the night again"])
    stages: dict[str, float] = {}
    if transcripts is None:
        transcripts = [t for t in (transcript_of_result(r, context.tz, context.run_id) for r in results)
                       if t is not None]
    scoring = score_transcripts(standards.engine, standards.rubric, transcripts, stages, verdicts)
    tables = with_scores(tables, scoring)
    clock = time.perf_counter()
    rows = stage_rows(context.staging, name, tables)
    stages["writing_s"] = time.perf_counter() - clock
    done = files if files is not None else [r.recording.file for r in results]
    tally = Tally.of(results, tables, stages)
    tally.tasks, tally.task_s = 1, time.perf_counter() - (started or clock)
    return BatchReport(name, done, tally, rows, list(unreadable))


def run_batch(context: NightContext, ref: BatchRef) -> BatchReport:
    """A batch: its recordings transcribed one after the other with the night's engine (``[asr]
    engine``; Whisper: the process's model; import: the transcripts read), or, reused, their stored
    transcripts read; then checked, scored and staged.

    Returns:
        The batch's counts; a bad recording is an error row, one that could not be read for a reason
        that may pass is in ``unreadable``.

    Raises:
        ModelError: the model cannot be loaded.
        StoreError: the staging area or the stored tables cannot be read or written.
    """
    started = time.perf_counter()
    batch: Batch = load_batch(context.staging, ref.name)
    if batch.reuse:
        stored = StoredTranscripts(batch.recordings, batch.dates)
        tables = stored_rows(context.out_dir, stored, context.tz)
        # checked and scored by this run; processed_at keeps the transcription time
        tables["calls"] = [{**row, "run_id": context.run_id} for row in tables["calls"]]
        return _score_and_stage(context, batch.name, [], tables, batch.verdicts, files=stored.files, started=started,
                                transcripts=transcripts_of(tables))
    engine = engine_for(context.config)
    results, unreadable = [], []
    for recording in batch.recordings:
        try:
            results.append(engine.process(recording, context.workers))
        except TransientInputError as exc:
            unreadable.append(Unreadable(recording, str(exc), batch.name))
    tables = rows_for_run(results, [], context.run_id, context.tz)
    return _score_and_stage(context, batch.name, results, tables, batch.verdicts, unreadable, started=started)


def unreadable_result(recording: Recording, model: str, exc: BaseException) -> CallResult:
    """The result of a recording that still could not be read after every try."""
    return CallResult(recording=recording, status=STATUS_ERROR, model=model, processed_at=datetime.now(timezone.utc),
                      error=ErrorRecord(recording.file, recording.call_id, getattr(exc, "stage", "read"),
                                        type(exc).__name__, f"{exc} (after every retry)", recording.started_at))


def retry_recording(context: NightContext, item: Unreadable, sleep: Callable[[float], None] = time.sleep) -> BatchReport:
    """A recording that could not be read in its batch, on its own: wait ``[run] retry_delays_s[i]``,
    try again, until it is read or the delays run out (then it is an error row, stage ``read``).

    Returns:
        Its counts (its rows staged, as a batch of one).
    """
    batch: Batch = load_batch(context.staging, item.batch)
    reason = item.reason
    result = None
    for delay in context.config.run.retry_delays_s:
        sleep(delay)
        try:
            result = engine_for(context.config).process(item.recording, context.workers)
            break
        except TransientInputError as exc:
            reason = str(exc)
    result = result or unreadable_result(item.recording, context.model_label, TransientInputError(reason))
    name = f"{batch.name}-retry-{batch.recordings.index(item.recording):04d}"
    return _score_and_stage(context, name, [result], rows_for_run([result], [], context.run_id, context.tz),
                            batch.verdicts)


@dataclass
class NightOutcome:
    """A finished night: its summary, and the counts it was made from."""

    summary: RunSummary
    tally: Tally

    def markdown(self) -> str:
        """The night for the Prefect UI (the flow's ``callqa-night`` artifact)."""
        return summary_markdown(self.summary, self.tally)


def finish_night(plan: NightPlan, tally: Tally, started_at: float) -> NightOutcome:
    """Publish every staged row in one transaction (rows of tonight's calls replace their earlier ones),
    rebuild agent scores, and count the night.

    Args:
        plan: the night's plan.
        tally: every batch's counts, the plan's included.
        started_at: ``time.time()`` when the night began (for its wall time and speed); a clock
            time, not a monotonic one, because a Dask worker on another machine may finish the night.

    Raises:
        StoreError: the output cannot be written.
    """
    context = plan.context
    standards = load_standards(context.config.rules.lexicons, context.config.rules.rubric)
    clock = time.perf_counter()
    with transaction(context.out_dir) as txn:  # every table of the night is published together, or none
        written = publish_staged(context.out_dir, context.staging, txn)
        written["agent_scores"] = refresh_agent_scores(context.out_dir, standards.rubric, txn)
    clear(context.staging)
    tally.stage_s["publish_s"] += time.perf_counter() - clock
    summary = summarise(context.run_id, tally, plan.total, plan.rejected, plan.ignored, time.time() - started_at,
                        written)
    logger.info("%d inputs: %d scored, %d unscorable, %d failed (%d transcribed tonight, %d reused); %.1fx real time",
                summary.inputs, summary.scored, summary.unscorable, summary.failed, summary.processed,
                summary.cached, summary.speed_x_realtime)
    return NightOutcome(summary, tally)


class Runner(Protocol):
    """What runs a night's steps: ``submit(step, *args)`` returns something with ``result()``."""

    def submit(self, step: Callable[..., T], *args: Any) -> "Future[T]": ...


class ThreadRunner:
    """The night's steps on threads of this process, sharing one model (``workers`` batches at once)."""

    def __init__(self, workers: int, sleep: Callable[[float], None] = time.sleep):
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers))
        self.sleep = sleep

    def submit(self, step: Callable[..., T], *args: Any) -> "Future[T]":
        if step is retry_recording:
            return self.pool.submit(step, *args, sleep=self.sleep)
        return self.pool.submit(step, *args)

    def __enter__(self) -> "ThreadRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def drive_night(input_dir: str | Path, out_dir: str | Path, config: CallqaConfig, run_id: str, workers: int,
                runner: Runner, progress: Progress | None = None, log: logging.Logger | logging.LoggerAdapter = logger,
                started_at: float | None = None) -> NightOutcome:
    """The night, whoever runs its steps: check, lock, recover, plan, batches, retries, finish.

    Args:
        input_dir: the folder of recordings (or transcripts), with an optional manifest.csv.
        out_dir: the output folder.
        config: the options.
        run_id: what the rows record as the run.
        workers: batches in flight at once (threads sharing a model, or worker processes).
        runner: what runs each step (:class:`ThreadRunner`, or the flow's Prefect tasks).
        progress: told ``("start", total)``, then each finished input's file.
        log: where the night says what it does (the flow passes Prefect's run logger).
        started_at: ``time.time()`` when the night began (default: now).

    Raises:
        OutputBusyError: another night or rescore is writing ``out_dir``.
        PipelineError: the night itself cannot run (invalid rules, input, model or output); a bad
            input never raises, it becomes an ``errors`` row.
    """
    started_at = started_at or time.time()
    tell = progress or (lambda event, total: None)
    check_standards(config)  # a broken lexicon, rubric or hallucination list stops the night here
    with OutputLock(out_dir, "night"):  # one night per output folder; held until the tables are published
        recovered = recover(out_dir)  # what a night killed in this folder left: finished or undone
        if recovered:
            log.warning("%s: %s", out_dir, recovered)
        salvage(out_dir)  # what an earlier night transcribed but could not write: published, then reused
        plan: NightPlan = runner.submit(plan_night, input_dir, out_dir, config, run_id, workers).result()
        log.info("%d recordings: %d reused, %d to transcribe in %d tasks; %d rejected, %d ignored", plan.total,
                 plan.reused, plan.to_transcribe, len(plan.batches), plan.rejected, len(plan.ignored))
        tell("start", plan.total)
        tally = Tally().add(plan.tally)
        if plan.batches:
            runner.submit(prepare_engine, config, workers).result()  # once, before the batches share it
        futures = [runner.submit(run_batch, plan.context, ref) for ref in plan.reuse + plan.batches]
        unreadable = _collect(futures, tally, tell, plan.total)
        # after every batch: a retry waits between tries, and must not hold a worker the batches need
        _collect([runner.submit(retry_recording, plan.context, item) for item in unreadable], tally, tell, plan.total)
        for file, stage, kind, message in tally.failures:
            log.warning("%s failed at %s: %s: %s", file, stage, kind, message)
        return runner.submit(finish_night, plan, tally, started_at).result()


def _collect(futures: list, tally: Tally, tell: Progress, total: int) -> list[Unreadable]:
    """Wait for each task in turn, add up its counts and report its files; each report is dropped once
    counted, so nothing of it stays with the flow.

    Returns:
        The recordings the tasks could not read.
    """
    unreadable = []
    for index, future in enumerate(futures):
        report: BatchReport = future.result()
        futures[index] = None
        tally.add(report.tally)
        for file in report.files:
            tell(file, total)
        unreadable += report.unreadable
    return unreadable


def run_night(input_dir: str | Path, out_dir: str | Path, config: CallqaConfig | None = None,
              run_id: str = "library", workers: int | None = None, progress: Progress | None = None,
              sleep: Callable[[float], None] = time.sleep) -> NightOutcome:
    """The whole night in this process, on threads (no Prefect): :func:`drive_night` with a
    :class:`ThreadRunner`.

    Args:
        input_dir: the folder of recordings (with an optional manifest.csv).
        out_dir: the output folder.
        config: the options (default: defaults and the environment).
        run_id: what the rows record as the run.
        workers: batches in flight at once, sharing one model (default ``[run] concurrency``).
        progress: told ``("start", total)``, then each finished recording's file.
        sleep: how to wait between tries of an unreadable recording (tests pass a no-op).

    Raises:
        OutputBusyError, PipelineError: as :func:`drive_night`.
    """
    started_at = time.time()
    config = config or load_config()
    workers = resolve_concurrency(config, workers)
    with ThreadRunner(workers, sleep) as runner:
        return drive_night(input_dir, out_dir, config, run_id, workers, runner, progress, logger, started_at)

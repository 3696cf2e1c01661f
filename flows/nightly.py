"""The Prefect flow that turns a folder of recordings into Parquet tables.

Thin on purpose: each task is one call into ``pipeline``; the flow discovers, looks up which recordings
were already transcribed, fans the others out as tasks (a long recording per task, short ones grouped
to about a minute of audio: ``pipeline.batches``), retries alone the ones that could not be read just
now, and writes the results. A bad recording becomes an ``errors`` row and never fails the run;
a problem with the run itself (input folder unreadable, model missing, output not writable) fails it
with the library's message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run, task_run
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline.asr import load_model
from pipeline.audio import probe_duration
from pipeline.batches import plan_batches
from pipeline.config import CallqaConfig, load_config, resolve_concurrency
from pipeline.discover import discover_recordings
from pipeline.errors import TransientInputError
from pipeline.guard import HallucinationGuard
from pipeline.incremental import split_cached, transcription_fingerprint
from pipeline.process import process_recording
from pipeline.records import CallResult, ErrorRecord, Recording
from pipeline.rescore import load_rules_and_rubric, refresh_agent_scores, score_tables
from pipeline.rules import RuleEngine
from pipeline.rescore import rescore
from pipeline.runs import summarise, summary_markdown
from pipeline.store import rows_for_run, write_run

# Callbacks told about each finished recording (the CLI's progress bar). Module state rather than a
# flow parameter, because parameters are sent to the Prefect server and a function cannot be.
_progress_listeners: list[Callable[[str, int], None]] = []


def add_progress_listener(listener: Callable[[str, int], None]) -> None:
    """Register ``listener(event, total)``: ``event`` is ``"start"`` or a finished recording's file."""
    _progress_listeners.append(listener)


def remove_progress_listener(listener: Callable[[str, int], None]) -> None:
    if listener in _progress_listeners:
        _progress_listeners.remove(listener)


def _notify(event: str, total: int) -> None:
    for listener in list(_progress_listeners):
        listener(event, total)


@task(name="load-model", cache_policy=NO_CACHE)
def load_model_task(config: CallqaConfig, workers: int) -> str:
    return load_model(config.asr, workers).model_label


def retry_transient_only(task, task_run, state) -> bool:
    """Retry a recording only when reading it failed for a reason that may pass; never a bad file."""
    try:
        state.result()
    except TransientInputError:
        return True
    except Exception:
        return False
    return False


@dataclass(frozen=True)
class Unreadable:
    """A recording of a batch that could not be read just now: it gets a task of its own, with retries."""

    recording: Recording
    reason: str


@task(name="transcribe-batch", cache_policy=NO_CACHE, task_run_name="transcribe {label}")
def transcribe_batch(recordings: list[Recording], config: CallqaConfig, workers: int,
                     label: str = "") -> list[CallResult | Unreadable]:
    """Transcribe a batch of recordings one after the other (short ones share a task: see
    ``pipeline.batches``). A bad recording becomes an error result; one that could not be read for a
    passing reason comes back as :class:`Unreadable`, to be retried alone."""
    model = load_model(config.asr, workers)  # cached per process: loaded once per worker
    guard = HallucinationGuard(config.guard)
    results: list[CallResult | Unreadable] = []
    for recording in recordings:
        try:
            results.append(process_recording(recording, model, config, guard=guard))
        except TransientInputError as exc:
            results.append(Unreadable(recording, str(exc)))
    return results


@task(name="transcribe-recording", cache_policy=NO_CACHE, task_run_name="retry {recording.file}",
      retry_condition_fn=retry_transient_only)
def transcribe_recording(recording: Recording, config: CallqaConfig, workers: int, first_wait_s: float = 0.0) -> CallResult:
    """One recording that could not be read in its batch: waits ``first_wait_s``, then tries again
    (and again after each of the task's retry delays)."""
    if first_wait_s > 0 and task_run.run_count <= 1:
        time.sleep(first_wait_s)
    model = load_model(config.asr, workers)
    return process_recording(recording, model, config, guard=HallucinationGuard(config.guard))


def _batch_label(batch: list[Recording]) -> str:
    return batch[0].file + (f" and {len(batch) - 1} more" if len(batch) > 1 else "")


def _unreadable(recording: Recording, model_label: str, exc: BaseException) -> CallResult:
    """The result of a recording that still could not be read after every retry."""
    return CallResult(recording=recording, status="error", model=model_label, processed_at=datetime.now(timezone.utc),
                      error=ErrorRecord(recording.file, recording.call_id, getattr(exc, "stage", "read"),
                                        type(exc).__name__, f"{exc} (after every retry)", recording.started_at))


@task(name="check-and-score", cache_policy=NO_CACHE)
def check_and_score(tables: dict, lexicons_dir: str, rubric_path: str) -> dict:
    lexicons, rubric = load_rules_and_rubric(lexicons_dir, rubric_path)
    return score_tables(RuleEngine(lexicons), rubric, tables)


@task(name="write-outputs", cache_policy=NO_CACHE)
def write_outputs(out_dir: str, tables: dict, lexicons_dir: str, rubric_path: str) -> dict[str, int]:
    written = write_run(out_dir, tables)
    written["agent_scores"] = refresh_agent_scores(out_dir, load_rules_and_rubric(lexicons_dir, rubric_path)[1])
    return written


@flow(name="callqa-transcribe", task_runner=ThreadPoolTaskRunner(max_workers=1), log_prints=False)
def transcribe_folder(input_dir: str, out_dir: str, config_path: str | None = None,
                      concurrency: int | None = None) -> dict:
    """Transcribe every recording of ``input_dir`` into Parquet tables under ``out_dir``.

    ``concurrency`` (default ``[run] concurrency``, automatic: one per core) should match the task
    runner's worker count; use :func:`with_concurrency` to get a flow whose runner has it.

    Returns:
        The run summary (counts, speed, errors by stage) as a dict.
    """
    started = time.perf_counter()
    logger = get_run_logger()
    config = load_config(config_path)
    # a broken lexicon or rubric fails the night before any transcription
    load_rules_and_rubric(config.rules.lexicons, config.rules.rubric)
    run_id = str(flow_run.id or "local")
    discovery = discover_recordings(input_dir, config.input)
    total = len(discovery.recordings)
    _notify("start", total)
    logger.info("%d recordings to process, %d rejected, %d ignored", total, len(discovery.errors),
                len(discovery.ignored))
    results: list[CallResult] = []
    cached: dict[str, list[dict]] = {}
    workers = resolve_concurrency(config, concurrency)
    if discovery.recordings:
        label = load_model_task(config, workers)
        to_transcribe, cached = split_cached(out_dir, discovery.recordings, transcription_fingerprint(label, config),
                                           ZoneInfo(config.input.timezone))
        logger.info("%d recordings already transcribed with this model and options: rescored only",
                    len(discovery.recordings) - len(to_transcribe))
        for row in cached.get("calls", []):
            _notify(row["file"], total)
        durations = {r.call_id: probe_duration(r.path) for r in to_transcribe} if config.run.batch_audio_s else {}
        batches = plan_batches(to_transcribe, lambda r: durations.get(r.call_id), config.run.batch_audio_s,
                               config.run.batch_max_calls)
        logger.info("%d recordings to transcribe in %d tasks", len(to_transcribe), len(batches))

        def finished(result: CallResult) -> None:
            results.append(result)
            if not result.ok:
                logger.warning("%s failed at %s: %s", result.recording.file, result.error.stage,
                               result.error.message)
            _notify(result.recording.file, total)

        futures = [transcribe_batch.submit(batch, config, workers, label=_batch_label(batch)) for batch in batches]
        unreadable: list[Unreadable] = []
        for future in futures:
            for item in future.result():
                if isinstance(item, Unreadable):
                    unreadable.append(item)
                else:
                    finished(item)
        delays = list(config.run.retry_delays_s)
        retry = transcribe_recording.with_options(retries=max(0, len(delays) - 1),
                                                  retry_delay_seconds=delays[1:] or 0)
        retries = [(item, retry.submit(item.recording, config, workers, delays[0])) for item in unreadable] \
            if delays else [(item, None) for item in unreadable]
        for item, future in retries:
            try:
                if future is None:
                    raise TransientInputError(item.reason)
                result = future.result()
            except TransientInputError as exc:
                result = _unreadable(item.recording, label, exc)
            finished(result)
    tables = rows_for_run(results, discovery.errors, run_id, ZoneInfo(config.input.timezone))
    for table in ("calls", "utterances", "voice_activity", "suppressed"):
        tables[table].extend(cached.get(table, []))
    for row in cached.get("calls", []):
        row["run_id"] = run_id  # checked and scored by this run; processed_at keeps the transcription time
    tables = check_and_score(tables, config.rules.lexicons, config.rules.rubric)
    written = write_outputs(out_dir, tables, config.rules.lexicons, config.rules.rubric)
    summary = summarise(run_id, discovery, results, time.perf_counter() - started, written, cached.get("calls"))
    logger.info("processed %d, failed %d, %.1fx real time", summary.processed, summary.failed,
                summary.speed_x_realtime)
    create_markdown_artifact(key="callqa-night", markdown=summary_markdown(summary, results, tables["rule_results"]),
                             description=f"callqa night: {summary.processed} transcribed, {summary.failed} failed")
    return summary.to_dict()


@flow(name="callqa-rescore", log_prints=False)
def rescore_flow(out_dir: str, date_from: str | None = None, date_to: str | None = None,
                 config_path: str | None = None) -> dict:
    """Rescore stored calls of ``out_dir`` (call dates ``date_from``..``date_to``) with the configured
    lexicons and rubric: no audio, no model."""
    config = load_config(config_path)
    summary = rescore(out_dir, config.rules.lexicons, config.rules.rubric, date_from, date_to)
    create_markdown_artifact(key="callqa-rescore", markdown=(
        f"# callqa rescore\n\n{summary.calls} calls from {date_from or 'the first'} to {date_to or 'the last'} "
        f"call date in {summary.seconds:.1f} s: {summary.rule_results} rule results, {summary.hits} findings "
        f"(lexicons {summary.lexicon_version}, rubric {summary.rubric_version})\n"))
    return summary.to_dict()


def with_concurrency(concurrency: int):
    """The flow with ``concurrency`` recordings in flight at once (threads share one model)."""
    return transcribe_folder.with_options(task_runner=ThreadPoolTaskRunner(max_workers=concurrency))


def worker_environment(workers: int) -> dict[str, str | None]:
    """What the Dask nanny sets before it starts a worker process (``distributed.nanny.pre-spawn-environ``).

    distributed's defaults cost a worker 1.7x in speed, measured on one demo call (10.6-12 s in a worker
    against 6.3-7.4 s in the flow's process): ``MALLOC_TRIM_THRESHOLD_`` set at all turns off glibc's
    adaptive mmap threshold, so CTranslate2's large buffers are mapped and unmapped again on every
    use; and OMP/MKL/OpenBLAS are limited to one thread, where CTranslate2 should have the worker's
    share of the cores. With this environment a worker transcribes as fast as the flow's process.
    """
    import os

    share = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    return {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share,
            "OPENBLAS_NUM_THREADS": share}


def configured_flow(config: CallqaConfig, concurrency: int | None = None):
    """The nightly flow with the task runner ``[run] runner`` asks for, and the per-worker thread share.

    Returns:
        ``(flow, workers)``: pass ``workers`` as the flow's ``concurrency`` so that each worker
        process gives the model its share of the machine's cores.
    """
    if config.run.runner != "dask":
        workers = resolve_concurrency(config, concurrency)
        return with_concurrency(workers), workers
    from prefect_dask import DaskTaskRunner  # only sites that run Dask need it loaded

    if config.run.dask_address:  # an existing cluster: its workers are other machines
        return transcribe_folder.with_options(task_runner=DaskTaskRunner(address=config.run.dask_address)), 1
    import os

    import dask

    workers = config.run.dask_workers or os.cpu_count() or 1
    dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environment(workers)})
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                            "dashboard_address": ":0"})  # no fixed port to collide on
    return transcribe_folder.with_options(task_runner=runner), workers

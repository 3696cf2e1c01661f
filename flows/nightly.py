"""The Prefect flows: the night (``callqa-transcribe``) and a rescore (``callqa-rescore``).

Thin on purpose. The night is the library's (:mod:`pipeline.night`): every task is one call into it,
passing recordings and options, never logic. The flow checks the rules, plans the night, submits a
task per batch (a long recording per task, short ones grouped to about a minute of audio), gives
each recording that could not be read just now a task of its own with Prefect's retries (waiting
``[run] retry_delays_s``), finishes the night in one task, and publishes the ``callqa-night``
artifact. A bad recording becomes an ``errors`` row and never fails the run; a problem with the run
itself (input folder unreadable, model missing, output not writable) fails it with the library's
message. ``pipeline.night.run_night`` runs the same steps without Prefect (a test compares the two).
"""

from __future__ import annotations

import time
from typing import Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run, task_run
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline import night
from pipeline.config import CallqaConfig, load_config, resolve_concurrency
from pipeline.errors import TransientInputError
from pipeline.records import CallResult, Recording
from pipeline.rescore import rescore
from pipeline.storage.lock import OutputLock
from pipeline.storage.transaction import recover
from pipeline.engines import engine_for

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


def retry_transient_only(task, task_run, state) -> bool:
    """Retry a recording only when reading it failed for a reason that may pass; never a bad file."""
    try:
        state.result()
    except TransientInputError:
        return True
    except Exception:
        return False
    return False


@task(name="load-model", cache_policy=NO_CACHE)
def load_model_task(config: CallqaConfig, workers: int) -> str:
    """The night's engine made ready (Whisper: its model loaded once); its label."""
    engine = engine_for(config)
    engine.prepare(workers)
    return engine.label()


@task(name="transcribe-batch", cache_policy=NO_CACHE, task_run_name="transcribe {label}")
def transcribe_batch_task(recordings: list[Recording], config: CallqaConfig, workers: int,
                          label: str = "") -> night.BatchOutcome:
    return night.transcribe_batch(recordings, config, workers)


@task(name="transcribe-recording", cache_policy=NO_CACHE, task_run_name="retry {recording.file}",
      retry_condition_fn=retry_transient_only)
def transcribe_again_task(recording: Recording, config: CallqaConfig, workers: int, first_wait_s: float = 0.0) -> CallResult:
    if first_wait_s > 0 and task_run.run_count <= 1:  # Prefect's retry delays cover the later tries
        time.sleep(first_wait_s)
    return night.transcribe_again(recording, config, workers)


@task(name="check-score-write", cache_policy=NO_CACHE)
def finish_night_task(plan: night.NightPlan, results: list[CallResult], started_at: float) -> night.NightOutcome:
    return night.finish_night(plan, results, started_at)


def _batch_label(batch: list[Recording]) -> str:
    return batch[0].file + (f" and {len(batch) - 1} more" if len(batch) > 1 else "")


@flow(name="callqa-transcribe", task_runner=ThreadPoolTaskRunner(max_workers=1), log_prints=False)
def transcribe_folder(input_dir: str, out_dir: str, config_path: str | None = None,
                      concurrency: int | None = None) -> dict:
    """Transcribe, check and score every recording of ``input_dir`` into Parquet tables under ``out_dir``.

    ``concurrency`` (default ``[run] concurrency``, automatic: one per core) should match the task
    runner's worker count; use :func:`with_concurrency` to get a flow whose runner has it.

    Returns:
        The night's summary (counts, speed, errors by stage) as a dict.
    """
    started_at = time.time()  # a clock time: on a Dask cluster the night may finish on another machine
    config = load_config(config_path)
    night.check_standards(config)  # a broken lexicon, rubric or hallucination list stops the night here
    workers = resolve_concurrency(config, concurrency)
    with OutputLock(out_dir, "night"):  # one night per output folder; held until the tables are published
        recovered = recover(out_dir)
        if recovered:
            get_run_logger().warning("%s: %s", out_dir, recovered)
        return _night(input_dir, out_dir, config, workers, started_at).to_dict()


def _night(input_dir: str, out_dir: str, config: CallqaConfig, workers: int, started_at: float):
    """The night's tasks: plan, transcribe the batches, retry the unreadable, finish, publish the artifact."""
    logger = get_run_logger()
    plan = night.plan_night(input_dir, out_dir, config, str(flow_run.id or "local"))
    logger.info("%d recordings: %d reused, %d to transcribe in %d tasks; %d rejected, %d ignored", plan.total,
                len(plan.reused), len(plan.to_transcribe), len(plan.batches), len(plan.discovery.errors),
                len(plan.discovery.ignored))
    _notify("start", plan.total)
    for file in plan.reused.files:
        _notify(file, plan.total)
    results: list[CallResult] = []
    unreadable: list[night.Unreadable] = []
    if plan.batches:
        load_model_task(config, workers)  # once, before the batches share it
        futures = [transcribe_batch_task.submit(batch, config, workers, label=_batch_label(batch))
                   for batch in plan.batches]
        for future in futures:
            outcome = future.result()
            results.extend(outcome.results)
            unreadable.extend(outcome.unreadable)
            for result in outcome.results:
                _notify(result.recording.file, plan.total)
    delays = list(config.run.retry_delays_s)
    retry = transcribe_again_task.with_options(retries=max(0, len(delays) - 1), retry_delay_seconds=delays[1:] or 0)
    retries = [(item, retry.submit(item.recording, config, workers, delays[0]) if delays else None)
               for item in unreadable]
    for item, future in retries:
        try:
            if future is None:
                raise TransientInputError(item.reason)
            result = future.result()
        except TransientInputError as exc:
            result = night.unreadable_result(item.recording, plan.model_label, exc)
        results.append(result)
        _notify(item.recording.file, plan.total)
    for result in results:
        if not result.ok:
            logger.warning("%s failed at %s: %s", result.recording.file, result.error.stage, result.error.message)
    finished = finish_night_task(plan, results, started_at)
    summary = finished.summary
    logger.info("%d inputs: %d scored, %d unscorable, %d failed (%d transcribed tonight, %d reused)",
                summary.inputs, summary.scored, summary.unscorable, summary.failed, summary.processed, summary.cached)
    create_markdown_artifact(key="callqa-night", markdown=finished.markdown(),
                             description=f"callqa night: {summary.inputs} inputs, {summary.scored} scored, "
                                         f"{summary.unscorable} unscorable, {summary.failed} failed")
    return summary


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

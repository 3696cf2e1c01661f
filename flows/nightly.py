"""The Prefect flows: the night (``callqa-transcribe``) and a rescore (``callqa-rescore``).

Thin on purpose. The night is the library's :func:`pipeline.night.drive_night`, written once; this
module only gives it a runner whose steps are Prefect tasks (``plan-night``, ``load-model``,
``transcribe-batch`` per batch, ``transcribe-recording`` per retry, ``check-score-write``), so the UI
shows each batch and a Dask cluster can run them. Tasks pass batch names and counts, never rows. A
bad recording becomes an ``errors`` row and never fails the run; a problem with the run itself
(input folder unreadable, model missing, output not writable) fails it with the library's message.
``pipeline.night.run_night`` runs the same function on threads, without Prefect.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline import night
from pipeline.config import CallqaConfig, load_config, resolve_concurrency
from pipeline.rescore import rescore

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


@task(name="plan-night", cache_policy=NO_CACHE)
def plan_task(input_dir: str, out_dir: str, config: CallqaConfig, run_id: str, workers: int) -> night.NightPlan:
    return night.plan_night(input_dir, out_dir, config, run_id, workers)


@task(name="load-model", cache_policy=NO_CACHE)
def load_model_task(config: CallqaConfig, workers: int) -> str:
    """The night's engine made ready (Whisper: its model loaded once); its label."""
    return night.prepare_engine(config, workers)


@task(name="transcribe-batch", cache_policy=NO_CACHE, task_run_name="transcribe {ref.label}")
def transcribe_batch_task(context: night.NightContext, ref: night.BatchRef) -> night.BatchReport:
    return night.run_batch(context, ref)


@task(name="transcribe-recording", cache_policy=NO_CACHE, task_run_name="retry {item.recording.file}")
def retry_task(context: night.NightContext, item: night.Unreadable) -> night.BatchReport:
    return night.retry_recording(context, item)


@task(name="check-score-write", cache_policy=NO_CACHE)
def finish_task(plan: night.NightPlan, tally, started_at: float) -> night.NightOutcome:
    return night.finish_night(plan, tally, started_at)


class PrefectRunner:
    """The night's steps as Prefect tasks, on the flow's task runner (threads or Dask)."""

    TASKS = {night.plan_night: plan_task, night.prepare_engine: load_model_task,
             night.run_batch: transcribe_batch_task, night.retry_recording: retry_task,
             night.finish_night: finish_task}

    def submit(self, step: Callable, *args: Any):
        return self.TASKS[step].submit(*args)


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
    workers = resolve_concurrency(config, concurrency)
    finished = night.drive_night(input_dir, out_dir, config, str(flow_run.id or "local"), workers, PrefectRunner(),
                                 _notify, get_run_logger(), started_at)
    summary = finished.summary
    create_markdown_artifact(key="callqa-night", markdown=finished.markdown(),
                             description=f"callqa night: {summary.inputs} inputs, {summary.scored} scored, "
                                         f"{summary.unscorable} unscorable, {summary.failed} failed")
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

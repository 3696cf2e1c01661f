"""A night's summary: what was found, transcribed, reused, failed and ignored, and how fast; in numbers
(for the command line and the flow's return value) and in markdown (the flow's artifact)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from .errors import PipelineError
from .records import FAIL, STATUS_ERROR, STATUS_OK, STATUS_UNSCORABLE, CallResult


@dataclass
class RunSummary:
    """The counts of one night.

    Every input ends as exactly one of ``scored``, ``unscorable`` or ``failed``; :func:`summarise`
    checks that they add up to ``inputs``. Independently, a recording with a transcript was either
    ``processed`` (transcribed tonight) or ``cached`` (transcribed before, reused).

    Attributes:
        inputs: recordings found plus inputs rejected before processing (manifest rows, files the
            manifest lacks, links refused): one ``calls`` row each.
        recordings: the recordings found.
        processed: transcribed tonight (and not failed).
        cached: already transcribed from the same bytes with the same model and options: reused.
        scored: checked and scored (status ok).
        unscorable: with a transcript, but not a whole conversation with the agent in it.
        failed: inputs that ended with status error (rejected, unreadable, undecodable, a rule crashed).
        ignored: files that are not audio (no ``calls`` row).
        stage_s: seconds per stage (``STAGES``). The recording stages, and the rules, scoring and
            staged writing of each batch, are summed over what ran side by side (``[run]
            concurrency``), so they can add up to more than the wall time; ``plan`` and ``publish``
            (the staged rows merged into the tables, agent scores rebuilt) run once for the night.
        windows: what the speech model was given (``WINDOW_FIGURES``): windows of each pass, the
            seconds of audio in them and the seconds of those that are turns (empty for imported
            transcripts).
        tasks, task_s: batch tasks run, and their seconds summed: ``wall_s - plan - publish -
            task_s / workers`` is what orchestration cost.
    """

    run_id: str
    inputs: int = 0
    recordings: int = 0
    processed: int = 0
    cached: int = 0
    scored: int = 0
    unscorable: int = 0
    failed: int = 0
    ignored: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    utterances: int = 0
    suppressed: int = 0
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    calls_by_agent: dict[str, int] = field(default_factory=dict)
    ignored_files: list[str] = field(default_factory=list)
    rows_written: dict[str, int] = field(default_factory=dict)
    stage_s: dict[str, float] = field(default_factory=dict)
    windows: dict[str, float] = field(default_factory=dict)
    tasks: int = 0
    task_s: float = 0.0

    @property
    def speed_x_realtime(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "speed_x_realtime": round(self.speed_x_realtime, 2)}


# What a night's time is spent on, in order (RunSummary.stage_s): per recording, then per night.
STAGES = ("plan_s", "decode_s", "vad_s", "diarise_s", "transcribe_s", "second_pass_s", "guard_s", "utterances_s",
          "verify_s", "rules_s", "scoring_s", "writing_s", "publish_s")
# What the speech model was given (RunSummary.windows, counted where the turns are packed,
# pipeline.transcribe.decode.count_windows): windows of the first pass and of the second look at
# skipped turns, the seconds of audio in them, and the seconds of those that are the recordings' (the
# turns with their context; the rest is the gaps between them)
WINDOW_FIGURES = ("windows", "second_pass_windows", "window_audio_s", "window_turns_s")


@dataclass
class Tally:
    """What a night's batches counted, added up as they come in: never the rows themselves, so the
    process that drives a night of 300,000 calls holds counts, not words.

    Attributes:
        calls: ``calls`` rows made (one per input).
        status: those rows by status.
        processed: transcribed tonight and not failed; ``cached``: reused and not failed.
        audio_s, utterances, suppressed: of tonight's transcriptions.
        stage_s: seconds per stage, summed over recordings and batches (and, under their own names,
            the window counts of ``WINDOW_FIGURES``, which come with the recordings' timings).
        rule_fails: calls failing, per rule.
        slowest: the five slowest recordings, as (call id, audio s, processing s).
        failures: the first :data:`FAILURES_KEPT` ``errors`` rows, as (file, stage, error type, message);
            ``failure_count`` counts them all.
        tasks, task_s: the batch tasks run and the seconds they took, summed (what the night would
            cost with no orchestration and no parallelism).
    """

    calls: int = 0
    status: Counter = field(default_factory=Counter)
    processed: int = 0
    cached: int = 0
    audio_s: float = 0.0
    utterances: int = 0
    suppressed: int = 0
    errors_by_stage: Counter = field(default_factory=Counter)
    calls_by_agent: Counter = field(default_factory=Counter)
    stage_s: Counter = field(default_factory=Counter)
    rule_fails: Counter = field(default_factory=Counter)
    slowest: list[tuple[str, float, float]] = field(default_factory=list)
    failures: list[tuple[str, str, str, str]] = field(default_factory=list)
    failure_count: int = 0
    tasks: int = 0
    task_s: float = 0.0

    @classmethod
    def of(cls, results: list[CallResult], tables: dict[str, list], stages: dict[str, float] | None = None) -> "Tally":
        """Count one batch: ``results`` transcribed in it, ``tables`` its rows after rules and scores,
        ``stages`` its own seconds (rules, scoring, writing)."""
        transcribed = {r.recording.call_id for r in results}
        calls = tables.get("calls", [])
        kept = [row for row in calls if row["status"] != STATUS_ERROR]
        errors = tables.get("errors", [])
        timings = Counter()
        for result in results:
            timings.update(result.timings)
        timings.update(stages or {})
        return cls(
            calls=len(calls), status=Counter(row["status"] for row in calls),
            processed=sum(row["call_id"] in transcribed for row in kept),
            cached=sum(row["call_id"] not in transcribed for row in kept),
            audio_s=sum(r.duration_s or 0.0 for r in results if r.ok),
            utterances=sum(len(r.utterances) for r in results), suppressed=sum(len(r.suppressed) for r in results),
            errors_by_stage=Counter(row["stage"] for row in errors),
            calls_by_agent=Counter(row["agent_id"] for row in calls if row["status"] == STATUS_OK),
            stage_s=timings,
            rule_fails=Counter(r.rule_id for r in tables.get("rule_results", []) if r.outcome == FAIL),
            slowest=sorted(((r.recording.call_id, r.duration_s or 0.0,
                             sum(r.timings.get(stage, 0.0) for stage in STAGES))
                            for r in results if r.ok and r.timings), key=lambda s: -s[2])[:SLOWEST_KEPT],
            failures=[(e["file"], e["stage"], e["error_type"], e["message"]) for e in errors[:FAILURES_KEPT]],
            failure_count=len(errors))

    def add(self, other: "Tally") -> "Tally":
        """Add another batch's counts to these (in place); returns self."""
        for name in ("calls", "processed", "cached", "audio_s", "utterances", "suppressed", "failure_count", "tasks",
                     "task_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("status", "errors_by_stage", "calls_by_agent", "stage_s", "rule_fails"):
            getattr(self, name).update(getattr(other, name))
        self.slowest = sorted(self.slowest + other.slowest, key=lambda s: -s[2])[:SLOWEST_KEPT]
        self.failures = (self.failures + other.failures)[:FAILURES_KEPT]
        return self


SLOWEST_KEPT = 5
FAILURES_KEPT = 100


def stage_rows(stage_s: dict[str, float], audio_s: float) -> list[tuple[str, float, str]]:
    """Each stage of ``RunSummary.stage_s`` as (label, seconds, x real time: audio over those seconds, '-'
    when there is nothing to divide), for the command line, the flow's artifact and the benchmarks."""
    return [(stage.removesuffix("_s").replace("_", " "), seconds,
             f"{audio_s / seconds:.0f}" if seconds > 0 and audio_s else "-") for stage, seconds in stage_s.items()]


def summarise(run_id: str, tally: Tally, recordings: int, rejected: int, ignored: list[str], wall_s: float,
              rows_written: dict[str, int]) -> RunSummary:
    """A night's summary from what its batches counted (after rules and scores).

    Args:
        run_id: the night.
        tally: every batch's counts added up (the inputs rejected before processing included).
        recordings: the recordings found (transcribed now or reused).
        rejected: the inputs rejected before processing.
        ignored: files that are not audio.
        wall_s: the night's wall-clock time.
        rows_written: rows written per table.

    Raises:
        PipelineError: the outcomes do not add up to the inputs (a bug: an input was lost or counted twice).
    """
    inputs = recordings + rejected
    summary = RunSummary(
        run_id=run_id, inputs=inputs, recordings=recordings, processed=tally.processed, cached=tally.cached,
        scored=tally.status[STATUS_OK], unscorable=tally.status[STATUS_UNSCORABLE], failed=tally.status[STATUS_ERROR],
        ignored=len(ignored), audio_s=round(tally.audio_s, 3), wall_s=round(wall_s, 3), utterances=tally.utterances,
        suppressed=tally.suppressed, errors_by_stage=dict(tally.errors_by_stage),
        calls_by_agent=dict(tally.calls_by_agent), ignored_files=list(ignored), rows_written=rows_written,
        stage_s={stage: round(tally.stage_s[stage], 3) for stage in STAGES if stage in tally.stage_s},
        windows={name: round(tally.stage_s[name], 3) for name in WINDOW_FIGURES if name in tally.stage_s},
        tasks=tally.tasks, task_s=round(tally.task_s, 3))
    accounted = summary.scored + summary.unscorable + summary.failed
    if accounted != inputs or tally.calls != inputs:
        raise PipelineError(f"the night's outcomes do not add up: {inputs} inputs, but {summary.scored} scored + "
                            f"{summary.unscorable} unscorable + {summary.failed} failed = {accounted} in "
                            f"{tally.calls} calls rows (a bug: please report it)")
    return summary


def summary_markdown(summary: RunSummary, tally: Tally) -> str:
    """The night in markdown, for the Prefect UI: counts, slowest calls, failing rules, failed inputs."""
    lines = ["# callqa night", "", "| | |", "|---|---|",
             f"| inputs | {summary.inputs} |", f"| scored | {summary.scored} |",
             f"| unscorable | {summary.unscorable} |", f"| failed | {summary.failed} |",
             f"| transcribed tonight | {summary.processed} |", f"| already transcribed, reused | {summary.cached} |",
             f"| ignored (not audio) | {summary.ignored} |", f"| audio | {summary.audio_s / 60:.1f} min |",
             f"| flow wall time | {summary.wall_s:.1f} s |",
             f"| speed | {summary.speed_x_realtime:.1f}x real time |", ""]
    if summary.stage_s:
        lines += ["## Where the time went", "", "Recording stages are summed over the recordings in flight.", "",
                  "| stage | seconds | x real time |", "|---|---|---|"]
        lines += [f"| {label} | {seconds:.1f} | {speed} |" for label, seconds, speed in stage_rows(summary.stage_s,
                                                                                                  summary.audio_s)]
        lines.append("")
    if tally.slowest:
        lines += ["## Slowest calls", "", "| call | audio s | processing s |", "|---|---|---|"]
        lines += [f"| {call_id} | {audio:.1f} | {seconds:.1f} |" for call_id, audio, seconds in tally.slowest]
        lines.append("")
    if tally.rule_fails:
        lines += ["## Top failing rules", "", "| rule | calls failing |", "|---|---|"]
        lines += [f"| {rule} | {count} |" for rule, count in tally.rule_fails.most_common(10)]
        lines.append("")
    if tally.failures:
        lines += ["## Failed recordings", "", "| file | stage | error |", "|---|---|---|"]
        lines += [f"| {file} | {stage} | {kind}: {message[:120]} |" for file, stage, kind, message in tally.failures]
        if tally.failure_count > len(tally.failures):
            lines.append(f"\n… and {tally.failure_count - len(tally.failures)} more in the errors table")
    return "\n".join(lines) + "\n"

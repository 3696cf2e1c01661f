"""A night's summary: what was found, transcribed, reused, failed and ignored, and how fast; in numbers
(for the command line and the flow's return value) and in markdown (the flow's artifact)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from .errors import PipelineError
from .records import FAIL, STATUS_ERROR, STATUS_OK, STATUS_UNSCORABLE, CallResult, RuleResult


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
        stage_s: seconds per stage (``STAGES``). The recording stages are summed over tonight's
            recordings, which run side by side (``[run] concurrency``), so they can add up to more
            than the wall time; rules, scoring and writing run once for the night.
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

    @property
    def speed_x_realtime(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "speed_x_realtime": round(self.speed_x_realtime, 2)}


# What a night's time is spent on, in order (RunSummary.stage_s): per recording, then per night.
STAGES = ("decode_s", "vad_s", "diarise_s", "transcribe_s", "second_pass_s", "guard_s", "utterances_s",
          "verify_s", "rules_s", "scoring_s", "writing_s")


def stage_seconds(results: list[CallResult], night: dict[str, float]) -> dict[str, float]:
    """Seconds per stage: each recording's timings summed over ``results``, then the night's own."""
    total = Counter()
    for result in results:
        total.update(result.timings)
    total.update(night)
    return {stage: round(total[stage], 3) for stage in STAGES if stage in total}


def stage_rows(stage_s: dict[str, float], audio_s: float) -> list[tuple[str, float, str]]:
    """Each stage of ``RunSummary.stage_s`` as (label, seconds, x real time: audio over those seconds, '-'
    when there is nothing to divide), for the command line, the flow's artifact and the benchmarks."""
    return [(stage.removesuffix("_s").replace("_", " "), seconds,
             f"{audio_s / seconds:.0f}" if seconds > 0 and audio_s else "-") for stage, seconds in stage_s.items()]


def summarise(run_id: str, results: list[CallResult], tables: dict[str, list], recordings: int, rejected: int,
              ignored: list[str], wall_s: float, rows_written: dict[str, int],
              stages: dict[str, float] | None = None) -> RunSummary:
    """Count a night's outcomes from its final rows (after rules and scores).

    Args:
        run_id: the night.
        results: the recordings transcribed tonight.
        tables: the night's rows as written (``calls`` has a row for every input).
        recordings: the recordings found (transcribed now or reused).
        rejected: the inputs rejected before processing.
        ignored: files that are not audio.
        wall_s: the night's wall-clock time.
        rows_written: rows written per table.
        stages: the night's own stage seconds (rules, scoring, writing); the recordings' come from
            their timings.

    Raises:
        PipelineError: the outcomes do not add up to the inputs (a bug: an input was lost or counted twice).
    """
    inputs = recordings + rejected
    status = Counter(row["status"] for row in tables["calls"])
    transcribed = {r.recording.call_id for r in results}
    ok = [row for row in tables["calls"] if row["status"] == STATUS_OK]
    kept = [row for row in tables["calls"] if row["status"] != STATUS_ERROR]
    summary = RunSummary(
        run_id=run_id,
        inputs=inputs,
        recordings=recordings,
        processed=sum(row["call_id"] in transcribed for row in kept),
        cached=sum(row["call_id"] not in transcribed for row in kept),
        scored=len(ok),
        unscorable=status[STATUS_UNSCORABLE],
        failed=status[STATUS_ERROR],
        ignored=len(ignored),
        audio_s=round(sum(r.duration_s or 0.0 for r in results if r.ok), 3),
        wall_s=round(wall_s, 3),
        utterances=sum(len(r.utterances) for r in results),
        suppressed=sum(len(r.suppressed) for r in results),
        errors_by_stage=dict(Counter(row["stage"] for row in tables["errors"])),
        calls_by_agent=dict(Counter(row["agent_id"] for row in ok)),
        ignored_files=list(ignored),
        rows_written=rows_written,
        stage_s=stage_seconds(results, stages or {}),
    )
    accounted = summary.scored + summary.unscorable + summary.failed
    if accounted != inputs or len(tables["calls"]) != inputs:
        raise PipelineError(f"the night's outcomes do not add up: {inputs} inputs, but {summary.scored} scored + "
                            f"{summary.unscorable} unscorable + {summary.failed} failed = {accounted} in "
                            f"{len(tables['calls'])} calls rows (a bug: please report it)")
    return summary


def summary_markdown(summary: RunSummary, results: list[CallResult], rule_results: list[RuleResult],
                     errors: list[dict]) -> str:
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
    slow = sorted((r for r in results if r.ok and r.timings), key=lambda r: -sum(r.timings.values()))[:5]
    if slow:
        lines += ["## Slowest calls", "", "| call | audio s | processing s |", "|---|---|---|"]
        lines += [f"| {r.recording.call_id} | {r.duration_s:.1f} | {sum(r.timings.values()):.1f} |" for r in slow]
        lines.append("")
    fails = Counter(result.rule_id for result in rule_results if result.outcome == FAIL)
    if fails:
        lines += ["## Top failing rules", "", "| rule | calls failing |", "|---|---|"]
        lines += [f"| {rule} | {count} |" for rule, count in fails.most_common(10)]
        lines.append("")
    if errors:
        lines += ["## Failed recordings", "", "| file | stage | error |", "|---|---|---|"]
        lines += [f"| {e['file']} | {e['stage']} | {e['error_type']}: {e['message'][:120]} |" for e in errors]
    return "\n".join(lines) + "\n"

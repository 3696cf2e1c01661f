"""A night's summary: what was found, transcribed, reused, failed and ignored, and how fast; in numbers
(for the command line and the flow's return value) and in markdown (the flow's artifact)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from .records import FAIL, STATUS_OK, CallResult, RuleResult


@dataclass
class RunSummary:
    """The counts of one night.

    Attributes:
        recordings: recordings the night took up (transcribed now or reused).
        processed: transcribed now, checked and scored.
        cached: already transcribed from the same bytes with the same model and options: rescored only.
        failed: recordings that ended with status error (at any stage, a crashing rule included),
            plus inputs rejected before processing (manifest rows, files the manifest lacks).
        ignored: files that are not audio.
    """

    run_id: str
    recordings: int = 0
    processed: int = 0
    cached: int = 0
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

    @property
    def speed_x_realtime(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "speed_x_realtime": round(self.speed_x_realtime, 2)}


def summarise(run_id: str, results: list[CallResult], tables: dict[str, list], rejected: int,
              ignored: list[str], wall_s: float, rows_written: dict[str, int]) -> RunSummary:
    """Count a night's outcomes from its final rows (after rules and scores).

    Args:
        run_id: the night.
        results: the recordings transcribed tonight.
        tables: the night's rows as written (``calls`` holds tonight's and the reused calls).
        rejected: inputs rejected before processing.
        ignored: files that are not audio.
        wall_s: the night's wall-clock time.
        rows_written: rows written per table.
    """
    status = {row["call_id"]: row["status"] for row in tables["calls"]}
    transcribed = {r.recording.call_id for r in results}
    ok = [row for row in tables["calls"] if row["status"] == STATUS_OK]
    return RunSummary(
        run_id=run_id,
        recordings=len(tables["calls"]),
        processed=sum(status[cid] == STATUS_OK for cid in transcribed),
        cached=sum(row["call_id"] not in transcribed for row in ok),
        failed=len(tables["calls"]) - len(ok) + rejected,
        ignored=len(ignored),
        audio_s=round(sum(r.duration_s or 0.0 for r in results if r.ok), 3),
        wall_s=round(wall_s, 3),
        utterances=sum(len(r.utterances) for r in results),
        suppressed=sum(len(r.suppressed) for r in results),
        errors_by_stage=dict(Counter(row["stage"] for row in tables["errors"])),
        calls_by_agent=dict(Counter(row["agent_id"] for row in ok)),
        ignored_files=list(ignored),
        rows_written=rows_written,
    )


def summary_markdown(summary: RunSummary, results: list[CallResult], rule_results: list[RuleResult],
                     errors: list[dict]) -> str:
    """The night in markdown, for the Prefect UI: counts, slowest calls, failing rules, failed inputs."""
    lines = ["# callqa night", "", "| | |", "|---|---|",
             f"| recordings | {summary.recordings} |", f"| transcribed | {summary.processed} |",
             f"| already transcribed, rescored only | {summary.cached} |", f"| failed | {summary.failed} |",
             f"| ignored (not audio) | {summary.ignored} |", f"| audio | {summary.audio_s / 60:.1f} min |",
             f"| flow wall time | {summary.wall_s:.1f} s |",
             f"| speed | {summary.speed_x_realtime:.1f}x real time |", ""]
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

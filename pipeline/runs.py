"""A run's summary: what was found, processed, failed and ignored, and how fast."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from .discover import Discovery
from .records import CallResult


@dataclass
class RunSummary:
    run_id: str
    recordings: int = 0  # recordings the run tried to process
    processed: int = 0  # status ok, transcribed in this run
    cached: int = 0  # already transcribed from the same bytes with the same model and options: rescored only
    failed: int = 0  # recordings with status error, plus inputs rejected before processing
    ignored: int = 0  # files that are not audio
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


def summarise(run_id: str, discovery: Discovery, results: list[CallResult], wall_s: float,
              rows_written: dict[str, int], cached: list[dict] | None = None) -> RunSummary:
    """Count a run's outcomes for the closing table and the flow's return value."""
    stages = Counter(e.stage for e in discovery.errors)
    stages.update(r.error.stage for r in results if r.error is not None)
    return RunSummary(
        run_id=run_id,
        recordings=len(results) + len(cached or []),
        processed=sum(r.ok for r in results),
        cached=len(cached or []),
        failed=sum(not r.ok for r in results) + len(discovery.errors),
        ignored=len(discovery.ignored),
        audio_s=round(sum(r.duration_s or 0.0 for r in results if r.ok), 3),
        wall_s=round(wall_s, 3),
        utterances=sum(len(r.utterances) for r in results),
        suppressed=sum(len(r.suppressed) for r in results),
        errors_by_stage=dict(stages),
        calls_by_agent=dict(Counter([r.recording.agent_id for r in results if r.ok]
                                    + [row["agent_id"] for row in cached or []])),
        ignored_files=list(discovery.ignored),
        rows_written=rows_written,
    )


def summary_markdown(summary: RunSummary, results: list[CallResult], rule_results: list[dict]) -> str:
    """The night in markdown, for the Prefect UI: counts, slowest calls, failing rules, errors."""
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
    fails = Counter(row["rule_id"] for row in rule_results if row["outcome"] == "fail")
    if fails:
        lines += ["## Top failing rules", "", "| rule | calls failing |", "|---|---|"]
        lines += [f"| {rule} | {count} |" for rule, count in fails.most_common(10)]
        lines.append("")
    errors = [r.error for r in results if r.error is not None]
    if errors:
        lines += ["## Failed recordings", "", "| file | stage | error |", "|---|---|---|"]
        lines += [f"| {e.file} | {e.stage} | {e.error_type}: {e.message[:120]} |" for e in errors]
    return "\n".join(lines) + "\n"

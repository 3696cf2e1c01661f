"""Loaders and summaries of an output folder, for QA managers' notebooks and trainers' examples.

Everything a notebook shows comes from here, so that the notebooks hold no logic of their own and the
same numbers come out of every tool: :func:`load_results` reads the tables of a period; the other
functions turn them into the frames a QA manager looks at (team overview, leaderboard, failure rate
per rule, trends, score distribution) and :func:`call_detail` gathers one call for a drill-down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import CallNotFoundError, LexiconError, ResultsNotFoundError
from ..records import (MIN_ROLE_CONFIDENCE, ROLES_CHANNELS, SPEAKER_CUSTOMER, SPEAKER_OTHER, STATUS_ERROR, STATUS_OK,
                       STATUS_UNSCORABLE)
from ..rules.checks import CallData, find_holds
from ..rules.lexicon import SEVERITIES, load_lexicons
from ..scoring.scores import fail_rates, review_counts, reviewed_outcomes, top_failing_rule
from ..storage.parquet import read_table
from ..storage.transaction import recover_if_idle

@dataclass
class Results:
    """The tables of an output folder for a period (call dates ``date_from``..``date_to``, inclusive).

    ``calls`` holds every input, the unscored ones included (``status`` ``unscorable``: no whole
    conversation to score; ``error``: failed); ``scored`` only the scored ones.
    """

    out_dir: Path
    date_from: str | None
    date_to: str | None
    calls: pd.DataFrame
    rule_results: pd.DataFrame
    hits: pd.DataFrame
    errors: pd.DataFrame
    rule_descriptions: dict[str, str] = field(default_factory=dict)
    rule_names: dict[str, str] = field(default_factory=dict)  # display names (Chinese) from rules.toml
    hold_min_silence_s: float = 5.0  # what the hold rules count as a hold (rules.toml)

    @property
    def scored(self) -> pd.DataFrame:
        return self.calls[self.calls["status"] == STATUS_OK]

    @property
    def period(self) -> str:
        dates = sorted(self.calls["call_date"].unique())
        return f"{dates[0]} – {dates[-1]}" if dates else "no calls"


def load_results(out_dir: str | Path, date_from: str | None = None, date_to: str | None = None,
                 lexicons_dir: str | Path | None = None) -> Results:
    """Read the calls, rule results, findings and errors of ``out_dir`` for call dates ``date_from``..``date_to``.

    Raises:
        ResultsNotFoundError: ``out_dir`` holds no ``calls`` table, or no call in the period.
    """
    out_dir = Path(out_dir)
    recover_if_idle(out_dir)  # a night killed while publishing: finish it before reading
    if not (out_dir / "calls").is_dir():
        raise ResultsNotFoundError(f"{out_dir}: no callqa output here (no calls/ table); run `callqa run` "
                                   "or `callqa demo` first")
    dates = (date_from, date_to)
    calls = read_table(out_dir, "calls", dates=dates)
    if calls.empty:
        raise ResultsNotFoundError(f"{out_dir}: no calls between {date_from or 'the first'} and "
                                   f"{date_to or 'the last'} call date")
    descriptions, names, hold_s = {}, {}, 5.0
    try:
        rules = load_lexicons(lexicons_dir).rules
        descriptions = {r.rule_id: r.description for r in rules}
        names = {r.rule_id: r.name for r in rules}
        hold_s = next((float(r.options.min_silence_s) for r in rules if r.type == "hold"), hold_s)
    except LexiconError:  # a broken lexicon folder must not hide results already scored
        pass
    return Results(out_dir, date_from, date_to, calls.sort_values("started_at").reset_index(drop=True),
                   read_table(out_dir, "rule_results", dates=dates), read_table(out_dir, "hits", dates=dates),
                   read_table(out_dir, "errors", dates=dates), descriptions, names, hold_s)


def team_overview(results: Results) -> pd.DataFrame:
    """One row of headline numbers for the period: recordings, calls scored and not (unscorable, failed),
    scores, pass rate, red lines."""
    scored = results.scored
    status = results.calls["status"]
    return pd.DataFrame([{
        "period": results.period,
        "agents": scored["agent_id"].nunique(),
        "recordings": len(results.calls),
        "calls scored": len(scored),
        "calls unscorable": int((status == STATUS_UNSCORABLE).sum()),
        "recordings failed": int((status == STATUS_ERROR).sum()),
        "hours of audio": round(scored["duration_s"].sum() / 3600, 2),
        "mean score": round(scored["score"].mean(), 1) if len(scored) else None,
        "median score": round(scored["score"].median(), 1) if len(scored) else None,
        "pass rate": round(scored["passed"].mean(), 3) if len(scored) else None,
        "red lines": int(scored["red_line"].sum()),
    }])


def leaderboard(results: Results) -> pd.DataFrame:
    """Agents of the period, best mean score first: calls, mean and lowest score, pass rate, red lines,
    the rule each fails most often (as ``callqa run`` reports it: :func:`top_failing_rule`), and
    their recordings that were not scored (unscorable, failed), and how many of their findings a
    reviewer judged and overturned (scores are after review: an overturned finding deducts nothing)."""
    scored = results.scored
    their = results.rule_results[results.rule_results["call_id"].isin(scored["call_id"])]
    rates = fail_rates(their, ["agent_id"])
    worst = {agent: top_failing_rule(list(part.droplevel(0).items()))
             for agent, part in rates.groupby(level=0)}
    board = scored.groupby("agent_id").agg(calls=("call_id", "size"), mean_score=("score", "mean"),
                                           lowest_score=("score", "min"), pass_rate=("passed", "mean"),
                                           red_lines=("red_line", "sum"))
    board["most_failed_rule"] = [worst.get(agent, "") for agent in board.index]
    for column, wanted in (("unscorable_calls", STATUS_UNSCORABLE), ("failed_recordings", STATUS_ERROR)):
        counts = results.calls[results.calls["status"] == wanted].groupby("agent_id").size()
        board[column] = counts.reindex(board.index).fillna(0).astype(int)
    reviewed = review_counts(reviewed_outcomes(their), scored, ["agent_id"])  # as the stored scorecards count
    for column in ("reviewed_findings", "overturned_findings"):
        board[column] = reviewed[column].reindex(board.index).fillna(0).astype(int)
    board = board.sort_values(["mean_score", "pass_rate"], ascending=False)
    board.insert(0, "rank", range(1, len(board) + 1))
    return board.round({"mean_score": 1, "pass_rate": 3}).reset_index()


def not_scored(results: Results) -> pd.DataFrame:
    """The recordings of the period that have no score, and why: ``unscorable`` (no whole conversation
    with the agent in it) or ``error`` (failed, at which stage)."""
    calls = results.calls[results.calls["status"] != STATUS_OK]
    columns = ["call_id", "agent_id", "call_date", "file", "status", "error_stage", "status_reason"]
    return calls[columns].sort_values(["status", "call_date", "call_id"]).reset_index(drop=True)


def rule_failure_rates(results: Results) -> pd.DataFrame:
    """Per rule: calls it applied to, failures, failure rate and points deducted, most failed first."""
    rr = results.rule_results
    table = rr.groupby("rule_id").agg(
        applicable=("outcome", lambda s: int((s != "not_applicable").sum())),
        failed=("outcome", lambda s: int((s == "fail").sum())),
        points_deducted=("deduction", "sum"))
    table["fail_rate"] = (table["failed"] / table["applicable"].where(table["applicable"] > 0)).round(3)
    table["name"] = [results.rule_names.get(r, r) for r in table.index]
    table["description"] = [results.rule_descriptions.get(r, "") for r in table.index]
    return table.sort_values(["fail_rate", "failed"], ascending=False).reset_index()


def score_trend(results: Results, freq: str = "day") -> pd.DataFrame:
    """Mean score, pass rate and calls per ``day`` or ISO ``week`` of the call dates."""
    if freq not in ("day", "week"):
        raise ValueError(f"freq must be 'day' or 'week', not {freq!r}")
    scored = results.scored.copy()
    day = pd.to_datetime(scored["call_date"])
    if freq == "day":
        scored["period"] = day.dt.strftime("%Y-%m-%d")
    else:
        iso = day.dt.isocalendar()
        scored["period"] = iso["year"].astype(str) + "-W" + iso["week"].astype(str).str.zfill(2)
    return (scored.groupby("period").agg(calls=("call_id", "size"), mean_score=("score", "mean"),
                                         pass_rate=("passed", "mean"), red_lines=("red_line", "sum"))
            .round({"mean_score": 1, "pass_rate": 3}).reset_index())


def worst_severity(hits: pd.DataFrame) -> str | None:
    """The most serious severity among findings (轻 < 中 < 重), or None when none has one."""
    ranked = [s for s in hits.get("severity", pd.Series(dtype=object)).dropna() if s in SEVERITIES]
    return max(ranked, key=SEVERITIES.index) if ranked else None


@dataclass
class CallDetail:
    """One call, for a drill-down: its row, transcript, findings, voice activity and holds."""

    call: dict
    utterances: pd.DataFrame
    rule_results: pd.DataFrame
    hits: pd.DataFrame
    voice_activity: pd.DataFrame
    holds: list[tuple[float, float]]

    @property
    def failed(self) -> pd.DataFrame:
        return self.rule_results[self.rule_results["outcome"] == "fail"]


def call_detail(results: Results, call_id: str) -> CallDetail:
    """Gather one call: transcript (masked as stored), rule results with their moments, findings,
    each channel's speech, and the holds (mutual silences as long as the hold rules count).

    Raises:
        CallNotFoundError: no such call in the loaded period.
    """
    rows = results.calls[results.calls["call_id"] == call_id]
    if rows.empty:
        raise CallNotFoundError(f"call {call_id!r} is not in {results.out_dir} for {results.period}")
    call = rows.iloc[0].to_dict()
    utterances = call_utterances(results, call_id, call["call_date"])
    voice = read_table(results.out_dir, "voice_activity", dates=(call["call_date"], call["call_date"]))
    voice = voice[voice["call_id"] == call_id].sort_values("start_s").reset_index(drop=True)
    data = CallData(call_id, call["agent_id"], call.get("company") or "", call.get("channels"), call.get("duration_s"),
                    [], [(r.speaker, r.start_s, r.end_s) for r in voice.itertuples()], None, None)
    holds = [(h.start_s, h.end_s) for h in find_holds(data, results.hold_min_silence_s)]
    rr = results.rule_results[results.rule_results["call_id"] == call_id].sort_values("rule_id")
    hits = results.hits[results.hits["call_id"] == call_id].sort_values("start_s")
    return CallDetail(call, utterances, rr.reset_index(drop=True), hits.reset_index(drop=True), voice, holds)


def call_utterances(results: Results, call_id: str, call_date: str) -> pd.DataFrame:
    """One call's utterances (masked text as stored, without word timings), in time order."""
    stored = read_table(results.out_dir, "utterances",
                        ["call_id", "utterance_idx", "speaker", "start_s", "end_s", "text", "role_confidence"],
                        dates=(call_date, call_date))
    return stored[stored["call_id"] == call_id].sort_values("start_s").reset_index(drop=True)


def transcript(detail: CallDetail) -> pd.DataFrame:
    """The call as a two-column transcript (agent and customer lines apart), with the findings said in
    each line: ``time``, ``agent``, ``customer``, ``findings`` ("rule: phrase" list) and
    ``role_confidence`` (how sure it is who said the line: 1.0 on stereo, the split's confidence on mono).
    A mono recording whose voices were not split has its lines in the agent column; a third voice of a
    mono recording (a supervisor, a transfer) is in the customer column, marked 〔第三方〕."""
    found: dict[int, list[str]] = {}
    for hit in detail.hits.itertuples():
        found.setdefault(int(hit.utterance_idx), []).append(f"{hit.rule_id}: {hit.matched_text}")
    rows = []
    for u in detail.utterances.itertuples():
        text = f"〔第三方〕{u.text}" if u.speaker == SPEAKER_OTHER else u.text
        column = "customer" if u.speaker in (SPEAKER_CUSTOMER, SPEAKER_OTHER) else "agent"
        rows.append({"time": clock(u.start_s), "start_s": u.start_s,
                     "agent": text if column == "agent" else "", "customer": text if column == "customer" else "",
                     "findings": "; ".join(found.get(int(u.utterance_idx), [])),
                     "role_confidence": plain(getattr(u, "role_confidence", None))})
    return pd.DataFrame(rows, columns=["time", "start_s", "agent", "customer", "findings", "role_confidence"])


def roles(results: Results) -> pd.DataFrame:
    """How each mono recording's agent was found: ``roles_method`` (``diarised+words``: voices split and
    the agent found by what it said; ``none``: not split), ``roles_confidence``, whether the roles were
    trusted (at least ``MIN_ROLE_CONFIDENCE``; below it the call is unscorable), the status and the
    score. Stereo recordings (roles from the channels) are left out."""
    calls = results.calls
    if "roles_method" not in calls:
        return pd.DataFrame(columns=["call_id", "agent_id", "call_date", "roles_method", "roles_confidence",
                                     "trusted", "status", "score"])
    mono = calls[calls["roles_method"].notna() & (calls["roles_method"] != ROLES_CHANNELS)].copy()
    mono["trusted"] = mono["roles_confidence"].fillna(0) >= MIN_ROLE_CONFIDENCE
    columns = ["call_id", "agent_id", "call_date", "roles_method", "roles_confidence", "trusted", "status", "score"]
    return mono[columns].sort_values(["roles_confidence", "call_id"]).reset_index(drop=True)


def findings(detail: CallDetail) -> pd.DataFrame:
    """Rule results of a call that failed, with their moment and what was said there."""
    failed = detail.failed.copy()
    failed["time"] = [clock(t) if pd.notna(t) else "" for t in failed["at_s"]]
    return failed[["rule_id", "time", "at_s", "until_s", "deduction", "evidence"]].reset_index(drop=True)


def plain(value):
    """A value as JSON has it: None for missing (None, NaN), Python numbers for numpy ones."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else value


def clock(seconds: float) -> str:
    """A time in the call as mm:ss.s."""
    seconds = max(0.0, float(seconds))
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"

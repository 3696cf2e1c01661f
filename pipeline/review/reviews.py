"""Human review: reviewers' verdicts, agents' appeals and the review sample, saved to ``reviews``.

Every action is one row appended to the ``reviews`` table (:func:`pipeline.storage.parquet.append_rows`:
one new file per save, so two reviewers saving at once never lose each other's rows, and nothing
saved is ever rewritten). What a row says:

- ``kind = verdict``: a reviewer's ``confirmed`` / ``overturned`` / ``unsure`` on one rule result of
  a call (the *finding*: its outcome, evidence and moment are copied into the row, so the history
  says what was judged even after a rescore changes the finding). The latest verdict counts
  (:mod:`pipeline.scoring.verdicts`); ``callqa rescore`` and the next night score by it.
- ``kind = appeal``: an agent's appeal of a finding (``open``), or a reviewer's decision on it
  (``upheld``: the finding is overturned; ``rejected``: confirmed; each decision saves the verdict too).
- ``kind = sample``: a rule result drawn into the review sample (:func:`draw_sample`): random within
  its rule, machine outcome and ISO week, with the size of that stratum, so that the precision
  estimated from the reviewed sample is unbiased (:mod:`pipeline.review.precision`).
"""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd

from ..errors import ResultsNotFoundError, ReviewError
from ..records import FAIL, PASS, REVIEW, STATUS_OK, VERDICTS
from ..scoring.verdicts import REVIEWABLE
from ..storage.rows import latest_verdicts
from ..storage.parquet import append_rows, read_arrow, read_table

APPEAL_OPEN, APPEAL_UPHELD, APPEAL_REJECTED = "open", "upheld", "rejected"
SAMPLED_OUTCOMES = (FAIL, REVIEW, PASS)  # the strata of the sample, within each rule and week


def iso_week(day: str | date) -> str:
    """``2026-W47`` for a call date."""
    year, week, _ = (date.fromisoformat(day) if isinstance(day, str) else day).isocalendar()
    return f"{year}-W{week:02d}"


def read_reviews(out_dir: str | Path) -> pd.DataFrame:
    """Every row of the ``reviews`` table (empty, with its columns, when nobody has reviewed yet),
    oldest first.

    Raises:
        StoreError: a reviews file cannot be read.
    """
    reviews = read_table(out_dir, "reviews")
    return reviews.sort_values(["recorded_at", "review_id"], ignore_index=True)


def finding(out_dir: str | Path, call_id: str, rule_id: str) -> dict:
    """The stored rule result of ``call_id`` and ``rule_id``, with the call's agent, date and status.

    Raises:
        ResultsNotFoundError: ``out_dir`` holds no results.
        ReviewError: no such call, or the call has no result for that rule.
    """
    if not (Path(out_dir) / "calls").is_dir():
        raise ResultsNotFoundError(f"{out_dir} holds no callqa output (no calls table)")
    results = read_arrow(out_dir, "rule_results", ["call_id", "agent_id", "rule_id", "outcome", "evidence",
                                                   "lexicon_version", "at_s", "until_s", "verdict",
                                                   "final_outcome"]).to_pandas()
    calls = read_arrow(out_dir, "calls", ["call_id", "status"]).to_pandas()
    if call_id not in set(calls["call_id"]):
        raise ReviewError(f"no call {call_id!r} in {out_dir}")
    row = results[(results["call_id"] == call_id) & (results["rule_id"] == rule_id)]
    if row.empty:
        raise ReviewError(f"call {call_id!r} has no result for rule {rule_id!r}")
    found = row.iloc[0].to_dict()
    found["status"] = calls.loc[calls["call_id"] == call_id, "status"].iloc[0]
    return found


def _row(kind: str, found: dict, **values) -> dict:
    at_s = found.get("at_s")
    return {"review_id": uuid.uuid4().hex, "kind": kind, "call_id": found["call_id"], "rule_id": found["rule_id"],
            "agent_id": found.get("agent_id"), "machine_outcome": found["outcome"], "finding": found.get("evidence"),
            "at_s": None if at_s is None or at_s != at_s else float(at_s),
            "lexicon_version": found.get("lexicon_version"), "recorded_at": datetime.now(timezone.utc),
            "call_date": found["call_date"], **values}


def _name(text: str | None, what: str) -> str:
    name = (text or "").strip()
    if not name:
        raise ReviewError(f"{what} is required")
    if len(name) > 100:
        raise ReviewError(f"{what} is too long (100 characters at most)")
    return name


MAX_TEXT = 2000  # characters of a comment or an appeal's reason: a paragraph, not a document


def _text(text: str | None, what: str) -> str | None:
    """A comment or reason, trimmed (None when empty); too long is refused, never cut silently."""
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        raise ReviewError(f"{what} is too long ({len(text)} characters; {MAX_TEXT} at most)")
    return text or None


def _reviewable(found: dict) -> None:
    if found["outcome"] not in REVIEWABLE:
        raise ReviewError(f"rule {found['rule_id']} did not apply to call {found['call_id']} "
                          f"({found['outcome']}): there is no finding to review")


def record_verdict(out_dir: str | Path, call_id: str, rule_id: str, verdict: str, reviewer: str,
                   comment: str | None = None) -> dict:
    """Save a reviewer's verdict on one rule result of a call.

    Args:
        verdict: ``confirmed`` (the machine is right), ``overturned`` (wrong) or ``unsure``.
        reviewer: who judged (required).
        comment: why, in the reviewer's words.

    Returns:
        The row saved.

    Raises:
        ReviewError: an unknown call or rule, a not-applicable result, an unknown verdict, no reviewer.
    """
    if verdict not in VERDICTS:
        raise ReviewError(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
    reviewer = _name(reviewer, "a reviewer's name")
    found = finding(out_dir, call_id, rule_id)
    _reviewable(found)
    row = _row("verdict", found, verdict=verdict, reviewer=reviewer, comment=_text(comment, "the comment"))
    append_rows(out_dir, "reviews", [row])
    return row


def record_appeal(out_dir: str | Path, call_id: str, rule_id: str, agent: str, reason: str) -> dict:
    """Save an agent's appeal of a finding (status ``open``).

    Raises:
        ReviewError: an unknown call or rule, a result with no finding, no agent or no reason.
    """
    agent, reason = _name(agent, "the appealing agent's id"), _text(reason, "the reason")
    if not reason:
        raise ReviewError("an appeal needs a reason")
    found = finding(out_dir, call_id, rule_id)
    _reviewable(found)
    row = _row("appeal", found, appeal_agent=agent, appeal_reason=reason, appeal_status=APPEAL_OPEN)
    append_rows(out_dir, "reviews", [row])
    return row


def decide_appeal(out_dir: str | Path, call_id: str, rule_id: str, upheld: bool, reviewer: str,
                  comment: str | None = None) -> list[dict]:
    """A reviewer's decision on the open appeal of a finding: ``upheld`` overturns the finding,
    rejected confirms it. Both rows (the appeal's new status and the verdict) are saved in one file.

    Raises:
        ReviewError: no open appeal on that finding, or no reviewer.
    """
    reviewer = _name(reviewer, "a reviewer's name")
    status = appeals(out_dir)
    open_ = status[(status["call_id"] == call_id) & (status["rule_id"] == rule_id)
                   & (status["appeal_status"] == APPEAL_OPEN)]
    if open_.empty:
        raise ReviewError(f"no open appeal on rule {rule_id} of call {call_id}")
    appeal = open_.iloc[0]
    found = finding(out_dir, call_id, rule_id)
    note = _text(comment, "the comment")
    rows = [_row("appeal", found, appeal_agent=appeal["appeal_agent"], appeal_reason=appeal["appeal_reason"],
                 appeal_status=APPEAL_UPHELD if upheld else APPEAL_REJECTED, reviewer=reviewer, comment=note),
            _row("verdict", found, verdict="overturned" if upheld else "confirmed", reviewer=reviewer,
                 comment=note or f"appeal by {appeal['appeal_agent']} {'upheld' if upheld else 'rejected'}")]
    append_rows(out_dir, "reviews", rows)
    return rows


def appeals(out_dir: str | Path) -> pd.DataFrame:
    """Each appealed finding with its appeal's latest status (open, upheld, rejected), newest first:
    call_id, rule_id, agent_id, appeal_agent, appeal_reason, appeal_status, appealed_at, decided_by."""
    reviews = read_reviews(out_dir)
    rows = reviews[reviews["kind"] == "appeal"]
    columns = ["call_id", "rule_id", "agent_id", "call_date", "finding", "appeal_agent", "appeal_reason",
               "appeal_status", "appealed_at", "decided_by", "comment"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    first = rows.groupby(["call_id", "rule_id"])["recorded_at"].min().rename("appealed_at")
    latest = rows.groupby(["call_id", "rule_id"]).tail(1).set_index(["call_id", "rule_id"]).join(first)
    latest["decided_by"] = latest["reviewer"].where(latest["appeal_status"] != APPEAL_OPEN)
    return latest.reset_index()[columns].sort_values("appealed_at", ascending=False, ignore_index=True)


def draw_sample(out_dir: str | Path, per_rule: int = 5, weeks: list[str] | None = None, seed: int | None = None,
                drawn_by: str = "callqa review sample") -> pd.DataFrame:
    """Draw rule results for review so that precision estimated from them is unbiased.

    The population is every rule result of a scored call with an outcome a reviewer can judge
    (``fail``, ``review``, ``pass``). It is split into strata by rule, machine outcome and ISO week
    of the call date; from each stratum up to ``per_rule`` results are drawn at random, without
    replacement. Results drawn before count toward a stratum's number (running it again tops a
    stratum up, it never draws twice), and each sample row records the stratum's size so estimates
    can weigh the strata by how many findings they stand for.

    Args:
        per_rule: results to draw per rule, outcome and week.
        weeks: ISO weeks (``2026-W47``) to draw from (default: every week stored).
        seed: the random seed (default: a new one each time).

    Returns:
        The sample rows saved now (empty when every stratum already has its number).

    Raises:
        ResultsNotFoundError: no results in ``out_dir``.
        ReviewError: ``per_rule`` is under 1, or a week is not of the form 2026-W47.
    """
    if per_rule < 1:
        raise ReviewError("the sample needs at least 1 result per rule, outcome and week")
    for week in weeks or []:
        if not (len(week) == 8 and week[4:6] == "-W" and week[:4].isdigit() and week[6:].isdigit()):
            raise ReviewError(f"{week!r} is not an ISO week like 2026-W47")
    if not (Path(out_dir) / "calls").is_dir():
        raise ResultsNotFoundError(f"{out_dir} holds no callqa output (no calls table)")
    calls = read_arrow(out_dir, "calls", ["call_id", "status"]).to_pandas()
    results = read_arrow(out_dir, "rule_results", ["call_id", "agent_id", "rule_id", "outcome", "evidence", "at_s",
                                                   "lexicon_version"]).to_pandas()
    results = results[results["call_id"].isin(calls.loc[calls["status"] == STATUS_OK, "call_id"])
                      & results["outcome"].isin(SAMPLED_OUTCOMES)].copy()
    results["week"] = results["call_date"].map(iso_week)
    if weeks:
        results = results[results["week"].isin(weeks)]
    reviews = read_reviews(out_dir)
    drawn = reviews[reviews["kind"] == "sample"]
    already = set(zip(drawn["call_id"], drawn["rule_id"], drawn["machine_outcome"]))
    rng = random.Random(seed)
    rows = []
    for (rule_id, outcome, week), stratum in results.sort_values(["call_id"]).groupby(["rule_id", "outcome", "week"]):
        keys = list(zip(stratum["call_id"], stratum["rule_id"], stratum["outcome"]))
        have = sum(key in already for key in keys)
        fresh = [i for i, key in enumerate(keys) if key not in already]
        for i in sorted(rng.sample(fresh, min(len(fresh), max(0, per_rule - have)))):
            found = stratum.iloc[i].to_dict()
            rows.append(_row("sample", found, reviewer=drawn_by, sample_week=week, sample_size=len(stratum)))
    if rows:
        append_rows(out_dir, "reviews", rows)
    return pd.DataFrame(rows)


def review_queue(out_dir: str | Path) -> pd.DataFrame:
    """Every reviewable rule result (fail, review, pass) of the stored calls, with what review has
    done to it: one row per (call, rule) with the call's agent, date and score, the machine's outcome
    and evidence, ``sampled`` (drawn into the review sample), ``verdict`` / ``reviewer`` /
    ``reviewed_at`` (the latest verdict, when it was made on the current outcome), ``stale_verdict``
    (a verdict made on an outcome the machine no longer gives) and ``appeal_status``.
    """
    calls = read_arrow(out_dir, "calls", ["call_id", "agent_id", "status", "score", "started_at"]).to_pandas()
    results = read_arrow(out_dir, "rule_results", ["call_id", "rule_id", "outcome", "evidence", "at_s", "until_s",
                                                   "deduction", "final_outcome"]).to_pandas()
    results = results[results["outcome"].isin(REVIEWABLE)]
    queue = results.merge(calls.drop(columns=["call_date"]), on="call_id")
    reviews = read_reviews(out_dir)  # oldest first: the last row of each finding is its latest verdict
    said = reviews[(reviews["kind"] == "verdict") & (reviews["verdict"].fillna("") != "")]
    said = said.drop_duplicates(["call_id", "rule_id"], keep="last")  # thousands of rows in, one a finding out
    verdicts = latest_verdicts(said[["review_id", "kind", "call_id", "rule_id", "machine_outcome", "verdict", "reviewer",
                                     "recorded_at", "comment"]].to_dict("records"))
    sampled = set(zip(*[reviews.loc[reviews["kind"] == "sample", c] for c in ("call_id", "rule_id", "machine_outcome")]))
    status = appeals(out_dir).set_index(["call_id", "rule_id"])["appeal_status"].to_dict()
    cells = {"sampled": [], "verdict": [], "reviewer": [], "reviewed_at": [], "stale_verdict": [], "appeal_status": []}
    for call_id, rule_id, outcome in zip(queue["call_id"], queue["rule_id"], queue["outcome"]):
        v = verdicts.get((call_id, rule_id))
        current = v is not None and v.machine_outcome == outcome
        cells["sampled"].append((call_id, rule_id, outcome) in sampled)
        cells["verdict"].append(v.verdict if current else None)
        cells["reviewer"].append(v.reviewer if current else None)
        cells["reviewed_at"].append(v.recorded_at if current else None)
        cells["stale_verdict"].append(v is not None and not current)
        cells["appeal_status"].append(status.get((call_id, rule_id)))
    queue = queue.assign(**cells)
    return queue.sort_values(["call_date", "call_id", "rule_id"], ignore_index=True)

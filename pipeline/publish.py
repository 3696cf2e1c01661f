"""What a night and a rescore read and write around the rules and scores: the reviewers' verdicts
they score by, and agent scores rebuilt from every stored call (published in the same transaction as
the rows they come from). Scoring itself (:mod:`pipeline.scoring`) reads and writes no file.
"""

from __future__ import annotations

from pathlib import Path

from .scoring.rubric import Rubric
from .scoring.tables import agent_score_rows
from .records import Verdict
from .storage.rows import latest_verdicts
from .storage.parquet import read_arrow, replace_table
from .storage.transaction import Transaction

VERDICT_COLUMNS = ["review_id", "kind", "call_id", "rule_id", "machine_outcome", "verdict", "reviewer",
                   "recorded_at", "comment"]


def stored_verdicts(out_dir: str | Path) -> dict[tuple[str, str], Verdict]:
    """The verdicts that count, from ``OUT_DIR/reviews`` (none when nobody has reviewed anything).

    Raises:
        StoreError: a reviews file cannot be read.
    """
    return latest_verdicts(read_arrow(out_dir, "reviews", VERDICT_COLUMNS).to_pylist())


def refresh_agent_scores(out_dir: str | Path, rubric: Rubric, txn: Transaction | None = None) -> int:
    """Recompute ``agent_scores`` from all stored calls and rule results and rewrite it (inside ``txn``:
    from what the transaction has written, so that it is published with them).

    Returns:
        Rows written.
    """
    calls = read_arrow(out_dir, "calls", ["call_id", "agent_id", "status", "score", "passed", "red_line"],
                       txn=txn).to_pandas()
    results = read_arrow(out_dir, "rule_results", ["call_id", "rule_id", "outcome", "verdict", "final_outcome"],
                         txn=txn).to_pandas()
    return replace_table(out_dir, "agent_scores", agent_score_rows(calls, results, rubric), txn)

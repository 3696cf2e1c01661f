"""Per rule, the verdicts on a stored night without and with its phrase checks on the audio (issue 25).

One helper for the rules benchmark and the speed suite: the night's stored utterances are judged twice
by the rule engine, once with ``[verify] enabled = false`` (the transcript alone: what callqa did before
the checks) and once as configured, and each is compared with the corpus truth. Nothing is transcribed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.records import REVIEW
from pipeline.rules.engine import RuleEngine, evaluate_calls
from pipeline.storage.parquet import read_table
from pipeline.storage.rows import transcripts_of

COLUMNS = ["rule", "calls", "truth fails", "accuracy before", "accuracy after", "F1 before", "F1 after",
           "changed by the audio", "review", "decided accuracy after"]


def _f1(pairs: list[tuple[str, str]]) -> float | None:
    tp = sum(g == "fail" and e == "fail" for g, e in pairs)
    wrong = sum((g == "fail") != (e == "fail") for g, e in pairs)
    return 2 * tp / (2 * tp + wrong) if tp + wrong else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def verdicts(out: Path, lexicons, verify: bool) -> dict[tuple[str, str], str]:
    """(call, rule) -> outcome of the stored night judged again, with or without its checks."""
    options = dataclasses.replace(lexicons.verify, enabled=verify and lexicons.verify.enabled)
    engine = RuleEngine(dataclasses.replace(lexicons, verify=options))
    evaluation = evaluate_calls(engine, transcripts_of({name: read_table(out, name).to_dict("records")
                                                        for name in ("calls", "utterances", "voice_activity")}))
    return {(r.call_id, r.rule_id): r.outcome for r in evaluation.results}


def before_after(out: Path, truth: dict, lexicons, rules: list[str] | None = None) -> tuple[list[list[str]], dict]:
    """Rows of :data:`COLUMNS`, one per rule that verifies phrases (or ``rules``) and one for all of
    them, and the totals: verdicts, changed, review."""
    before, after = verdicts(out, lexicons, False), verdicts(out, lexicons, True)
    checked = rules or [s.rule_id for s in lexicons.rules if getattr(s.options, "verify", False)]
    rows, every = [], {"before": [], "after": [], "changed": 0, "review": 0}
    for rule_id in checked:
        b, a = [], []
        changed = review = 0
        for call_id, t in truth.items():
            expected = t["expected"].get(rule_id)
            if expected is None:
                continue
            got_b, got_a = before.get((call_id, rule_id), "no result"), after.get((call_id, rule_id), "no result")
            b.append((got_b, expected))
            a.append((got_a, expected))
            changed += got_a != got_b
            review += got_a == REVIEW
        if not b:
            continue
        decided = [(g, e) for g, e in a if g != REVIEW]
        rows.append([rule_id, str(len(b)), str(sum(e == "fail" for _, e in b)),
                     _fmt(sum(g == e for g, e in b) / len(b)), _fmt(sum(g == e for g, e in a) / len(a)),
                     _fmt(_f1(b)), _fmt(_f1(a)), str(changed), str(review),
                     _fmt(sum(g == e for g, e in decided) / len(decided)) if decided else "-"])
        every["before"] += b
        every["after"] += a
        every["changed"] += changed
        every["review"] += review
    n = len(every["before"])
    if n:
        decided = [(g, e) for g, e in every["after"] if g != REVIEW]
        rows.append(["ALL phrase rules", str(n), str(sum(e == "fail" for _, e in every["before"])),
                     _fmt(sum(g == e for g, e in every["before"]) / n), _fmt(sum(g == e for g, e in every["after"]) / n),
                     _fmt(_f1(every["before"])), _fmt(_f1(every["after"])), str(every["changed"]),
                     f"{every['review']} ({every['review'] / n:.1%})",
                     _fmt(sum(g == e for g, e in decided) / len(decided)) if decided else "-"])
    return rows, {"verdicts": n, "changed": every["changed"], "review": every["review"]}

"""Rule accuracy on a synthetic corpus against its ground truth, and rule engine speed on 10,000 calls.

Usage:
    python benchmarks/rules_benchmark.py [--corpus DIR] [--out DIR] [--lexicons DIR] [--speed-calls N]

Accuracy: transcribes the calls of a corpus (``--corpus``: ``demo``, the default, with its 17 calls, or
``benchmarks/heldout``, ``benchmarks/heldout2``: any folder with ``recordings/`` and ``truth/``) with the
library (as a nightly run does, Whisper base int8; or reads an existing output folder of that corpus with
--out), runs the rules, and compares every (call, rule) outcome with ``expected`` in ``DIR/truth/*.json``.
Printed for every rule id in the truth files: accuracy over the 8 kHz telephone-band calls and over all
calls, how many calls the truth fails, FALSE ALARMS (the rule failed a call whose truth is pass or
not_applicable) and MISSES (the rule passed a call, or found it not applicable, where the truth is fail),
then each disagreement. Also printed: how often the agent's 您好 was transcribed as 你好, and whether any
polite near-miss line (truth ``near_misses``) was reported as a forbidden phrase.

Speed: replicates the stored utterances and voice activity of the corpus's calls into N calls (default
10,000; 0 skips it) with new call ids and times the rule engine over all of them (lexicons compiled once).
"""


from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.rules.lexicon import load_lexicons  # noqa: E402
from pipeline.night import run_night  # noqa: E402
from pipeline.rules.engine import RuleEngine, evaluate_calls  # noqa: E402
from pipeline.storage.parquet import read_table  # noqa: E402
from pipeline.storage.rows import transcripts_of  # noqa: E402
from pipeline.text import match_key  # noqa: E402
from benchmarks.verify.compare import COLUMNS as VERIFY_COLUMNS, before_after  # noqa: E402

DEMO = ROOT / "demo"


def corpus_dir(value: str) -> Path:
    """A corpus folder as given, or relative to the repository root (``demo``, ``benchmarks/heldout``)."""
    path = Path(value)
    if not path.is_absolute() and not (path / "truth").is_dir():
        path = ROOT / value
    if not (path / "truth").is_dir() or not (path / "recordings").is_dir():
        raise argparse.ArgumentTypeError(f"{value}: not a corpus folder (recordings/ and truth/)")
    return path


def transcribe_corpus(corpus: Path, out: Path) -> None:
    """The corpus's night, as the library runs it (transcripts, rules and scores) into ``out``."""
    run_night(corpus / "recordings", out, run_id="benchmark")


def corpus_name(corpus: Path) -> str:
    try:
        return str(corpus.resolve().relative_to(ROOT))
    except ValueError:
        return str(corpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=corpus_dir, default=DEMO,
                        help="corpus folder with recordings/ and truth/: demo (default), benchmarks/heldout, "
                             "benchmarks/heldout2")
    parser.add_argument("--out", type=Path, default=None,
                        help="read stored utterances from this output folder (a night of the same corpus)")
    parser.add_argument("--lexicons", type=Path, default=None)
    parser.add_argument("--speed-calls", type=int, default=10_000, help="calls for the speed test (0: skip it)")
    args = parser.parse_args()
    console = Console(width=160)
    corpus, name = args.corpus, corpus_name(args.corpus)

    out = args.out
    if out is not None and not (out / "calls").exists():
        parser.error(f"--out {out}: no night's output there (a calls table); leave --out out to transcribe")
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="callqa-rules-bench-"))
        started = time.perf_counter()
        transcribe_corpus(corpus, out)
        console.print(f"transcribed the {name} corpus into {out} in {time.perf_counter() - started:.0f} s")
    lexicons = load_lexicons(args.lexicons)
    engine = RuleEngine(lexicons)
    calls = read_table(out, "calls").to_dict("records")
    utterances = read_table(out, "utterances").to_dict("records")
    voice = read_table(out, "voice_activity").to_dict("records")
    transcripts = transcripts_of({"calls": calls, "utterances": utterances, "voice_activity": voice})
    evaluation = evaluate_calls(engine, transcripts)
    hits, results = evaluation.hits, evaluation.results

    truth = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((corpus / "truth").glob("*.json"))}
    telephone = {cid for cid, t in truth.items() if t["sample_rate"] == 8000}
    outcomes = {(row.call_id, row.rule_id): row for row in results}
    rule_ids = list(dict.fromkeys(rule for t in truth.values() for rule in t["expected"]))
    per_rule: dict[str, dict] = {}
    wrong = []
    for rule_id in rule_ids:  # every rule id of the truth files, every call that has a truth for it
        stats = per_rule.setdefault(rule_id, {"all": [0, 0], "tel": [0, 0], "truth_fail": 0, "false_alarms": 0,
                                              "misses": 0, "no_result": 0})
        for call_id, t in truth.items():
            expected = t["expected"].get(rule_id)
            if expected is None:
                continue
            row = outcomes.get((call_id, rule_id))
            got = row.outcome if row is not None else None
            ok = expected == got
            stats["all"][0] += ok
            stats["all"][1] += 1
            if call_id in telephone:
                stats["tel"][0] += ok
                stats["tel"][1] += 1
            stats["truth_fail"] += expected == "fail"
            if got is None:
                stats["no_result"] += 1
                kind = "no result"
            elif got == "fail" and expected != "fail":
                stats["false_alarms"] += 1
                kind = "false alarm"
            elif got != "fail" and expected == "fail":
                stats["misses"] += 1
                kind = "miss"
            else:
                kind = "pass vs not_applicable"
            if not ok:
                wrong.append((rule_id, call_id, got, expected, kind, row.evidence if row is not None else ""))
    table = Table(title=f"rule accuracy against {name}/truth (lexicons {lexicons.version})")
    for column in ("rule id", "8 kHz calls", "accuracy 8 kHz", "all calls", "accuracy all", "truth fail",
                   "false alarms", "misses"):
        table.add_column(column, justify="left" if column == "rule id" else "right")
    for rule_id, stats in per_rule.items():
        tel, every = stats["tel"], stats["all"]
        missing = f" ({stats['no_result']} no result)" if stats["no_result"] else ""
        table.add_row(rule_id, str(tel[1]), f"{tel[0] / tel[1]:.3f}" if tel[1] else "-", str(every[1]) + missing,
                      f"{every[0] / every[1]:.3f}" if every[1] else "-", str(stats["truth_fail"]),
                      str(stats["false_alarms"]), str(stats["misses"]))
    total = sum(s["all"][0] for s in per_rule.values()), sum(s["all"][1] for s in per_rule.values())
    table.add_row("ALL", "", "", str(total[1]), f"{total[0] / total[1]:.3f}" if total[1] else "-",
                  str(sum(s["truth_fail"] for s in per_rule.values())),
                  str(sum(s["false_alarms"] for s in per_rule.values())),
                  str(sum(s["misses"] for s in per_rule.values())), style="bold")
    console.print(table)
    console.print("false alarm: the rule failed a call whose truth is pass or not_applicable; miss: the rule passed "
                  "a call, or found it not applicable, whose truth is fail", markup=False)
    for rule_id, call_id, got, expected, kind, evidence in wrong:
        console.print(f"  wrong ({kind}): {rule_id} {call_id}: {got} (truth {expected}): {evidence}", markup=False)
    # the phrase rules with and without their checks on the audio (issue 25)
    rows, totals = before_after(out, truth, lexicons)
    verify_table = Table(title="phrase rules: the transcript alone (before) and checked on the audio (after)")
    for column in VERIFY_COLUMNS:
        verify_table.add_column(column, justify="left" if column == "rule" else "right")
    for row in rows:
        verify_table.add_row(*row)
    console.print(verify_table)
    console.print("before: [verify] enabled = false on the same stored night; changed: verdicts the checks changed; "
                  "review: verdicts left to a person (no points taken); decided accuracy: over the verdicts not in "
                  "review", markup=False)
    untruthed = sorted({row.rule_id for row in results} - set(rule_ids))
    if untruthed:
        console.print(f"rules with no ground truth in {name}/truth (not scored): {', '.join(untruthed)}", markup=False)

    # 您好 as heard: the first agent utterance of every call whose script opens with 您好
    heard = {"您好": 0, "你好": 0, "neither": 0}
    for cid, t in truth.items():
        first_line = next((x for x in t["turns"] if x["speaker"] == "agent"), None)
        if not first_line or "您好" not in first_line["text"] or t["agent_channel"] == "mono":
            continue
        agent = sorted((u for u in utterances if u["call_id"] == cid and u["speaker"] == "agent"),
                       key=lambda u: u["start_s"])
        text = agent[0]["text"] if agent else ""
        heard["您好" if "您好" in text else "你好" if "你好" in text else "neither"] += 1
    console.print(f"agent said 您好 in the first utterance (stereo calls: {sum(heard.values())}); transcribed as: "
                  f"您好 {heard['您好']}, 你好 {heard['你好']}, neither {heard['neither']}")

    # polite near-misses must never be reported as forbidden
    forbidden_hits = [h for h in hits if h.rule_id == "forbidden.phrase"]
    flagged = []
    for cid, t in truth.items():
        for line in t.get("near_misses", []):
            turn = next((x for x in t["turns"] if match_key(line) in match_key(x["text"])), None)
            if turn is None:
                continue
            for h in forbidden_hits:
                if h.call_id == cid and h.start_s < turn["end_s"] + 0.5 and h.end_s > turn["start_s"] - 0.5:
                    flagged.append((cid, line, h.phrase, h.matched_text))
    n_near = sum(len(t.get("near_misses", [])) for t in truth.values())
    console.print(f"polite near-miss lines reported as forbidden: {len(flagged)} of {n_near}", markup=False)
    for item in flagged:
        console.print(f"  flagged: {item}", markup=False)

    # speed: N calls of stored utterances
    n = args.speed_calls
    if n <= 0:
        return 0
    ok_calls = [t for t in transcripts if t.status == "ok"]
    bases = [ok_calls[i % len(ok_calls)] for i in range(n)]
    big_calls = [dataclasses.replace(base, call_id=f"{base.call_id}-{i:06d}") for i, base in enumerate(bases)]
    big_utts = [u for t in big_calls for u in t.utterances]
    fresh = RuleEngine(lexicons)
    started = time.perf_counter()
    speed = evaluate_calls(fresh, big_calls)
    speed_hits, speed_results = speed.hits, speed.results
    elapsed = time.perf_counter() - started
    table_speed = Table(title="rule engine speed (one process, lexicons compiled once, jieba loaded on first use)")
    for column in ("calls", "utterances", "rule results", "hits", "seconds", "calls per second"):
        table_speed.add_column(column, justify="right")
    table_speed.add_row(str(n), str(len(big_utts)), str(len(speed_results)), str(len(speed_hits)), f"{elapsed:.1f}",
                  f"{n / elapsed:.0f}")
    console.print(table_speed)
    console.print(f"machine: {os.cpu_count()} cpus")
    return 0


if __name__ == "__main__":
    sys.exit(main())

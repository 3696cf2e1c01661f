"""How the standards rules of issue 28 judge a generated corpus: F1 of fail, accuracy, and the confusion
of every outcome per rule, against the scripts' labels.

    python benchmarks/standards/score.py CORPUS [--out OUT] [--reuse OUT]

CORPUS is a folder written by demo/make_corpus.py (recordings/ and truth/, e.g. from
benchmarks/standards/make_scenarios.py). Without --reuse it runs `callqa run CORPUS/recordings --out OUT`
first (the bundled model, the real night); with it, it reads a night already run. Prints one table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "speed"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.storage.parquet import read_table  # noqa: E402
from suite import callqa_verdicts, rule_metrics  # noqa: E402

RULES = ("service.confirm", "service.commitment_time", "closing.hangup_order")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="where the night writes (default: a temporary folder)")
    parser.add_argument("--reuse", type=Path, default=None, help="a night already run on the corpus")
    args = parser.parse_args(argv)
    truth = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((args.corpus / "truth").glob("*.json"))}
    out = args.reuse
    if out is None:
        out = args.out or Path(tempfile.mkdtemp(prefix="callqa-standards-")) / "out"
        clock = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).with_name("callqa")), "run", str(args.corpus / "recordings"),
                               "--out", str(out)], capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-2000:], done.stderr[-2000:])
            return done.returncode
        print(f"callqa run: {len(truth)} calls in {time.perf_counter() - clock:.1f} s -> {out}")
    pairs = callqa_verdicts(out, truth)
    table = Table(title=f"the rules of issue 28 on {len(truth)} generated calls ({args.corpus})")
    for column in ("rule", "calls", "truth fails", "precision", "recall", "F1", "accuracy", "got/expected (off the diagonal)"):
        table.add_column(column, justify="right" if column not in ("rule", "got/expected (off the diagonal)") else "left")
    for rule in RULES + ("ALL",):
        chosen = [p for r in RULES for p in pairs.get(r, [])] if rule == "ALL" else pairs.get(rule, [])
        m = rule_metrics(chosen)
        wrong = Counter(f"{g}/{e}" for g, e in chosen if g != e)
        table.add_row(rule, str(m["n"]), str(m["fails"]), *(f"{m[k]:.3f}" if m[k] is not None else "-"
                                                            for k in ("precision", "recall", "f1", "accuracy")),
                      ", ".join(f"{k} x{v}" for k, v in wrong.most_common()) or "-")
    Console(width=160).print(table)
    results = read_table(out, "rule_results")
    for rule in RULES:
        got = {(r.call_id): r for r in results[results.rule_id == rule].itertuples()}
        for call_id, t in truth.items():
            expected = t["expected"].get(rule)
            if expected is not None and call_id in got and got[call_id].outcome != expected:
                print(f"{rule} {call_id}: got {got[call_id].outcome}, expected {expected}: {got[call_id].evidence[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrate how phrase checks on the audio decide (rules.toml [verify]) from corpora with ground truth.

    python benchmarks/verify/calibrate.py CORPUS[=OUT] [CORPUS[=OUT] ...] [--review 0.05]

Each CORPUS is a folder with recordings/ and truth/ (demo, benchmarks/verify/calibration, the speed
corpus...). Without =OUT, or when OUT holds no night yet, the corpus is transcribed into OUT (default: a
folder under /tmp) with every check asked: a copy of the lexicons whose [verify] band is so wide that
no check ever stops the asking early, so that every finding and every sound-alike place of a wanted
phrase gets its check. Then every stored check of an agent utterance is labelled from the truth (the
phrase is in the script of the agent turn the utterance overlaps most) and, for each prior_weight of
the grid, the script prints how well the margin separates said from not said (AUC, per phrase too) and
the thresholds (low, high) with the fewest wrong decisions while at most --review of the checks fall
between them. Tune only on corpora you will not report as held out.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.config import LEXICONS_DIR, load_config  # noqa: E402
from pipeline.rules.verification import VerifyOptions, decide  # noqa: E402
from pipeline.storage.parquet import read_table  # noqa: E402
from pipeline.storage.rows import check_of  # noqa: E402
from pipeline.text import match_key  # noqa: E402

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def exhaustive_lexicons(folder: Path) -> Path:
    """A copy of the lexicons whose [verify] band is so wide that every check is asked (none is 'said')."""
    shutil.copytree(LEXICONS_DIR, folder, dirs_exist_ok=True)
    rules = folder / "rules.toml"
    text = re.sub(r"(?m)^low = .*$", "low = -1000.0", rules.read_text(encoding="utf-8"))
    text = re.sub(r"(?m)^high = .*$", "high = 1000.0", text)
    rules.write_text(text, encoding="utf-8")
    return folder


def transcribe(corpus: Path, out: Path) -> None:
    import os

    from pipeline.night import run_night

    lexicons = exhaustive_lexicons(Path(tempfile.mkdtemp(prefix="callqa-calibrate-lexicons-")))
    os.environ["CALLQA_RULES_LEXICONS"] = str(lexicons)
    try:
        config = load_config()
        run_night(corpus / "recordings", out, config, run_id="calibrate")
    finally:
        os.environ.pop("CALLQA_RULES_LEXICONS", None)


def accepted_phrases() -> dict[str, set[str]]:
    """Each phrase's accepted equivalents: every phrase of a group it belongs to (稍后 announces a hold
    as 稍候 does; 你好, a stand-in, is not 您好)."""
    from pipeline.rules.lexicon import load_lexicons

    same: dict[str, set[str]] = defaultdict(set)
    for group in load_lexicons().groups.values():
        texts = {match_key(p.text) for p in group.phrases if p.kind == "phrase"}
        for text in texts:
            same[text] |= texts
    return same


def labelled_checks(corpus: Path, out: Path) -> list[dict]:
    """Every check of an agent utterance of ``out`` with ``said``: the truth's agent turn that overlaps
    the utterance most has the phrase (or a phrase of its group) in its script."""
    same = accepted_phrases()
    truth = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in (corpus / "truth").glob("*.json")}
    utterances = read_table(out, "utterances")
    found = []
    for row in utterances.itertuples():
        checks = row.checks if row.checks is not None else []
        if row.speaker != "agent" or len(checks) == 0 or row.call_id not in truth:
            continue
        turns = [t for t in truth[row.call_id]["turns"] if t["speaker"] == "agent"]
        best = max(turns, key=lambda t: min(t["end_s"], row.end_s) - max(t["start_s"], row.start_s), default=None)
        if best is None or min(best["end_s"], row.end_s) <= max(best["start_s"], row.start_s):
            continue
        for check in checks:
            check = dict(check)
            phrase = match_key(check["phrase"])
            check["said"] = any(p in match_key(best["text"]) for p in same.get(phrase, {phrase}))
            check["call_id"], check["corpus"], check["text"] = row.call_id, corpus.name, row.text
            found.append(check)
    return found


def auc(pos: list[float], neg: list[float]) -> float:
    if not pos or not neg:
        return float("nan")
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def best_band(margins: list[tuple[float, bool]], review: float) -> tuple[float, float, int, int]:
    """(low, high, wrong decisions, reviewed) with the fewest wrong decisions and at most ``review``
    of the checks between low and high."""
    values = sorted({round(m, 2) for m, _ in margins})
    cuts = [values[0] - 0.01] + [v + 0.005 for v in values]
    allowed = int(review * len(margins))
    best = None
    for i, low in enumerate(cuts):
        for high in cuts[i:]:
            inside = sum(low < m < high for m, _ in margins)
            if inside > allowed:
                break
            wrong = sum((m >= high and not said) or (m <= low and said) for m, said in margins)
            key = (wrong, inside, high - low)
            if best is None or key < best[0]:
                best = (key, low, high)
    (wrong, inside, _), low, high = best
    return round(low, 2), round(high, 2), wrong, inside


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpora", nargs="+", help="CORPUS or CORPUS=OUT")
    parser.add_argument("--review", type=float, default=0.05, help="share of checks allowed in the review band")
    parser.add_argument("--show", action="store_true", help="print every check with its margin")
    args = parser.parse_args()
    checks = []
    for item in args.corpora:
        corpus, _, out = item.partition("=")
        corpus = Path(corpus) if Path(corpus).is_absolute() or (Path(corpus) / "truth").is_dir() else ROOT / corpus
        out = Path(out) if out else Path(tempfile.gettempdir()) / f"callqa-calibrate-{corpus.name}"
        if not (out / "calls").is_dir():
            print(f"transcribing {corpus} into {out} (every check asked)", flush=True)
            transcribe(corpus, out)
        found = labelled_checks(corpus, out)
        print(f"{corpus}: {len(found)} checks ({sum(c['said'] for c in found)} said) from {out}")
        checks += found
    print(f"\n{len(checks)} checks in all; review band at most {args.review:.0%} of them\n")
    print(f"{'prior_weight':>12} {'AUC':>6} {'low':>6} {'high':>6} {'wrong':>6} {'review':>7}   AUC per phrase (said/not said)")
    for weight in WEIGHTS:
        options = VerifyOptions(low=-1e9, high=1e9, prior_weight=weight)
        margins = []
        per_phrase = defaultdict(lambda: ([], []))
        for check in checks:
            verdict = decide(check_of(check), options)
            if verdict is None:
                continue
            margins.append((verdict.margin, check["said"]))
            per_phrase[check["phrase"]][0 if check["said"] else 1].append(verdict.margin)
        low, high, wrong, inside = best_band(margins, args.review)
        total = auc([m for m, s in margins if s], [m for m, s in margins if not s])
        phrases = ", ".join(f"{p} {auc(*v):.2f} ({len(v[0])}/{len(v[1])})" for p, v in sorted(per_phrase.items(), key=lambda kv: -len(kv[1][0]) - len(kv[1][1]))
                            if v[0] and v[1])
        print(f"{weight:>12} {total:>6.3f} {low:>6} {high:>6} {wrong:>6} {inside:>7}   {phrases}")
    print("\nper phrase (prior_weight 0, no bias): margins of the checks where it was said and where it was not")
    print(f"{'phrase':>8} {'said':>5} {'min':>6} {'p10':>6} {'median':>7} {'not':>4} {'max not':>8}")
    per = defaultdict(lambda: ([], []))
    for check in checks:
        verdict = decide(check_of(check), VerifyOptions(low=-1e9, high=1e9, prior_weight=0.0))
        if verdict is not None:
            per[check["phrase"]][0 if check["said"] else 1].append(verdict.margin)
    for phrase, (said, not_said) in sorted(per.items(), key=lambda kv: -len(kv[1][0])):
        said.sort()
        stats = (f"{said[0]:>6.2f} {said[len(said) // 10]:>6.2f} {said[len(said) // 2]:>7.2f}" if said else f"{'-':>6} {'-':>6} {'-':>7}")
        print(f"{phrase:>8} {len(said):>5} {stats} {len(not_said):>4} {max(not_said) if not_said else '-':>8}")
    # as configured: rules.toml [verify] and each phrase's bias= from the lexicons
    from pipeline.rules.lexicon import load_lexicons

    lexicons = load_lexicons()
    bias = {}
    for group in lexicons.groups.values():
        for phrase in group.phrases:
            bias.setdefault(match_key(phrase.text), phrase.bias)
    counts = defaultdict(lambda: [0, 0, 0, 0])  # right, wrong, unsure, checks
    for check in checks:
        verdict = decide(check_of(check), lexicons.verify, bias.get(match_key(check["phrase"])))
        if verdict is None:
            continue
        row = counts[check["phrase"]]
        row[3] += 1
        if verdict.state == "unsure":
            row[2] += 1
        else:
            row[0 if (verdict.state == "said") == check["said"] else 1] += 1
    print(f"\nas configured ({lexicons.verify}, each phrase's bias=): right / wrong / unsure of the checks")
    for phrase, (right, wrong, unsure, n) in sorted(counts.items(), key=lambda kv: -kv[1][3]):
        print(f"{phrase:>8} {right:>5} {wrong:>5} {unsure:>5}   (bias {bias.get(match_key(phrase))})")
    total = [sum(v[i] for v in counts.values()) for i in range(4)]
    print(f"{'all':>8} {total[0]:>5} {total[1]:>5} {total[2]:>5}   of {total[3]}")
    if args.show:
        for check in sorted(checks, key=lambda c: (c["phrase"], c["said"])):
            verdict = decide(check_of(check), VerifyOptions(low=-1e9, high=1e9, prior_weight=0.0))
            print(f"{check['corpus']} {check['call_id']} said={check['said']!s:5} {check['phrase']} heard {check['heard']}: "
                  f"{verdict.describe() if verdict else '-'} | {check['text'][:30]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

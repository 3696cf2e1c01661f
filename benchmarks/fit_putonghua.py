"""Fit the "heard as Putonghua" score (lexicons/putonghua.toml) on labelled utterances.

Usage:
    python benchmarks/fit_putonghua.py --csv SIGNALS.csv [--csv MORE.csv] \\
        --putonghua mandarin_tel,demo --not foreign_tel,dialect_tel [--out lexicons/putonghua.toml]

The CSV files are written by ``benchmarks/putonghua_benchmark.py --csv`` (one row per agent utterance:
set, recording, times, text and every signal). Each set is labelled Putonghua or not by the two
options; rows of other sets are ignored. The model is a logistic regression on standardised signals
(missing values at the mean), fitted by Newton's method with an L2 penalty, each class weighted to the
same total (there are far more Putonghua utterances than others) and each recording to the same total
within its class (a long recording does not outvote a short one). Utterances with fewer than
``--min-chars`` letters are left out, as the rule leaves them out.

Printed: the weights, and out-of-fold results of a 5-fold cross-validation grouped by recording (no
recording is in the fold that scores it): per set, the share of utterances and of recordings heard as
not Putonghua at each threshold. The threshold written is the highest whose out-of-fold share of
Putonghua utterances heard as not Putonghua is at most ``--max-false`` (default 0.01), so that with the
rule's minimum duration a Putonghua call almost never fails.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

DEFAULT_FEATURES = ("avg_logprob", "no_speech_prob", "word_prob_mean", "word_prob_min", "coverage",
                    "lm_per_char", "compression_ratio", "latin_share", "chars_per_s")


def read_rows(paths: list[Path], positive: set[str], negative: set[str], min_chars: int) -> list[dict]:
    rows = []
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["set"] not in positive | negative:
                    continue
                if sum(ch.isalnum() for ch in row["text"]) < min_chars:
                    continue
                row["label"] = 1 if row["set"] in positive else 0
                rows.append(row)
    return rows


def matrix(rows: list[dict], features: list[str]) -> np.ndarray:
    def number(value: str) -> float:
        return float(value) if value not in ("", "None", "nan") else math.nan

    return np.array([[number(r[f]) for f in features] for r in rows], dtype=float)


def sample_weights(rows: list[dict]) -> np.ndarray:
    """Each class the same total weight; within a class, each recording the same total."""
    weights = np.zeros(len(rows))
    for label in (0, 1):
        members = [i for i, r in enumerate(rows) if r["label"] == label]
        recordings: dict[tuple[str, str], list[int]] = {}
        for i in members:
            recordings.setdefault((rows[i]["set"], rows[i]["recording"]), []).append(i)
        for indices in recordings.values():
            weights[indices] = 1.0 / (len(recordings) * len(indices))
    return weights / weights.mean()


def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Standardise (NaN at the mean), then weighted, L2-penalised logistic regression by Newton's method.
    Returns mean, scale, weights, intercept."""
    mean = np.nanmean(x, axis=0)
    scale = np.nanstd(x, axis=0)
    scale[scale == 0] = 1.0
    z = np.nan_to_num((x - mean) / scale)
    design = np.hstack([np.ones((len(z), 1)), z])
    beta = np.zeros(design.shape[1])
    penalty = np.diag([0.0] + [l2] * z.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(design @ beta, -50, 50)))
        gradient = design.T @ (w * (y - p)) - penalty @ beta
        hessian = design.T @ (design * (w * p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return mean, scale, beta[1:], float(beta[0])


def predict(x: np.ndarray, mean, scale, weights, intercept) -> np.ndarray:
    z = np.nan_to_num((x - mean) / scale)
    return 1 / (1 + np.exp(-np.clip(intercept + z @ weights, -50, 50)))


def out_of_fold(rows, x, y, w, l2, folds=5) -> np.ndarray:
    recordings = sorted({(r["set"], r["recording"]) for r in rows})
    order = np.random.default_rng(0).permutation(len(recordings))
    fold_of = {recordings[i]: k % folds for k, i in enumerate(order)}
    fold = np.array([fold_of[(r["set"], r["recording"])] for r in rows])
    p = np.zeros(len(rows))
    for k in range(folds):
        test = fold == k
        if not test.any():
            continue
        p[test] = predict(x[test], *fit(x[~test], y[~test], w[~test], l2))
    return p


def write_toml(path: Path, features, mean, scale, weights, intercept, threshold, min_chars, summary: list[str]):
    lines = ['# "Heard as Putonghua": the score the rule dialect.putonghua reads (rules.toml: score_file).',
             "# A logistic regression on the signals of pipeline/rules/putonghua.py, each standardised",
             "# ((value - mean) / scale; a missing value counts as the mean): p = 1 / (1 + exp(-(intercept +",
             "# sum of weight * standardised value))) is the probability that an utterance is Putonghua.",
             "# Written by benchmarks/fit_putonghua.py; edit only to refit (docs/putonghua.md).", "#",
             *[f"# {line}" for line in summary], "",
             "[score]",
             f"threshold = {threshold:.3f}   # below this probability an utterance is not Putonghua",
             f"min_chars = {min_chars}   # utterances with fewer letters are not scored (嗯, 好的)",
             f"intercept = {intercept:.6f}", "", "[score.weights]"]
    lines += [f"{f} = {v:.6f}" for f, v in zip(features, weights)]
    lines += ["", "[score.mean]"] + [f"{f} = {v:.6f}" for f, v in zip(features, mean)]
    lines += ["", "[score.scale]"] + [f"{f} = {v:.6f}" for f, v in zip(features, scale)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, action="append", required=True)
    parser.add_argument("--putonghua", required=True, help="comma-separated sets that are Putonghua")
    parser.add_argument("--not", dest="negative", required=True, help="comma-separated sets that are not")
    parser.add_argument("--features", default=",".join(DEFAULT_FEATURES))
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--min-chars", type=int, default=4)
    parser.add_argument("--max-false", type=float, default=0.01)
    parser.add_argument("--out", type=Path, help="write the score file here (lexicons/putonghua.toml)")
    args = parser.parse_args()
    positive, negative = set(args.putonghua.split(",")), set(args.negative.split(","))
    features = args.features.split(",")
    rows = read_rows(args.csv, positive, negative, args.min_chars)
    x, y = matrix(rows, features), np.array([r["label"] for r in rows], dtype=float)
    w = sample_weights(rows)
    mean, scale, weights, intercept = fit(x, y, w, args.l2)
    oof = out_of_fold(rows, x, y, w, args.l2)

    console = Console(width=200)
    table = Table(title="weights (standardised signals; positive: more Putonghua)")
    for column in ("signal", "weight", "mean", "scale"):
        table.add_column(column, justify="right")
    for f, wt, m, s in sorted(zip(features, weights, mean, scale), key=lambda t: -abs(t[1])):
        table.add_row(f, f"{wt:+.3f}", f"{m:.3f}", f"{s:.3f}")
    table.add_row("intercept", f"{intercept:+.3f}", "", "")
    console.print(table)

    candidates = np.round(np.arange(0.05, 0.96, 0.05), 2)
    putonghua = y == 1
    allowed = [t for t in candidates if (oof[putonghua] < t).mean() <= args.max_false]
    threshold = float(max(allowed)) if allowed else float(candidates[0])
    sets = sorted({r["set"] for r in rows}, key=lambda s: (s not in positive, s))
    table = Table(title=f"out of fold (5 folds by recording): share heard as not Putonghua; chosen threshold {threshold:.2f}")
    table.add_column("set")
    table.add_column("label")
    table.add_column("recordings", justify="right")
    table.add_column("utterances", justify="right")
    shown = sorted({0.3, 0.5, threshold, 0.7})
    for t in shown:
        table.add_column(f"utt. < {t:.2f}", justify="right")
        table.add_column(f"rec. any < {t:.2f}", justify="right")
    summary = [f"fitted {date.today().isoformat()} on {len(rows)} utterances ({int(y.sum())} Putonghua) of "
               f"{len({(r['set'], r['recording']) for r in rows})} recordings; threshold {threshold:.2f}: out of fold,"]
    for name in sets:
        mine = np.array([r["set"] == name for r in rows])
        recs = sorted({r["recording"] for r in rows if r["set"] == name})
        cells = []
        for t in shown:
            flagged = {r["recording"] for r, p in zip(rows, oof) if r["set"] == name and p < t}
            cells += [f"{(oof[mine] < t).mean():.3f}", f"{len(flagged)}/{len(recs)}"]
        table.add_row(name, "Putonghua" if name in positive else "not", str(len(recs)), str(int(mine.sum())), *cells)
        flagged = {r["recording"] for r, p in zip(rows, oof) if r["set"] == name and p < threshold}
        summary.append(f"  {name} ({'Putonghua' if name in positive else 'not Putonghua'}): "
                       f"{(oof[mine] < threshold).mean():.3f} of {int(mine.sum())} utterances and "
                       f"{len(flagged)} of {len(recs)} recordings heard as not Putonghua")
    console.print(table)
    if args.out:
        write_toml(args.out, features, mean, scale, weights, intercept, threshold, args.min_chars, summary)
        console.print(f"score file: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The "heard as Putonghua" score as data: a logistic model over the signals of
:mod:`pipeline.rules.putonghua`, read from a small TOML file in the lexicon folder
(``lexicons/putonghua.toml``, written by ``benchmarks/fit_putonghua.py``) and checked when the
lexicons load, so a bad file is an error naming it, and a changed file is a new lexicon version.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

FEATURES = ("avg_logprob", "no_speech_prob", "word_prob_mean", "word_prob_min", "coverage", "lm_per_char",
            "compression_ratio", "latin_share", "chars_per_s")


@dataclass(frozen=True)
class PutonghuaScore:
    """A calibrated "heard as Putonghua" score: logistic regression on standardised signals.

    ``p = 1 / (1 + exp(-(intercept + sum(weight[f] * (x[f] - mean[f]) / scale[f]))))`` is the
    probability that an utterance is Putonghua; a missing signal counts as its mean (no evidence
    either way). Utterances with fewer than ``min_chars`` letters are not scored (嗯, 好的: too little
    to judge); one below ``threshold`` is not Putonghua.
    """

    weights: dict[str, float]
    mean: dict[str, float]
    scale: dict[str, float]
    intercept: float
    threshold: float = 0.5
    min_chars: int = 4
    source: str = ""

    def probability(self, features: dict[str, float | None]) -> tuple[float, dict[str, float]]:
        """The probability of Putonghua and each signal's contribution to its log-odds."""
        contributions = {}
        for name, weight in self.weights.items():
            value = features.get(name)
            contributions[name] = 0.0 if value is None else weight * (value - self.mean[name]) / self.scale[name]
        logit = self.intercept + sum(contributions.values())
        return 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0))), contributions

    def scorable(self, text: str) -> bool:
        return sum(ch.isalnum() for ch in text) >= self.min_chars


def load_score(path: Path) -> PutonghuaScore:
    """Read and check a score file (``lexicons/putonghua.toml``).

    Raises:
        ValueError: naming the file and what is wrong with it (missing, not TOML, not a valid model).
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{Path(path).name}: cannot read the score file: {exc}") from exc
    score = data.get("score")
    name = Path(path).name
    if not isinstance(score, dict):
        raise ValueError(f"{name}: no [score] table")
    problems = []
    tables = {key: score.get(key) for key in ("weights", "mean", "scale")}
    for key, table in tables.items():
        if not isinstance(table, dict) or not table:
            problems.append(f"[score.{key}] is missing or empty")
    if problems:
        raise ValueError(f"{name}: " + "; ".join(problems))
    weights = tables["weights"]
    for feature in weights:
        if feature not in FEATURES:
            problems.append(f"unknown signal {feature!r} (known: {', '.join(FEATURES)})")
        for key in ("weights", "mean", "scale"):
            value = tables[key].get(feature)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                problems.append(f"[score.{key}] {feature} must be a number")
            elif key == "scale" and value <= 0:
                problems.append(f"[score.scale] {feature} must be positive")
    intercept, threshold, min_chars = score.get("intercept"), score.get("threshold", 0.5), score.get("min_chars", 4)
    if not isinstance(intercept, (int, float)) or isinstance(intercept, bool):
        problems.append("intercept must be a number")
    if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        problems.append("threshold must be between 0 and 1")
    if not isinstance(min_chars, int) or isinstance(min_chars, bool) or min_chars < 1:
        problems.append("min_chars must be a positive integer")
    if problems:
        raise ValueError(f"{name}: " + "; ".join(problems))
    return PutonghuaScore({k: float(v) for k, v in weights.items()},
                          {k: float(tables["mean"][k]) for k in weights}, {k: float(tables["scale"][k]) for k in weights},
                          float(intercept), float(threshold), min_chars, name)

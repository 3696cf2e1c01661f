"""How a phrase verdict follows the audio: stored checks of "was this phrase said here?" and their decision.

A night that has the audio asks the speech model, for every phrase finding a verdict rests on (and for a
phrase a rule expected but did not find, where a sound-alike stands), how likely the phrase is against
its rivals (你好 for 您好, 为 for 喂, 收获 for 稍候, 新疆 for 请讲...) on that stretch of the utterance's
audio (:mod:`pipeline.verify`). The answer is stored with the utterance (``utterances.checks``: the
options scored, their log-probabilities on the audio and on silence) and decided here, from the stored
numbers alone, so that ``callqa rescore`` decides again without audio when ``rules.toml [verify]``
changes.

The decision: each rival's score is how much likelier the model found its character than the phrase's
where the two part, on the audio, less ``prior_weight`` times the same on silence (what the decoder's
language model expects with nothing heard); the margin is minus the best rival's score, plus the
phrase's ``bias`` from the lexicon (how much the model's language model under-rates the phrase where it
is said: Whisper base finds 新疆 likelier than 请讲 after a company name whatever is said, measured).
At ``high`` or more the phrase was said (``said``); at ``low`` or less it was not, the rival was
(``not_said``); in between a person should listen (``unsure``: the rule says ``review``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import PhraseCheck

SAID, NOT_SAID, UNSURE = "said", "not_said", "unsure"


@dataclass(frozen=True)
class VerifyOptions:
    """``rules.toml [verify]``: how a stored check decides (measured defaults: docs/rules-and-scoring.md).

    Attributes:
        enabled: decide phrase findings by their checks; ``false`` judges the transcript alone, as
            before checks existed (checks stay stored, and count again when turned back on).
        low: a margin at or below this: the phrase was not said (its rival was).
        high: a margin at or above this: the phrase was said; between ``low`` and ``high`` the rule
            says ``review`` (no points taken, a person listens).
        prior_weight: how much of each option's score on silence (the language model's prior, stored
            when ``callqa.toml [verify] priors`` is on) is taken off its score on the audio (0: none).
        default_bias: the bias of a phrase whose lexicon line gives none: the margin a transcript's own
            reading needs against it before the audio overturns it (a long forbidden phrase Whisper wrote
            word for word is not undone by one particle heard as 呢).
    """

    enabled: bool = True
    low: float = -1.0
    high: float = 0.0
    prior_weight: float = 0.0
    default_bias: float = 5.0

    def validate(self) -> list[tuple[str, str]]:
        problems = []
        if self.low > self.high:
            problems.append(("low", "low must not be above high (between them is the review band)"))
        if not 0.0 <= self.prior_weight <= 1.0:
            problems.append(("prior_weight", "prior_weight must be between 0 and 1"))
        return problems


@dataclass(frozen=True)
class CheckVerdict:
    """What a check says of its phrase: ``said``, ``not_said`` or ``unsure``, by how much (the margin
    over the best rival, or the best rival's over the phrase when negative) and against which rival."""

    state: str
    margin: float
    rival: str
    phrase: str

    def describe(self) -> str:
        """In words, for evidence: 您好 over 你好 by 1.9; 你好 over 您好 by 2.3 (not 您好)."""
        if self.margin >= 0:
            text = f"{self.phrase} over {self.rival} by {self.margin:.1f}"
        else:
            text = f"{self.rival} over {self.phrase} by {-self.margin:.1f}"
        return text + {SAID: "", NOT_SAID: f" (not {self.phrase})", UNSURE: " (unsure)"}[self.state]


def decide(check: PhraseCheck, options: VerifyOptions, bias: float | None = 0.0) -> CheckVerdict | None:
    """The verdict of one stored check (a ``utterances.checks`` entry), its margin raised by the phrase's
    ``bias`` (the lexicon's ``bias=``; None: ``default_bias``); None when it compared nothing (no rival
    was scored)."""
    bias = options.default_bias if bias is None else bias
    names, logprobs, priors = list(check.options), list(check.logprobs), list(check.priors)
    if len(names) < 2 or len(logprobs) != len(names):
        return None
    priors = priors if len(priors) == len(names) else [0.0] * len(names)
    scores = [lp - options.prior_weight * pr for lp, pr in zip(logprobs, priors)]
    best = max(range(1, len(scores)), key=scores.__getitem__)
    margin = scores[0] - scores[best] + bias
    state = SAID if margin >= options.high else NOT_SAID if margin <= options.low else UNSURE
    return CheckVerdict(state, round(margin, 3), str(names[best]), str(names[0]))

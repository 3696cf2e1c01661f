"""Which voice of a mono recording is the agent's: from what each voice says, and who spoke first.

Agents open with the greeting, the company name and their 工号, offer help (请问有什么可以帮您, 为您),
ask the customer to wait (请稍候) and close (感谢您的来电); customers rarely say any of it. Each voice
scores the phrases of ``lexicons/roles.txt`` it said (matched on toneless pinyin with the sounds
telephone Whisper confuses folded, so 工好 counts as 工号), double in its first two utterances, plus a
little for speaking first after pickup; the confidence is the logistic of the two best voices'
difference. The phrases are editable like every lexicon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import LexiconError


FIRST_SPEAKER_WEIGHT = 0.5  # who speaks first after pickup: usually the agent, but not always


def read_role_cues(path: Path) -> list[tuple[float, str]]:
    """The agent's phrases (``lexicons/roles.txt``): (weight, phrase) per line.

    Raises:
        LexiconError: a line's weight is not a number.
    """
    cues = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        weight, _, phrase = line.partition(" ")
        if phrase and _is_number(weight):
            cues.append((float(weight), phrase.strip()))
        elif phrase:
            raise LexiconError(f"{path}:{number}: expected 'weight phrase' or a phrase, not {line!r}")
        else:
            cues.append((1.0, weight))
    return cues


def role_cues(lexicons: str | Path) -> list[tuple[float, str]]:
    """The agent's phrases in a lexicons folder (its ``roles.txt``; none without one: the voices are then
    told apart by who spoke first alone, with a low confidence).

    Raises:
        LexiconError: a line of it is not ``weight phrase`` or a phrase.
    """
    path = Path(lexicons) / "roles.txt"
    return read_role_cues(path) if path.is_file() else []


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _sounds(text: str) -> str:
    """Toneless pinyin with the sounds telephone Whisper confuses folded (in/ing, en/eng, z/zh, c/ch, s/sh)."""
    from pypinyin import lazy_pinyin

    from ..text import stored_key

    out = []
    for syllable in lazy_pinyin(stored_key(text)):
        for a, b in (("zh", "z"), ("ch", "c"), ("sh", "s"), ("ing", "in"), ("eng", "en")):
            syllable = syllable.replace(a, b)
        out.append(syllable)
    return " " + " ".join(out) + " "


@dataclass(frozen=True)
class RoleDecision:
    """Which voice is the agent's, how sure, and why (in words, for the call's warnings)."""

    agent: int | None
    confidence: float
    reason: str


def choose_agent(texts: dict[int, list[str]], first: int | None, cues: list[tuple[float, str]],
                 company: str) -> RoleDecision:
    """Pick the agent among a mono recording's voices from what each says, and who spoke first.

    Args:
        texts: each voice's utterances, in time order.
        first: the voice that spoke first.
        cues: (weight, phrase) the agent says (:func:`read_role_cues`).
        company: the call's company ({company} in a cue).

    Returns:
        The agent's voice, with a confidence between 0.5 (a coin toss) and 1: the logistic of the
        difference between the two best voices' scores.
    """
    if not texts:
        return RoleDecision(None, 0.0, "no speech")
    keys = [(w, _sounds(p.replace("{company}", company))) for w, p in cues if p.replace("{company}", company).strip()]
    scores, found = {}, {}
    for voice, utterances in texts.items():
        score, said = 0.0, []
        for i, text in enumerate(utterances):
            sounds = _sounds(text)
            for (weight, key), (_, phrase) in zip(keys, cues):
                if key.strip() and key in sounds:
                    score += weight * (2 if i < 2 else 1)
                    said.append(phrase.replace("{company}", company))
        if voice == first:
            score += FIRST_SPEAKER_WEIGHT
        scores[voice], found[voice] = score, said
    ranked = sorted(scores, key=lambda v: -scores[v])
    if len(ranked) == 1:
        return RoleDecision(ranked[0], 0.5, "one voice only")
    best, second = ranked[0], ranked[1]
    confidence = 1 / (1 + math.exp(-(scores[best] - scores[second])))
    said = "、".join(dict.fromkeys(found[best])) or "nothing an agent says"
    reason = (f"voice {best + 1} said {said} (score {scores[best]:g} against {scores[second]:g})"
              + ("; it spoke first" if best == first else ""))
    return RoleDecision(best, round(confidence, 3), reason)

"""Scorable or not: only a whole conversation with the agent in it gets a score.

A recording is transcribed whatever it holds, but a score on 30 s of silence, a dead agent line or half
a call says nothing about the agent, and would raise (or lower) their pass rate and rank. So before the
rules run, every call with a transcript is assessed from what is stored about it (its voice activity,
whether it was cut off) under the rubric's ``[score]`` policy: a call that cannot be scored becomes
``unscorable``, with the reason, and is counted apart everywhere, never in a mean, pass rate or rank.
A call whose customer channel is dead keeps its agent rules, with a warning saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import MIN_ROLE_CONFIDENCE, SPEAKER_AGENT, SPEAKER_CUSTOMER, SPEAKER_UNKNOWN, CallTranscript
from .rubric import ScoreOptions

# Less than this much voice on a stereo call's customer channel is a dead line, not a quiet customer.
DEAD_CHANNEL_S = 0.5
DEAD_CUSTOMER_WARNING = ("the customer's channel carries no speech (a dead line?): rules about the "
                         "customer's words do not apply")


@dataclass(frozen=True)
class Assessment:
    """Whether a call can be scored, why not, and what else a reader should know."""

    scorable: bool
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)


def speech_seconds(voice: list[tuple[str, float, float]], speakers: set[str]) -> float:
    """Seconds of voice activity of the given speakers."""
    return sum(end - start for who, start, end in voice if who in speakers)


def assess(call: CallTranscript, policy: ScoreOptions) -> Assessment:
    """Decide whether ``call`` can be scored.

    Args:
        call: its transcript (``truncated``, ``channels``, ``duration_s`` and its voice activity are read).
        policy: the rubric's ``[score]`` table.

    Returns:
        The assessment: unscorable with its reason, or scorable with any warnings.
    """
    voice = list(call.voice)
    speakers = {who for who, _, _ in voice}
    stereo = call.channels == 2 and bool(speakers & {SPEAKER_AGENT, SPEAKER_CUSTOMER})
    roles = stereo or SPEAKER_AGENT in speakers
    agent_s = speech_seconds(voice, {SPEAKER_AGENT}) if roles else speech_seconds(voice, speakers)
    duration = call.duration_s or 0.0
    if call.truncated and not policy.score_truncated:
        return Assessment(False, f"the recording is cut off after {duration:.1f} s (decoding stopped early, or the "
                                 "file holds less audio than its header declares): the rest of the "
                                 "conversation is missing, so it is not scored ([score] score_truncated)")
    if agent_s < policy.min_agent_speech_s:
        where = "on the agent's channel" if stereo else ("in the agent's voice" if roles else "in the recording")
        return Assessment(False, f"{agent_s:.1f} s of speech {where} in {duration:.1f} s of audio; a call needs "
                                 f"{policy.min_agent_speech_s:g} s of agent speech to be scored "
                                 "([score] min_agent_speech_s)")
    if speakers and speakers <= {SPEAKER_UNKNOWN}:
        return Assessment(False, "mono recording whose voices were not split (the speaker model is not installed, "
                                 "or [diarisation] enabled = false): the agent's words cannot be told from the "
                                 "customer's, so it is not scored")
    confidence = call.roles_confidence
    if not stereo and confidence is not None and confidence < MIN_ROLE_CONFIDENCE:
        return Assessment(False, f"mono recording: which voice is the agent's was found with confidence "
                                 f"{confidence:.2f} (below {MIN_ROLE_CONFIDENCE:g}), so it is not scored; "
                                 "its rules about one role are not applicable")
    warnings = []
    if stereo and speech_seconds(voice, {SPEAKER_CUSTOMER}) < DEAD_CHANNEL_S:
        warnings.append(DEAD_CUSTOMER_WARNING)
    return Assessment(True, None, warnings)

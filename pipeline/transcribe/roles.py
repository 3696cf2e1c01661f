"""Who speaks on which channel: the agent's channel and the customer's, from the manifest or defaults.

Stereo recordings carry the agent and the customer on separate channels (``agent_channel`` says which
is the agent's); a mono recording, a stereo file declared mono, or a stereo file whose two channels
carry the same signal is one channel of speaker ``unknown``, with a warning where the file and the
manifest disagree. The decision is made from the header (:func:`assign_roles`) and applied to each
piece of audio as it is decoded (:func:`rows_of`), so that a long recording never has to be whole in
memory; whether the two channels are one signal is known once every piece has been seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..records import SPEAKER_AGENT, SPEAKER_CUSTOMER, SPEAKER_UNKNOWN, Recording

# Stereo files whose two channels differ by less than this are one signal copied twice.
DUPLICATE_CHANNEL_TOLERANCE = 1e-4
SAME_SIGNAL_WARNING = "both channels carry the same signal: treated as mono, speakers unknown"


@dataclass(frozen=True)
class Roles:
    """How a recording's channels become the rows to transcribe.

    Attributes:
        speakers: the speaker of each row (``agent``, ``customer``; ``unknown`` for one mono row).
        mix: a stereo file declared mono: its two channels are mixed into one row.
        swap: the agent is on the right: the rows are swapped so that row 0 is the agent's.
        warnings: where the file and the manifest disagree.
    """

    speakers: list[str]
    mix: bool = False
    swap: bool = False
    warnings: list[str] = field(default_factory=list)


def assign_roles(recording: Recording, channels: int) -> Roles:
    """Decide which channel is whose, from the declared ``agent_channel`` and the file's channel count."""
    if channels == 2:
        if recording.agent_channel == "mono":
            return Roles([SPEAKER_UNKNOWN], mix=True, warnings=[
                "agent_channel is mono but the file is stereo: channels mixed, speakers unknown"])
        return Roles([SPEAKER_AGENT, SPEAKER_CUSTOMER], swap=recording.agent_channel == "right")
    warnings = [] if recording.agent_channel == "mono" else [
        f"agent_channel is {recording.agent_channel} but the file is mono: speakers unknown"]
    return Roles([SPEAKER_UNKNOWN], warnings=warnings)


def rows_of(piece: np.ndarray, roles: Roles) -> np.ndarray:
    """A piece of decoded audio, shape (channels, n), as the rows to transcribe."""
    if roles.mix:
        return piece.mean(axis=0, keepdims=True)
    if roles.swap:
        return piece[::-1].copy()
    return piece


def channel_difference(piece: np.ndarray) -> float:
    """The largest difference between a stereo piece's two channels (0 for mono)."""
    return float(np.max(np.abs(piece[0] - piece[1]))) if piece.shape[0] == 2 and piece.size else 0.0


def one_signal(roles: Roles, max_difference: float) -> bool:
    """Whether a stereo recording's two channels turned out to carry the same signal."""
    return len(roles.speakers) == 2 and max_difference < DUPLICATE_CHANNEL_TOLERANCE


def channel_roles(recording: Recording, decoded_channels: int,
                  channels_data: np.ndarray) -> tuple[np.ndarray, list[str], list[str]]:
    """Decide which channel is whose, for a whole decoded recording.

    Returns:
        The audio rows to transcribe, the speaker of each row, and warnings about the decision.
    """
    roles = assign_roles(recording, decoded_channels)
    if one_signal(roles, channel_difference(channels_data)):
        return channels_data[:1], [SPEAKER_UNKNOWN], [SAME_SIGNAL_WARNING]
    return rows_of(channels_data, roles), list(roles.speakers), list(roles.warnings)


"""Who speaks on which channel: the agent's channel and the customer's, from the manifest or defaults.

Stereo recordings carry the agent and the customer on separate channels (``agent_channel`` says which
is the agent's); a mono recording, a stereo file declared mono, or a stereo file whose two channels
carry the same signal is one channel of speaker ``unknown``, with a warning where the file and the
manifest disagree.
"""

from __future__ import annotations

import numpy as np

from ..records import SPEAKER_AGENT, SPEAKER_CUSTOMER, SPEAKER_UNKNOWN, Recording

# Stereo files whose two channels differ by less than this are one signal copied twice.
DUPLICATE_CHANNEL_TOLERANCE = 1e-4


def channel_roles(recording: Recording, decoded_channels: int,
                  channels_data: np.ndarray) -> tuple[np.ndarray, list[str], list[str]]:
    """Decide which channel is whose.

    Args:
        recording: the recording and its declared ``agent_channel``.
        decoded_channels: the file's channel count.
        channels_data: its audio, shape (channels, samples).

    Returns:
        The audio rows to transcribe, the speaker of each row, and warnings about the decision.
    """
    warnings: list[str] = []
    if decoded_channels == 2:
        if recording.agent_channel == "mono":
            warnings.append("agent_channel is mono but the file is stereo: channels mixed, speakers unknown")
            return channels_data.mean(axis=0, keepdims=True), [SPEAKER_UNKNOWN], warnings
        if np.max(np.abs(channels_data[0] - channels_data[1])) < DUPLICATE_CHANNEL_TOLERANCE:
            warnings.append("both channels carry the same signal: treated as mono, speakers unknown")
            return channels_data[:1], [SPEAKER_UNKNOWN], warnings
        if recording.agent_channel == "right":
            return channels_data[::-1].copy(), [SPEAKER_AGENT, SPEAKER_CUSTOMER], warnings
        return channels_data, [SPEAKER_AGENT, SPEAKER_CUSTOMER], warnings
    if recording.agent_channel != "mono":
        warnings.append(f"agent_channel is {recording.agent_channel} but the file is mono: speakers unknown")
    return channels_data, [SPEAKER_UNKNOWN], warnings

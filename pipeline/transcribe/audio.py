"""Audio: decode any common format, resample to 16 kHz, split channels, find voice activity.

Decoding goes through PyAV (FFmpeg bundled in its wheels), so WAV (PCM, µ-law, A-law), MP3, FLAC,
OGG/Opus, M4A/AAC and the rest need no system packages. Voice activity comes from the Silero model
that faster-whisper ships (an ONNX file inside the package): holds and silences are measured on each
channel's voice activity, never on Whisper's segments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import VoiceActivityOptions
from ..errors import AudioDecodeError, UnsupportedAudioError

logger = logging.getLogger("callqa.audio")

TARGET_RATE = 16000  # what Whisper and Silero expect


@dataclass(frozen=True)
class DecodedAudio:
    """A recording decoded to float32 at 16 kHz.

    Attributes:
        channels_data: shape (channels, samples), values in [-1, 1].
        sample_rate: the file's own sample rate (before resampling).
        channels: the file's channel count (1 or 2).
        codec: the codec name FFmpeg reported (e.g. ``pcm_mulaw``, ``mp3``).
        truncated: decoding stopped early on corrupt data, or the file holds less audio than its
            header declares; the audio that decodes is kept.
    """

    channels_data: np.ndarray
    sample_rate: int
    channels: int
    codec: str
    truncated: bool = False

    @property
    def duration_s(self) -> float:
        return self.channels_data.shape[1] / TARGET_RATE


def decode_audio(path: str | Path) -> DecodedAudio:
    """Decode a recording to 16 kHz float32, one row per channel.

    Args:
        path: the audio file.

    Returns:
        The decoded audio with the file's original rate, channel count and codec.

    Raises:
        AudioDecodeError: the file cannot be opened, holds no audio stream, or no audio decodes.
        UnsupportedAudioError: the file has more than two channels.
    """
    import av  # imported here so that modules importing audio stay light

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioDecodeError(f"{path.name}: cannot open as audio: {exc.strerror or exc}") from exc
    if size == 0:
        raise AudioDecodeError(f"{path.name}: the file is empty (0 bytes): the recording was not copied, or not "
                               "finished when the night began")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AudioDecodeError(f"{path.name}: cannot open as audio, not a format FFmpeg recognises ({reason}; "
                               f"{size} bytes)") from exc
    with container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise AudioDecodeError(f"{path.name}: the file has no audio stream")
        ctx = stream.codec_context
        channels = ctx.layout.nb_channels if ctx.layout else ctx.channels
        sample_rate = ctx.sample_rate
        codec = ctx.name
        declared_s = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                      else (container.duration / 1e6 if container.duration else None))
        if not channels or not sample_rate:
            raise AudioDecodeError(f"{path.name}: not audio: FFmpeg read it as {codec or 'an unknown codec'} with "
                                   f"{channels or 0} channels at {sample_rate or 0} Hz (random or damaged bytes?)")
        if channels not in (1, 2):
            raise UnsupportedAudioError(
                f"{path.name}: {channels} channels; callqa handles mono or stereo (agent and customer) "
                "recordings; split or down-mix this file first")
        resampler = av.AudioResampler(format="fltp", layout="mono" if channels == 1 else "stereo",
                                      rate=TARGET_RATE)
        chunks: list[np.ndarray] = []
        truncated = False
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler follow sample counts, not broken timestamps
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except (av.error.FFmpegError, ValueError) as exc:
            if not chunks:
                raise AudioDecodeError(f"{path.name}: corrupt audio, nothing decodes: {exc}") from exc
            truncated = True
            logger.warning("%s: decoding stopped early (%s); keeping the audio before it", path.name, exc)
    if not chunks:
        raise AudioDecodeError(f"{path.name}: the audio stream is empty")
    data = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
    if data.shape[1] == 0:
        raise AudioDecodeError(f"{path.name}: the audio stream is empty")
    if declared_s and data.shape[1] / TARGET_RATE < declared_s - max(0.5, 0.02 * declared_s):
        truncated = True
        logger.warning("%s: the container declares %.1f s but only %.1f s decode", path.name, declared_s,
                       data.shape[1] / TARGET_RATE)
    if _wav_data_missing(path):
        truncated = True
        logger.warning("%s: the WAV header promises more audio than the file holds", path.name)
    return DecodedAudio(channels_data=data, sample_rate=int(sample_rate or 0), channels=channels,
                        codec=codec, truncated=truncated)


def probe_duration(path: str | Path) -> float | None:
    """The duration a recording's header declares, in seconds, without decoding it; None when the
    file cannot be opened or declares none (decoding it later reports why)."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is not None and stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            return container.duration / 1e6 if container.duration else None
    except Exception:
        return None


def _wav_data_missing(path: Path) -> bool:
    """True when a RIFF/WAVE file's data chunk is shorter than its header says (a cut-off recording).

    FFmpeg estimates a WAV's duration from the file size, so it cannot tell; the header can.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(12)[8:12] != b"WAVE":
                return False
            size = path.stat().st_size
            while header := fh.read(8):
                if len(header) < 8:
                    return False
                chunk_id, chunk_size = header[:4], int.from_bytes(header[4:], "little")
                if chunk_id == b"data":
                    # 0 and 0xFFFFFFFF mean "unknown length" (streamed recorders), not truncation
                    return chunk_size not in (0, 0xFFFFFFFF) and fh.tell() + chunk_size > size
                fh.seek(chunk_size + (chunk_size & 1), 1)
    except OSError:
        return False
    return False


def detect_speech(samples: np.ndarray, options: VoiceActivityOptions) -> list[tuple[float, float]]:
    """Find the stretches of speech in one channel.

    Args:
        samples: mono float32 audio at 16 kHz.
        options: detector thresholds.

    Returns:
        ``(start_s, end_s)`` pairs in time order, not overlapping.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    if samples.size == 0:
        return []
    vad = VadOptions(threshold=options.threshold, min_speech_duration_ms=options.min_speech_ms,
                     min_silence_duration_ms=options.min_silence_ms, speech_pad_ms=options.speech_pad_ms)
    regions = get_speech_timestamps(samples, vad, sampling_rate=TARGET_RATE)
    spans: list[tuple[float, float]] = []
    for region in regions:
        start, end = region["start"] / TARGET_RATE, region["end"] / TARGET_RATE
        if spans and start <= spans[-1][1]:  # padding can make neighbours touch
            spans[-1] = (spans[-1][0], max(spans[-1][1], end))
        else:
            spans.append((start, end))
    return spans

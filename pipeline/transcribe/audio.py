"""Audio: decode any common format, resample to 16 kHz, split channels, find voice activity; whole, or
piece by piece for long recordings (so that memory does not grow with their length).

Decoding goes through PyAV (FFmpeg bundled in its wheels), so WAV (PCM, µ-law, A-law), MP3, FLAC,
OGG/Opus, M4A/AAC and the rest need no system packages. Voice activity comes from the Silero model
that faster-whisper ships (an ONNX file inside the package): holds and silences are measured on each
channel's voice activity, never on Whisper's segments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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


class AudioStream:
    """A recording opened for decoding to 16 kHz float32, whole or piece by piece.

    Opening reads the header (and refuses what cannot be processed); :meth:`pieces` then decodes the
    audio in pieces of a given length, so that memory does not grow with the recording's length, and
    may be called again (a second pass decodes the same samples). After a full pass, ``samples`` is
    the number of samples per channel that decoded and ``truncated`` says whether the file stopped
    short (corrupt data, or less audio than its header declares).

    Raises (on opening):
        AudioDecodeError: the file is empty, cannot be opened, holds no audio stream, or is not audio.
        UnsupportedAudioError: the file has more than two channels.
    """

    def __init__(self, path: str | Path):
        import av  # imported here so that modules importing audio stay light

        self.path = Path(path)
        name = self.path.name
        try:
            size = self.path.stat().st_size
        except OSError as exc:
            raise AudioDecodeError(f"{name}: cannot open as audio: {exc.strerror or exc}") from exc
        if size == 0:
            raise AudioDecodeError(f"{name}: the file is empty (0 bytes): the recording was not copied, or not "
                                   "finished when the night began")
        try:
            container = av.open(str(self.path), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise AudioDecodeError(f"{name}: cannot open as audio, not a format FFmpeg recognises ({reason}; "
                                   f"{size} bytes)") from exc
        with container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioDecodeError(f"{name}: the file has no audio stream")
            ctx = stream.codec_context
            self.channels = ctx.layout.nb_channels if ctx.layout else ctx.channels
            self.sample_rate = int(ctx.sample_rate or 0)
            self.codec = ctx.name
            self.declared_s = _declared_s(container, stream)
        if not self.channels or not self.sample_rate:
            raise AudioDecodeError(f"{name}: not audio: FFmpeg read it as {self.codec or 'an unknown codec'} with "
                                   f"{self.channels or 0} channels at {self.sample_rate or 0} Hz (random or damaged "
                                   "bytes?)")
        if self.channels not in (1, 2):
            raise UnsupportedAudioError(
                f"{name}: {self.channels} channels; callqa handles mono or stereo (agent and customer) "
                "recordings; split or down-mix this file first")
        self.samples = 0
        self.truncated = False

    def pieces(self, piece_s: float | None = None) -> Iterator[np.ndarray]:
        """The audio, shape (channels, n) float32 at 16 kHz, in pieces of ``piece_s`` seconds (the
        last one shorter; None: one piece, the whole recording).

        Raises:
            AudioDecodeError: nothing decodes at all, or the audio stream is empty.
        """
        import av

        name = self.path.name
        piece = int(piece_s * TARGET_RATE) if piece_s else None
        resampler = av.AudioResampler(format="fltp", layout="mono" if self.channels == 1 else "stereo",
                                      rate=TARGET_RATE)
        chunks: list[np.ndarray] = []
        held = 0  # samples in chunks
        self.samples, self.truncated = 0, False

        def take(count: int) -> np.ndarray:
            nonlocal chunks, held
            data = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
            out, rest = data[:, :count], data[:, count:]
            chunks, held = ([rest] if rest.shape[1] else []), rest.shape[1]
            self.samples += out.shape[1]
            return out

        with av.open(str(self.path), metadata_errors="ignore") as container:
            stream = next(s for s in container.streams if s.type == "audio")
            frames = _frames(container, stream)
            while True:
                try:
                    frame = next(frames, None)
                    outs = resampler.resample(frame) if frame is not None else resampler.resample(None)
                except (av.error.FFmpegError, ValueError) as exc:
                    if not self.samples and not held:
                        raise AudioDecodeError(f"{name}: corrupt audio, nothing decodes: {exc}") from exc
                    self.truncated = True
                    logger.warning("%s: decoding stopped early (%s); keeping the audio before it", name, exc)
                    break
                if frame is not None:
                    frame.pts = None  # let the resampler follow sample counts, not broken timestamps
                for out in outs:
                    chunks.append(out.to_ndarray())
                    held += chunks[-1].shape[1]
                while piece and held >= piece:
                    yield take(piece)
                if frame is None:
                    break
        if held:
            yield take(held)
        if not self.samples:
            raise AudioDecodeError(f"{name}: the audio stream is empty")
        decoded_s = self.samples / TARGET_RATE
        if self.declared_s and decoded_s < self.declared_s - max(0.5, 0.02 * self.declared_s):
            self.truncated = True
            logger.warning("%s: the container declares %.1f s but only %.1f s decode", name, self.declared_s, decoded_s)
        if _wav_data_missing(self.path):
            self.truncated = True
            logger.warning("%s: the WAV header promises more audio than the file holds", name)


# Formats whose container holds no length: FFmpeg estimates one from the bitrate (a raw .amr file of
# 24.96 s "declares" 25.8 s; with silence frames, DTX, much more), which is no promise to check against
_NO_DECLARED_LENGTH = {"amr"}
# Decoders that read what FFmpeg's own cannot: its AMR-NB/WB decoder stops at the first silence
# descriptor frame of a recording with DTX ("not yet implemented"); opencore's decodes them
_DECODERS = {"amrnb": "libopencore_amrnb", "amrwb": "libopencore_amrwb"}


def _declared_s(container, stream) -> float | None:
    """The length a recording's container declares, in seconds; None where it declares none."""
    if container.format.name in _NO_DECLARED_LENGTH:
        return None
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / 1e6 if container.duration else None


def _frames(container, stream) -> Iterator:
    """The stream's decoded frames, by the better decoder where FFmpeg has one (:data:`_DECODERS`)."""
    import av

    name = _DECODERS.get(stream.codec_context.name)
    if name is None or name not in av.codecs_available:
        yield from container.decode(stream)
        return
    decoder = av.CodecContext.create(name, "r")
    decoder.sample_rate = stream.codec_context.sample_rate
    for packet in container.demux(stream):
        if packet.size:
            yield from decoder.decode(packet)
    yield from decoder.decode(None)


def decode_audio(path: str | Path) -> DecodedAudio:
    """Decode a whole recording to 16 kHz float32, one row per channel (see :class:`AudioStream` to
    decode a long one piece by piece).

    Args:
        path: the audio file.

    Returns:
        The decoded audio with the file's original rate, channel count and codec.

    Raises:
        AudioDecodeError: the file cannot be opened, holds no audio stream, or no audio decodes.
        UnsupportedAudioError: the file has more than two channels.
    """
    stream = AudioStream(path)
    (data,) = list(stream.pieces(None))
    return DecodedAudio(channels_data=data, sample_rate=stream.sample_rate, channels=stream.channels,
                        codec=stream.codec, truncated=stream.truncated)


def probe_duration(path: str | Path) -> float | None:
    """The duration a recording's header declares, in seconds, without decoding it; None when the
    file cannot be opened or declares none (decoding it later reports why)."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            return _declared_s(container, stream) if stream is not None else None
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

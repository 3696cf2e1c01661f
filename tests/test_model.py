"""Model resolution: the bundled model (assembled, checksum-verified), local directories, names."""

import shutil

import pytest

from pipeline.transcribe import model as asr
from pipeline.config import AsrOptions
from pipeline.errors import ModelChecksumError, ModelError


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CALLQA_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


@pytest.mark.model  # assembles the bundled model from its packages
def test_bundled_model_is_assembled_from_its_packages_and_verified(models_dir):
    resolved = asr.resolve_model("bundled")
    assert resolved.source == "bundled"
    assert resolved.location == str(models_dir / "whisper-base")
    assert resolved.model_id == "whisper-base@905e5bf8336b"
    from pipeline.storage.hashing import file_sha256

    assert file_sha256(models_dir / "whisper-base" / "model.bin") == asr.BUNDLED_MODEL_SHA256
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".")]  # no staging left behind


@pytest.mark.model  # assembles the bundled model from its packages
def test_corrupt_bundled_model_is_refused_with_a_way_out(models_dir):
    target = asr.install_bundled_model()
    with open(target / "model.bin", "r+b") as fh:  # flip one byte in the middle of the weights
        fh.seek(50_000_000)
        byte = fh.read(1)
        fh.seek(50_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelChecksumError, match="corrupt.*callqa model install --force"):
        asr.resolve_model("bundled")
    with pytest.raises(ModelChecksumError):
        asr.load_model(AsrOptions(model="bundled"))
    asr.install_bundled_model(force=True)  # the advertised repair works
    asr.verify_bundled_model(target)


@pytest.mark.model  # assembles the bundled model from its packages
def test_incomplete_bundled_model_is_refused(models_dir):
    target = asr.install_bundled_model()
    (target / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="tokenizer.json is missing"):
        asr.resolve_model("bundled")


@pytest.mark.model  # assembles the bundled model from its packages
def test_any_ctranslate2_directory_is_accepted(models_dir, tmp_path):
    source = asr.install_bundled_model()
    mine = tmp_path / "my-whisper"
    shutil.copytree(source, mine)
    resolved = asr.resolve_model(str(mine))
    assert (resolved.source, resolved.location) == ("path", str(mine.resolve()))
    assert resolved.model_id.startswith("my-whisper@")


def test_directory_without_model_files_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a CTranslate2 Whisper model: missing model.bin, config.json"):
        asr.resolve_model(str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="does not exist"):
        asr.resolve_model(str(tmp_path / "nowhere"))


def test_model_name_is_left_to_faster_whisper():
    resolved = asr.resolve_model("large-v3")
    assert (resolved.source, resolved.location) == ("name", "large-v3")


def test_model_is_loaded_once_per_process(model, config):
    again = asr.load_model(config.asr)
    assert again.whisper is model.whisper and again.batched is model.batched

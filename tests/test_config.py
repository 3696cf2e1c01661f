import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError


def test_defaults_are_valid():
    config = load_config()
    assert config.asr.model == "bundled"
    assert config.asr.compute_type == "int8"
    assert config.asr.language == "zh"
    assert config.input.agent_channel == "left"


def test_toml_file_sets_options(tmp_path):
    path = tmp_path / "callqa.toml"
    path.write_text('[asr]\nbeam_size = 5\nmodel = "/models/x"\n[input]\nagent_channel = "right"\n'
                    'company = "海尔斯科技"\n', encoding="utf-8")
    config = load_config(path)
    assert (config.asr.beam_size, config.asr.model) == (5, "/models/x")
    assert (config.input.agent_channel, config.input.company) == ("right", "海尔斯科技")


def test_environment_overrides_file(tmp_path, monkeypatch):
    path = tmp_path / "callqa.toml"
    path.write_text("[asr]\nbeam_size = 5\n", encoding="utf-8")
    monkeypatch.setenv("CALLQA_ASR_BEAM_SIZE", "2")
    assert load_config(path).asr.beam_size == 2


@pytest.mark.parametrize("text, message", [
    ("[asr]\nbeem_size = 5\n", "unknown option"),
    ("[asrr]\nbeam_size = 5\n", "unknown section"),
    ("[asr]\nbeam_size = 'five'\n", "not a valid int"),
    ("[input]\nagent_channel = 'middle'\n", "agent_channel"),
    ("[input]\ntimezone = 'Mars/Olympus'\n", "timezone"),
    ("[asr]\nwindow_s = 45\n", "window_s"),
    ("[asr\n", "not valid TOML"),
])
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "callqa.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")

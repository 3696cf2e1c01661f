import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError


def test_defaults_are_valid():
    config = load_config()
    assert config.asr.model == "bundled"
    assert config.asr.compute_type == "int8"
    assert config.asr.language == "zh"
    assert config.input.agent_channel == "left"


def test_windows_decoded_together_default_to_one_on_a_cpu_and_eight_on_a_gpu(tmp_path):
    from dataclasses import replace

    asr = load_config().asr
    assert (asr.batch_size, asr.decode_batch) == (0, 1)  # one worker decodes on one core: batches cost more
    assert replace(asr, device="cuda").decode_batch == 8
    assert replace(asr, batch_size=4, device="cuda").decode_batch == 4  # a value set is kept


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
    ("[asr]\nbeem_size = 5\n", r"callqa.toml:2: \[asr\]: unknown option 'beem_size'; known: engine, model, "),
    ("[asrr]\nbeam_size = 5\n", r"callqa.toml:1: unknown section \[asrr\]"),
    ("[asr]\nbeam_size = 'five'\n", r"callqa.toml:2: \[asr\]: beam_size = 'five' is not a valid whole number"),
    ("[input]\ncompany = 'x'\nagent_channel = 'middle'\n",
     r"callqa.toml:3: \[input\]: agent_channel must be one of left, right, mono, not 'middle'"),
    ("[input]\ntimezone = 'Mars/Olympus'\n", r"callqa.toml:2: \[input\]: timezone 'Mars/Olympus' is not a known"),
    ("[asr]\nwindow_s = 45\n", r"callqa.toml:2: \[asr\]: window_s must be between 1 and 30"),
    ("[asr]\nbatch_size = -1\n", r"callqa.toml:2: \[asr\]: batch_size must be 0 \(automatic\) or more"),
    ("[asr]\nencode_min_s = 31\n", r"callqa.toml:2: \[asr\]: encode_min_s must be between 0 and 30"),
    ("[run]\nrunner = 'celery'\n", r"callqa.toml:2: \[run\]: runner must be one of threads, dask"),
    ("[privacy]\nmask = 'yes'\n", r"callqa.toml:2: \[privacy\]: mask = 'yes' is not a valid true or false"),
    ("[segmentation]\nmax_utterance_s = 29.5\n", r"callqa.toml:2: \[segmentation\] max_utterance_s must be"),
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


def test_every_problem_of_a_config_file_is_reported_at_once(tmp_path):
    path = tmp_path / "callqa.toml"
    path.write_text("[asr]\nbeem_size = 5\n\n[run]\nconcurrency = -1\n[input]\ntimezone = 'Nowhere'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in info.value.problems] == ["2", "7", "5"]
    assert str(info.value).startswith("3 problems in the configuration:")


def test_a_bad_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv("CALLQA_ASR_BEAM_SIZE", "many")
    with pytest.raises(ConfigError, match="environment CALLQA_ASR_BEAM_SIZE: 'many' is not a valid whole number"):
        load_config()
    monkeypatch.setenv("CALLQA_ASR_BEAM_SIZE", "2")
    monkeypatch.setenv("CALLQA_PRIVACY_KINDS", "phone, bank_card")
    config = load_config()
    assert config.asr.beam_size == 2 and config.privacy.kinds == ("phone", "bank_card")


def test_an_unreadable_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)  # a folder, not a file


def test_the_customers_channel_can_be_decoded_with_a_beam_of_its_own():
    from dataclasses import replace

    from pipeline.records import Turn
    from pipeline.transcribe.decode import beam_for

    asr = load_config().asr
    customer, agent, voice = (Turn(speaker, channel, 0.0, 2.0, 2.0) for speaker, channel in
                              (("customer", 1), ("agent", 0), ("voice1", 0)))
    assert [beam_for(asr, t) for t in (customer, agent, voice)] == [5, 5, 5]  # 0: the same beam for all
    cheap = replace(asr, customer_beam_size=1)
    assert [beam_for(cheap, t) for t in (customer, agent, voice)] == [1, 5, 5]  # mono voices: not known yet

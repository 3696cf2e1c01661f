"""The engine seam: a night from imported transcripts (callqa's format and Alibaba Cloud's recognition
result) is checked and scored like a transcribing one; a bad transcript is an errors row; the demo's
transcripts exported and imported again give the same outcomes and scores."""

import json
import os

import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.engines import engine_for
from pipeline.engines.imported import ImportEngine
from pipeline.errors import ConfigError
from pipeline.night import run_night
from pipeline.storage.parquet import read_table

CALLQA = {
    "format": "callqa-transcript", "version": 1,
    "utterances": [
        {"channel": "left", "start_s": 0.5, "end_s": 3.0, "text": "您好，星河通信，请讲。"},
        {"channel": "right", "start_s": 3.4, "end_s": 6.0, "text": "我的手机号是13812345678，查一下话费。"},
        {"channel": "left", "start_s": 6.5, "end_s": 9.0, "text": "好的，请您稍候，我帮您查一下。",
         "words": [{"word": "好的", "start_s": 6.5, "end_s": 6.9}, {"word": "請您稍候", "start_s": 7.0, "end_s": 7.9}]},
        {"channel": "left", "start_s": 20.0, "end_s": 22.0, "text": "抱歉让您久等了，您的话费还有五十元。"},
        {"channel": "right", "start_s": 22.5, "end_s": 23.5, "text": "好的，谢谢。"},
        {"channel": "left", "start_s": 24.0, "end_s": 26.0, "text": "谢谢您的来电，再见。"},
    ]}

ALIBABA = {
    "TaskId": "4b56f0c4b7e611eb8c5a", "StatusText": "SUCCESS", "StatusCode": 21050000, "BizDuration": 20000,
    "Result": {
        "Sentences": [
            {"BeginTime": 300, "EndTime": 2100, "Text": "喂，什么事？", "ChannelId": 0, "SpeechRate": 150, "EmotionValue": 5.0},
            {"BeginTime": 2500, "EndTime": 5000, "Text": "我想问一下我的订单。", "ChannelId": 1},
            {"BeginTime": 5400, "EndTime": 7000, "Text": "不知道，你自己去查。", "ChannelId": 0}],
        "Words": [{"BeginTime": 300, "EndTime": 700, "Word": "喂", "ChannelId": 0},
                  {"BeginTime": 2500, "EndTime": 2900, "Word": "我想", "ChannelId": 1}]}}


def write(folder, name, content):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def import_config(monkeypatch):
    monkeypatch.setenv("CALLQA_ASR_ENGINE", "import")
    return load_config()


def outcomes(out, call_id):
    results = read_table(out, "rule_results")
    return dict(zip(*[results[results.call_id == call_id][c] for c in ("rule_id", "outcome")]))


def test_the_engine_is_an_option_and_a_wrong_one_is_refused(monkeypatch):
    assert engine_for(load_config()).name == "whisper"
    monkeypatch.setenv("CALLQA_ASR_ENGINE", "import")
    assert engine_for(load_config()).name == "import"
    monkeypatch.setenv("CALLQA_ASR_ENGINE", "kaldi")
    with pytest.raises(ConfigError, match="CALLQA_ASR_ENGINE: 'kaldi' is not a valid one of whisper, import"):
        load_config()


def test_callqa_and_alibaba_transcripts_are_scored_and_bad_ones_are_errors(tmp_path, import_config):
    inputs = tmp_path / "in"
    write(inputs, "c1.json", CALLQA)
    write(inputs, "c2.json", ALIBABA)
    write(inputs, "c3.json", {"TaskId": "y", "StatusText": "FILE_DOWNLOAD_FAILED", "StatusCode": 41050002})
    write(inputs, "c4.json", "{not json")
    bad = json.loads(json.dumps(CALLQA))
    bad["utterances"][1]["end_s"] = 1.0
    write(inputs, "c5.json", bad)
    write(inputs, "notes.txt", "not a transcript")
    night = run_night(inputs, tmp_path / "out", import_config)
    assert (night.summary.inputs, night.summary.scored, night.summary.failed) == (5, 2, 3)
    assert night.summary.ignored_files == ["notes.txt"]
    calls = read_table(tmp_path / "out", "calls").set_index("call_id")
    assert set(calls.model) == {"import"}
    assert calls.loc["c1", "duration_s"] == 26.0 and calls.loc["c2", "duration_s"] == 20.0  # BizDuration (ms)
    errors = read_table(tmp_path / "out", "errors").set_index("file")
    assert set(errors.stage) == {"import"}
    assert "StatusText 'FILE_DOWNLOAD_FAILED'" in errors.loc["c3.json", "message"]
    assert "not JSON" in errors.loc["c4.json", "message"]
    assert "utterance 2 runs from 3.4 s to 1 s" in errors.loc["c5.json", "message"]

    utterances = read_table(tmp_path / "out", "utterances")
    c1 = utterances[utterances.call_id == "c1"].sort_values("utterance_idx")
    assert list(c1.speaker) == ["agent", "customer", "agent", "agent", "customer", "agent"]  # left is the agent's
    assert "13812345678" not in "".join(c1.text) and "***" in c1.text.iloc[1]  # masked before it is stored
    assert [w["word"] for w in c1.words.iloc[2]] == ["好的", "请您稍候"]  # normalised: simplified
    assert c1.avg_logprob.isna().all()  # Whisper's statistics: none given, none invented
    first = outcomes(tmp_path / "out", "c1")
    assert first["opening.greeting"] == "pass" and first["hold.notice"] == "pass"
    assert first["closing.farewell"] == "pass" and first["forbidden.phrase"] == "pass"
    assert first["dialect.putonghua"] == "not_applicable"  # nothing to judge how it sounded by
    rules = read_table(tmp_path / "out", "rule_results")
    assert "cannot be judged" in rules[(rules.call_id == "c1") & (rules.rule_id == "dialect.putonghua")].evidence.iloc[0]

    second = outcomes(tmp_path / "out", "c2")
    assert second["opening.greeting"] == "fail" and second["forbidden.phrase"] == "fail"
    c2 = utterances[utterances.call_id == "c2"].sort_values("utterance_idx")
    assert list(c2.speaker) == ["agent", "customer", "agent"]
    assert list(c2.start_s) == [0.3, 2.5, 5.4]
    assert [w["word"] for w in c2.words.iloc[0]] == ["喂"]
    hits = read_table(tmp_path / "out", "hits")
    wei = hits[(hits.call_id == "c2") & (hits.rule_id == "forbidden.phrase")]
    assert 0.3 in list(wei.start_s)  # the evidence is timed from the recogniser's own times


def test_the_manifest_names_transcripts_the_agent_channel_and_unlisted_files(tmp_path, import_config):
    inputs = tmp_path / "in"
    write(inputs, "a.json", CALLQA)
    write(inputs, "b.json", ALIBABA)
    write(inputs, "manifest.csv", "file,agent_id,call_id,started_at,agent_channel\n"
                                  "a.json,A1,a,2026-11-20T09:00:00+08:00,right\n")
    night = run_night(inputs, tmp_path / "out", import_config)
    assert (night.summary.inputs, night.summary.scored, night.summary.failed) == (2, 1, 1)
    errors = read_table(tmp_path / "out", "errors")
    assert "b.json is a transcript file in the input folder but manifest.csv does not list it" in errors.message.iloc[0]
    utterances = read_table(tmp_path / "out", "utterances").sort_values("utterance_idx")
    assert list(utterances.speaker)[:2] == ["customer", "agent"]  # agent_channel right
    calls = read_table(tmp_path / "out", "calls").set_index("call_id")
    assert calls.loc["a", "agent_id"] == "A1"


def test_a_recording_beside_its_transcript_is_the_calls_audio(tmp_path, import_config, demo_call):
    write(demo_call, "call01.json", CALLQA)  # the recordings' own manifest names call01.flac
    night = run_night(demo_call, tmp_path / "out", import_config)
    assert (night.summary.inputs, night.summary.scored) == (1, 1)
    assert night.summary.ignored_files == []  # the recording belongs to its transcript
    call = read_table(tmp_path / "out", "calls").iloc[0]
    assert call.path.endswith("call01.flac") and call.codec == "flac" and call.channels == 2
    assert call.agent_id == "A1001" and call.duration_s > 26  # the recording's length, not the last word's

    alone = tmp_path / "alone"  # without a manifest: every transcript, and the recording beside it
    write(alone, "call01.json", CALLQA)
    (alone / "call01.flac").write_bytes((demo_call / "call01.flac").read_bytes())
    night = run_night(alone, tmp_path / "out2", import_config)
    assert (night.summary.inputs, night.summary.ignored_files) == (1, [])
    assert read_table(tmp_path / "out2", "calls").iloc[0].path.endswith("call01.flac")


def test_a_second_import_night_reuses_and_a_changed_transcript_is_read_again(tmp_path, import_config):
    inputs = tmp_path / "in"
    write(inputs, "c1.json", CALLQA)
    write(inputs, "c2.json", ALIBABA)
    run_night(inputs, tmp_path / "out", import_config)
    again = run_night(inputs, tmp_path / "out", import_config)
    assert (again.summary.cached, again.summary.processed) == (2, 0)
    changed = json.loads(json.dumps(ALIBABA))
    changed["Result"]["Sentences"][0]["Text"] = "您好，星河通信，请讲。"
    write(inputs, "c2.json", changed)
    third = run_night(inputs, tmp_path / "out", import_config)
    assert (third.summary.cached, third.summary.processed) == (1, 1)
    assert outcomes(tmp_path / "out", "c2")["opening.greeting"] == "pass"


def test_the_demo_exported_and_imported_again_scores_the_same(tmp_path, demo_results, monkeypatch):
    """The issue's floor: the demo's transcripts in callqa's format give the same rule outcomes and
    scores as the night that transcribed them (compared with each other, whatever this CPU heard)."""
    from flows.cli import main

    exported = tmp_path / "transcripts"
    assert main(["export", "--results", str(demo_results), "--to", str(exported)]) == 0
    before_calls = read_table(demo_results, "calls")
    transcribed = before_calls[before_calls.status != "error"]
    assert len(list(exported.glob("*.json"))) == len(transcribed) > 0
    document = json.loads((exported / f"{transcribed.call_id.iloc[0]}.json").read_text(encoding="utf-8"))
    assert document["format"] == "callqa-transcript" and document["utterances"][0]["words"]

    monkeypatch.setenv("CALLQA_ASR_ENGINE", "import")
    out = tmp_path / "out"
    night = run_night(exported, out, load_config())
    assert night.summary.failed == 0 and night.summary.inputs == len(transcribed)
    columns = ["call_id", "rule_id", "outcome", "final_outcome", "hit_count", "deduction"]
    key = ["call_id", "rule_id"]
    before = read_table(demo_results, "rule_results")[columns].sort_values(key).reset_index(drop=True)
    after = read_table(out, "rule_results")[columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    scores = ["call_id", "agent_id", "status", "score", "passed", "red_line"]
    pd.testing.assert_frame_equal(transcribed[scores].sort_values("call_id").reset_index(drop=True),
                                  read_table(out, "calls")[scores].sort_values("call_id").reset_index(drop=True))
    hits = ["call_id", "rule_id", "start_s", "phrase", "match_kind", "margin"]
    # the same findings; a margin differs by the float32 its check's numbers are stored in (a rescore's too)
    pd.testing.assert_frame_equal(
        read_table(demo_results, "hits")[hits].sort_values(hits[:4]).reset_index(drop=True),
        read_table(out, "hits")[hits].sort_values(hits[:4]).reset_index(drop=True), check_exact=False, atol=0.002)
    assert set(read_table(out, "calls").model) == {"import"}


def test_callqa_run_with_engine_import_through_the_flow(tmp_path):
    """The command line: --engine import runs the Prefect flow over transcripts, and leaves the
    environment as it found it."""
    from flows.cli import main

    inputs = tmp_path / "in"
    write(inputs, "c1.json", CALLQA)
    write(inputs, "c2.json", ALIBABA)
    summary = tmp_path / "summary.json"
    assert main(["run", str(inputs), "--out", str(tmp_path / "out"), "--engine", "import",
                 "--summary-json", str(summary)]) == 0
    assert "CALLQA_ASR_ENGINE" not in os.environ
    counts = json.loads(summary.read_text(encoding="utf-8"))
    assert counts["scored"] == 2 and counts["failed"] == 0
    assert set(read_table(tmp_path / "out", "calls").model) == {"import"}


def test_import_engine_reads_a_transcript_named_by_a_recording(tmp_path, import_config):
    engine = ImportEngine(import_config)
    write(tmp_path, "x.json", CALLQA)
    (tmp_path / "x.wav").write_bytes(b"RIFF")  # named by a manifest as the recording
    from tests.conftest import make_recording

    recording = make_recording(tmp_path / "x.wav")
    assert engine.transcript_path(recording) == tmp_path / "x.json"
    result = engine.process(recording)
    assert result.ok and len(result.utterances) == 6
    assert any("cannot be read" in w for w in result.warnings)  # the broken recording is said, not fatal


def test_another_speech_model_gets_callqas_voice_activity_turns_and_rules_without_confidence_figures(
        tmp_path, monkeypatch):
    """The speech-model seam: a model that is not Whisper and gives no confidence figures is handed the
    turns callqa's voice activity found on each channel; its words become utterances and are checked
    and scored; the rule that needs Whisper's figures says why it cannot judge."""
    import shutil

    from pipeline.engines import whisper
    from tests.conftest import DATA
    from tests.night_driver import StandInSpeech

    model = StandInSpeech(statistics=False, label="other-asr cpu")
    monkeypatch.setattr(whisper, "load_whisper", lambda options, workers=1: model)
    monkeypatch.setattr(whisper, "model_label", lambda options: model.model_label)
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(DATA / "long_hold_8k_stereo.flac", inputs / "stereo.flac")
    write(inputs, "manifest.csv", "file,agent_id,call_id,started_at,agent_channel,company\n"
                                  "stereo.flac,A1,c1,2026-11-20T09:00:00+08:00,left,星河通信\n")
    night = run_night(inputs, tmp_path / "out")
    assert (night.summary.processed, night.summary.scored) == (1, 1)
    assert model.turns_heard >= 3
    out = tmp_path / "out"
    calls = read_table(out, "calls")
    assert calls["model"].tolist() == ["other-asr cpu"]
    utterances = read_table(out, "utterances")
    assert set(utterances["speaker"]) == {"agent", "customer"}  # roles from the channels, not from the model
    assert utterances["avg_logprob"].isna().all() and utterances["no_speech_prob"].isna().all()
    assert all(w["prob"] is None for words in utterances["words"] for w in words)
    assert len(read_table(out, "voice_activity")) >= len(utterances)
    outcome = outcomes(out, "c1")
    assert outcome["opening.greeting"] == "pass" and outcome["closing.farewell"] == "pass"
    assert outcome["dialect.putonghua"] == "not_applicable"
    evidence = read_table(out, "rule_results").set_index("rule_id").loc["dialect.putonghua", "evidence"]
    assert "cannot be judged" in evidence


@pytest.mark.model
def test_imported_transcripts_with_their_recording_beside_are_checked_on_the_audio_when_asked(tmp_path):
    """[verify] imported: the phrases an imported call's verdicts rest on are asked of the recording
    beside it with the speech model, as a transcribing night asks them; without it, none is."""
    import shutil

    from tests.conftest import truth_transcripts

    everything = truth_transcripts(tmp_path / "all")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("call01.flac", "call01.json"):
        shutil.copy(everything / name, inputs / name)
    lines = (everything / "manifest.csv").read_text(encoding="utf-8").splitlines()
    write(inputs, "manifest.csv", "\n".join([lines[0]] + [l for l in lines if l.startswith("call01.flac")]) + "\n")
    plain = tmp_path / "plain.toml"
    plain.write_text('[asr]\nengine = "import"\n', encoding="utf-8")
    heard = tmp_path / "heard.toml"
    heard.write_text('[asr]\nengine = "import"\n[verify]\nimported = true\n', encoding="utf-8")

    run_night(inputs, tmp_path / "plain", load_config(plain))
    assert all(len(c) == 0 for c in read_table(tmp_path / "plain", "utterances")["checks"])
    night = run_night(inputs, tmp_path / "heard", load_config(heard))
    assert night.summary.scored == 1
    checks = [c for cs in read_table(tmp_path / "heard", "utterances")["checks"] for c in cs]
    assert checks and {"您好", "再见"} & {c["phrase"] for c in checks}
    assert all(len(c["options"]) == len(c["logprobs"]) >= 2 for c in checks)
    hits = read_table(tmp_path / "heard", "hits")
    assert hits["margin"].notna().any()  # findings carry what the audio said
    # the checks are part of what is reused: the same night again reuses the call, a change of option does not
    again = run_night(inputs, tmp_path / "heard", load_config(heard))
    assert (again.summary.cached, again.summary.processed) == (1, 0)
    assert run_night(inputs, tmp_path / "heard", load_config(plain)).summary.processed == 1


def test_ratings_and_the_hangup_record_arriving_later_update_the_calls_without_reading_them_again(tmp_path,
                                                                                                   import_config):
    """The customer's rating and the switch's record often come days after the call: a later night with
    them in the manifest stores them on the stored calls (and rescores hangup_order) without reading the
    transcripts again."""
    inputs = tmp_path / "in"
    write(inputs, "c1.json", CALLQA)
    write(inputs, "c2.json", ALIBABA)
    write(inputs, "manifest.csv", "file,agent_id\nc1.json,A1\nc2.json,A2\n")
    run_night(inputs, tmp_path / "out", import_config)
    calls = read_table(tmp_path / "out", "calls").set_index("call_id")
    assert calls.satisfaction.isna().all() and calls.hangup_by.isna().all()
    assert outcomes(tmp_path / "out", "c1")["closing.hangup_order"] == "not_applicable"
    write(inputs, "manifest.csv", "file,agent_id,hangup_by,satisfaction\nc1.json,A1,客户挂机,5\nc2.json,A2,坐席,很不满意\n")
    again = run_night(inputs, tmp_path / "out", import_config)
    assert (again.summary.cached, again.summary.processed) == (2, 0)
    calls = read_table(tmp_path / "out", "calls").set_index("call_id")
    assert (calls.loc["c1", "hangup_by"], calls.loc["c1", "satisfaction"]) == ("customer", 5)
    assert (calls.loc["c2", "hangup_by"], calls.loc["c2", "satisfaction"]) == ("agent", 1)
    assert outcomes(tmp_path / "out", "c1")["closing.hangup_order"] == "pass"
    assert outcomes(tmp_path / "out", "c2")["closing.hangup_order"] == "fail"


def test_a_number_read_back_is_still_heard_after_masking_in_a_night_a_rescore_and_an_export(tmp_path, import_config):
    """The stored text is masked; the numbers' codes are stored beside it: the night, a rescore and a
    night over the exported transcripts all see the agent read the customer's number back."""
    from pipeline.engines.export import export_transcripts
    from pipeline.rescore import rescore

    said = json.loads(json.dumps(CALLQA))
    said["utterances"][2]["text"] = "好的，13812345678，请您稍候，我帮您查一下。"
    said["utterances"][2].pop("words")
    write(tmp_path / "in", "c1.json", said)
    run_night(tmp_path / "in", tmp_path / "out", import_config)
    texts = read_table(tmp_path / "out", "utterances").sort_values("utterance_idx").text.tolist()
    assert "13812345678" not in "".join(texts) and "*" * 11 in texts[2]
    assert outcomes(tmp_path / "out", "c1")["service.confirm"] == "pass"
    rescore(tmp_path / "out", workers=1)
    assert outcomes(tmp_path / "out", "c1")["service.confirm"] == "pass"
    export_transcripts(tmp_path / "out", tmp_path / "exported")
    run_night(tmp_path / "exported", tmp_path / "again", import_config)
    assert outcomes(tmp_path / "again", "c1")["service.confirm"] == "pass"
    other = json.loads(json.dumps(said))
    other["utterances"][2]["text"] = "好的，13987654321，请您稍候，我帮您查一下。"
    write(tmp_path / "in2", "c1.json", other)
    run_night(tmp_path / "in2", tmp_path / "out2", import_config)
    assert outcomes(tmp_path / "out2", "c1")["service.confirm"] == "fail"


def test_a_file_named_in_gbk_bytes_is_scored_beside_the_others_under_its_chinese_name(tmp_path, import_config):
    """Windows recorders and zip files write GBK names, which are not UTF-8: such a file is stored under
    its name read as GB18030 (张三_20261122), never fails the night for the other calls, and the review
    page and training clips find it again from the stored path."""
    from pipeline.text import on_disk

    inputs = tmp_path / "in"
    write(inputs, "good.json", CALLQA)
    gbk = os.fsdecode("张三_20261122.json".encode("gbk"))  # what listing the folder gives Python
    write(inputs, gbk, CALLQA)
    write(inputs, os.fsdecode(b"\xff\xfe_x.json"), CALLQA)  # not GB18030 either: escaped, losslessly
    night = run_night(inputs, tmp_path / "out", import_config)
    assert (night.summary.inputs, night.summary.scored, night.summary.failed) == (3, 3, 0)
    calls = read_table(tmp_path / "out", "calls").set_index("call_id")
    assert set(calls.index) == {"good", "张三_20261122", "\\xff\\xfe_x"}
    assert calls.loc["张三_20261122", "file"] == "张三_20261122.json"
    assert on_disk(calls.loc["张三_20261122", "path"]) == (inputs / gbk).resolve()
    again = run_night(inputs, tmp_path / "out", import_config)  # and every later night goes on
    assert (again.summary.cached, again.summary.failed) == (3, 0)


def test_a_manifest_names_a_gbk_file_by_its_chinese_name(tmp_path, import_config):
    inputs = tmp_path / "in"
    write(inputs, os.fsdecode("李四.json".encode("gbk")), CALLQA)
    write(inputs, "manifest.csv", "file,agent_id\n李四.json,A1\n")
    night = run_night(inputs, tmp_path / "out", import_config)
    assert (night.summary.scored, night.summary.failed) == (1, 0)
    assert read_table(tmp_path / "out", "calls").iloc[0]["file"] == "李四.json"

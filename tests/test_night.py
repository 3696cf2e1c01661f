"""One night, two ways: the library alone (``pipeline.night.run_night``) and the Prefect flow give the
same tables; the library night skips, retries and fails recordings as the flow does; a rule that
crashes fails its call, never passes it."""

import json
import shutil
import textwrap
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.errors import HallucinationListError, RuleError
from pipeline.night import run_night
from pipeline.records import NOT_APPLICABLE
from pipeline.rules import checks
from pipeline.rules.dialogue import parse_dialogue
from pipeline.schemas import TABLES, appended, table_key
from pipeline.storage.parquet import read_table
from pipeline.storage.rows import transcripts_of
from tests.conftest import DATA, FlakyShare

# columns that say when or by which run a row was made, not what it says
RUN_COLUMNS = {"run_id", "processed_at", "occurred_at"}


def night_folder(folder: Path) -> Path:
    """A stereo call to score, a 2.5 s mono clip (too little agent speech: unscorable), a corrupt file, a
    file that is not audio, and a manifest with a row whose file is missing."""
    folder.mkdir()
    shutil.copy(DATA / "long_hold_8k_stereo.flac", folder / "stereo.flac")
    shutil.copy(DATA / "mono_8k.wav", folder / "mono.wav")
    shutil.copy(DATA / "corrupt.wav", folder / "corrupt.wav")
    (folder / "notes.txt").write_text("not a recording", encoding="utf-8")
    (folder / "manifest.csv").write_text(
        "file,agent_id,call_id,started_at,agent_channel,company\n"
        "stereo.flac,A1,c-stereo,2026-11-20T09:00:00+08:00,left,星河通信\n"
        "mono.wav,A2,c-mono,2026-11-20T10:00:00+08:00,mono,星河通信\n"
        "corrupt.wav,A2,c-corrupt,2026-11-20T11:00:00+08:00,left,星河通信\n"
        "gone.wav,A3,c-gone,2026-11-20T12:00:00+08:00,left,星河通信\n", encoding="utf-8")
    return folder


def comparable(out: Path, table: str) -> pd.DataFrame:
    frame = read_table(out, table)
    frame = frame.drop(columns=[c for c in frame.columns if c in RUN_COLUMNS])
    key = [c for c in table_key(table) if c in frame.columns] + (["stage"] if table == "errors" else [])
    return frame.sort_values(key).reset_index(drop=True)


def test_the_library_night_writes_the_same_tables_as_the_prefect_flow(tmp_path, model):
    from prefect.testing.utilities import prefect_test_harness

    from flows.nightly import transcribe_folder

    folder = night_folder(tmp_path / "in")
    library = run_night(folder, tmp_path / "library").summary
    with prefect_test_harness(server_startup_timeout=120):
        flow = transcribe_folder(str(folder), str(tmp_path / "flow"))
    assert (library.processed, library.failed, library.ignored) == (2, 2, 1)  # corrupt file, missing file
    assert (library.inputs, library.scored, library.unscorable) == (4, 1, 1)  # notes.txt is not an input
    statuses = read_table(tmp_path / "library", "calls").set_index("call_id")["status"].to_dict()
    assert statuses == {"c-stereo": "ok", "c-mono": "unscorable", "c-corrupt": "error", "rejected:gone.wav": "error"}
    timed = ("run_id", "wall_s", "speed_x_realtime", "stage_s", "task_s")
    assert {k: v for k, v in library.to_dict().items() if k not in timed} == \
        {k: v for k, v in flow.items() if k not in timed}
    # where the time went: every stage the night ran, in the same order, both ways
    assert list(library.stage_s) == list(flow["stage_s"])
    assert {"decode_s", "vad_s", "transcribe_s", "second_pass_s", "guard_s", "rules_s", "scoring_s",
            "writing_s"} <= set(library.stage_s)
    assert all(seconds >= 0 for seconds in library.stage_s.values()) and library.stage_s["transcribe_s"] > 0
    # what the model was given (the same both ways: compared above): a stereo call's two voices never
    # share a window, so at least two; the turns (with their context) are part of the audio in them
    windows = library.windows
    assert windows["windows"] >= 2 and 0 < windows["window_turns_s"] <= windows["window_audio_s"]
    for table in TABLES:
        lib, flo = comparable(tmp_path / "library", table), comparable(tmp_path / "flow", table)
        if appended(table):  # reviewers write these, a night never does
            assert len(lib) == len(flo) == 0, table
            continue
        assert len(lib) > 0 or table in ("suppressed", "commitments"), table  # none said, or none heard
        pd.testing.assert_frame_equal(lib, flo, check_dtype=True, obj=table)
    runs = read_table(tmp_path / "flow", "calls")["run_id"]
    assert set(runs) == {flow["run_id"]} and flow["run_id"] != "library"  # a real Prefect flow run


def test_the_library_night_reuses_what_is_already_transcribed(tmp_path, model):
    folder = night_folder(tmp_path / "in")
    first = run_night(folder, tmp_path / "out", run_id="night-1").summary
    stored = read_table(tmp_path / "out", "calls").set_index("call_id")
    second = run_night(folder, tmp_path / "out", run_id="night-2").summary
    assert (first.processed, first.cached) == (2, 0) and (second.processed, second.cached) == (0, 2)
    calls = read_table(tmp_path / "out", "calls").set_index("call_id")
    kept = calls[calls["status"] != "error"]
    assert len(kept) == 2 and set(kept["run_id"]) == {"night-2"}  # checked (and scored) again tonight...
    assert (kept["processed_at"] == stored.loc[kept.index, "processed_at"]).all()  # ...but not transcribed again
    assert second.failed == 2  # the corrupt file is tried again (it may have been replaced); the missing one too


def test_the_library_night_retries_a_recording_it_could_not_read_but_never_a_bad_one(tmp_path, model, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "fmt_pcm16_8k_stereo.wav", folder / "flaky.wav")
    shutil.copy(DATA / "corrupt.wav", folder / "bad.wav")
    share = FlakyShare(monkeypatch, {"flaky.wav"}, failures=2)
    waited = []
    summary = run_night(folder, tmp_path / "out", sleep=waited.append).summary
    assert share.attempts == {"flaky.wav": 3, "bad.wav": 1}  # two I/O errors, then read; the bad file once
    assert waited == [5.0, 30.0]  # [run] retry_delays_s, until it worked
    assert (summary.processed, summary.failed, summary.errors_by_stage) == (1, 1, {"decode": 1})

    # the share never comes back: each file waits out every delay, then is an errors row
    FlakyShare(monkeypatch, {"flaky.wav", "bad.wav"}, failures=None)
    waited.clear()
    summary = run_night(folder, tmp_path / "out2", sleep=waited.append).summary
    # the two retries run side by side: each waits out every delay
    assert sorted(waited) == sorted([5.0, 30.0, 120.0] * 2) and summary.errors_by_stage == {"read": 2}
    errors = read_table(tmp_path / "out2", "errors").set_index("file")
    assert "after every retry" in errors.loc["flaky.wav", "message"]


def test_a_broken_hallucination_list_stops_the_night_before_any_audio(tmp_path):
    folder = night_folder(tmp_path / "in")
    (tmp_path / "h.txt").write_text("re:([\n", encoding="utf-8")
    (tmp_path / "callqa.toml").write_text(f"[guard]\nphrases_file = '{tmp_path / 'h.txt'}'\n", encoding="utf-8")
    with pytest.raises(HallucinationListError, match="h.txt:1: invalid regular expression"):
        run_night(folder, tmp_path / "out", load_config(tmp_path / "callqa.toml"))
    assert not (tmp_path / "out").exists()


def stored_dialogue(call_id: str, dialogue: str) -> dict[str, list[dict]]:
    """A call as the transcript tables store it, from a typed dialogue (no audio, no model)."""
    said = parse_dialogue(textwrap.dedent(dialogue), call_id=call_id, agent_id="A1", company="星河通信")
    date = "2026-11-20"
    call = {"call_id": call_id, "agent_id": "A1", "company": "星河通信", "status": "ok", "channels": said.channels,
            "duration_s": said.duration_s, "call_date": date, "file": f"{call_id}.wav",
            "started_at": datetime(2026, 11, 20, 1, tzinfo=timezone.utc), "model": "m",
            "processed_at": datetime.now(timezone.utc), "run_id": "earlier", "error_stage": None}
    utterances = [{**asdict(u), "call_date": date, "words": []} for u in said.utterances]
    voice = [{"call_id": call_id, "speaker": who, "start_s": start, "end_s": end, "call_date": date}
             for who, start, end in said.voice]
    return {"calls": [call], "utterances": utterances, "voice_activity": voice, "suppressed": []}


def transcript_of(folder: Path, call_id: str, dialogue: str) -> Path:
    """A typed dialogue as an imported transcript (callqa's format) in ``folder``."""
    rows = stored_dialogue(call_id, dialogue)
    utterances = [{"speaker": u["speaker"], "start_s": u["start_s"], "end_s": u["end_s"], "text": u["text"]}
                  for u in rows["utterances"]]
    path = folder / f"{call_id}.json"
    path.write_text(json.dumps({"format": "callqa-transcript", "version": 1, "utterances": utterances},
                               ensure_ascii=False), encoding="utf-8")
    return path


CALM = "[0.5s] agent: 您好，星河通信，请讲。\n[3s] customer: 查话费。\n[6s] agent: 好的，已经帮您查好了。谢谢，再见。\n"
HOLD = "[0.5s] agent: 您好，星河通信，请讲。\n[3s] customer: 查话费。\n[6s] agent: 请您稍候。\n[20s] agent: 让您久等了，谢谢，再见。\n"


def test_a_rule_that_crashes_fails_its_call_and_a_rescore_scores_it_once_fixed(tmp_path, monkeypatch, config):
    from pipeline.rescore import rescore

    real_hold = checks.CHECKS["hold"]

    def broken_hold(engine, spec, call):  # a bug that shows only on calls with a hold
        if checks.find_holds(call, spec.options.min_silence_s):
            raise ZeroDivisionError("division by zero")
        return real_hold(engine, spec, call)

    monkeypatch.setitem(checks.CHECKS, "hold", broken_hold)
    monkeypatch.setenv("CALLQA_ASR_ENGINE", "import")
    inputs = tmp_path / "in"
    inputs.mkdir()
    transcript_of(inputs, "calm", CALM)
    transcript_of(inputs, "held", HOLD)
    out = tmp_path / "out"
    night = run_night(inputs, out, load_config())

    assert (night.summary.failed, night.summary.processed, night.summary.errors_by_stage) == (1, 1, {"rules": 1})
    calls = read_table(out, "calls").set_index("call_id")
    assert (calls.loc["held", "status"], calls.loc["held", "error_stage"]) == ("error", "rules")
    assert pd.isna(calls.loc["held", "score"]) and calls.loc["calm", "score"] > 0  # never scored, never passed
    results = read_table(out, "rule_results")
    assert set(results["call_id"]) == {"calm"}  # no result of the crashed call: not a pass, not not_applicable
    error = read_table(out, "errors").set_index("call_id").loc["held"]
    assert (error["stage"], error["error_type"]) == ("rules", "RuleError")
    assert "rule hold.notice crashed on call held: ZeroDivisionError" in error["message"]
    assert read_table(out, "agent_scores").query("period_type == 'day'")["error_calls"].tolist() == [1]
    assert "| failed | 1 |" in night.markdown() and "RuleError" in night.markdown()

    still = rescore(out)  # the rule is still broken: the call stays failed, with its error row
    assert still.failed == 1 and len(read_table(out, "errors")) == 1
    monkeypatch.setitem(checks.CHECKS, "hold", real_hold)  # the rule is fixed
    fixed = rescore(out)
    assert fixed.failed == 0 and read_table(out, "errors").empty
    calls = read_table(out, "calls").set_index("call_id")
    assert calls.loc["held", "status"] == "ok" and pd.isna(calls.loc["held", "error_stage"])
    assert calls.loc["held", "score"] > 0
    assert read_table(out, "rule_results").query("call_id == 'held' and rule_id == 'hold.notice'")["outcome"].tolist() \
        == ["pass"]


def test_the_engine_raises_for_a_crashing_rule_instead_of_reporting_it_not_applicable(monkeypatch):
    from pipeline.rules.engine import RuleEngine, evaluate_calls
    from pipeline.rules.lexicon import load_lexicons

    monkeypatch.setitem(checks.CHECKS, "speech_rate", lambda *args: {}["missing"])
    rows = stored_dialogue("c", CALM)
    evaluation = evaluate_calls(RuleEngine(load_lexicons()), transcripts_of(rows))
    assert evaluation.results == [] and list(evaluation.crashed) == ["c"]
    assert evaluation.crashed["c"].stage == RuleError.stage
    assert not any(r.outcome == NOT_APPLICABLE and "error" in r.evidence for r in evaluation.results)


def test_stage_rows_give_each_stage_its_label_seconds_and_speed():
    from pipeline.summary import stage_rows

    assert stage_rows({"second_pass_s": 2.0, "scoring_s": 0.0}, 100.0) == [("second pass", 2.0, "50"),
                                                                           ("scoring", 0.0, "-")]
    assert stage_rows({"vad_s": 1.0}, 0.0) == [("vad", 1.0, "-")]  # no audio: nothing to divide

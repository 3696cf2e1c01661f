"""Output schemas: write, read back, compare; re-writing a night replaces rows instead of duplicating."""

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline.errors import SchemaMismatchError
from pipeline.records import CallResult, ErrorRecord, Recording, SpeechRegion, SuppressedText, Utterance, Word
from pipeline.schemas import SCHEMA_VERSION, TABLES
from pipeline.schemas import appended, rewritten_whole
from pipeline.storage.parquet import read_table, to_arrow
from pipeline.storage.staging import write_run
from pipeline.storage.rows import rows_for_run

TZ = ZoneInfo("Asia/Shanghai")


def result(call_id: str, started: datetime, n_utts: int = 2, status: str = "ok") -> CallResult:
    rec = Recording(Path(f"/in/{call_id}.wav"), f"{call_id}.wav", call_id, "A1001", started, "left", "星河通信")
    res = CallResult(rec, status, "whisper-base@905e5bf8336b cpu/int8", datetime.now(timezone.utc),
                     duration_s=61.5, channels=2, sample_rate=8000, codec="flac")
    if status == "ok":
        res.utterances = [Utterance(call_id, i, "agent" if i % 2 == 0 else "customer", i * 5.0, i * 5.0 + 3,
                                    f"您好{i}", f"您好{i}", -0.2, 0.01,
                                    [Word("您好", i * 5.0, i * 5.0 + 0.5, 0.9)]) for i in range(n_utts)]
        res.voice_activity = [SpeechRegion("agent", 0.1, 3.0), SpeechRegion("customer", 5.0, 8.0)]
        res.suppressed = [SuppressedText("agent", 40.0, 41.0, "字幕由Amara.org社區提供", "字幕由Amara.org社区提供",
                                         "known_hallucination")]
        res.warnings = ["a warning"]
    else:
        res.error = ErrorRecord(f"{call_id}.wav", call_id, "decode", "AudioDecodeError", "corrupt", started)
    return res


# 23:30 UTC on the 19th is 07:30 on the 20th in Shanghai: partitions follow the contact centre's date
NIGHT = datetime(2026, 11, 19, 23, 30, tzinfo=timezone.utc)


def test_every_table_round_trips_through_parquet(tmp_path):
    results = [result("c1", NIGHT), result("c2", NIGHT, n_utts=3), result("bad", NIGHT, status="error")]
    manifest_error = ErrorRecord("x.wav", None, "manifest", "ManifestRowError", "line 3: agent_id is empty")
    tables = rows_for_run(results, [manifest_error], "run-1", TZ)
    written = write_run(tmp_path, tables)
    assert written == {"calls": 4, "utterances": 5, "voice_activity": 4, "suppressed": 2, "errors": 2,
                       "hits": 0, "rule_results": 0, "commitments": 0}  # rules are added by scoring.tables.score_transcripts
    # every input has a calls row: the rejected manifest row too, under an id of its own
    rejected = read_table(tmp_path, "calls").set_index("call_id").loc["rejected:x.wav"]
    assert (rejected["status"], rejected["error_stage"], rejected["agent_id"]) == ("error", "manifest", "unknown")
    assert rejected["status_reason"] == "ManifestRowError: line 3: agent_id is empty" and pd.isna(rejected["score"])
    today = datetime.now(TZ).date().isoformat()  # an error with no call time is filed under the run's date
    assert not (tmp_path / "reviews").exists()  # a night never writes the reviewers' table
    for name, schema in TABLES.items():
        if rewritten_whole(name) or appended(name):
            continue
        files = sorted((tmp_path / name).rglob("*.parquet"))
        # the rejected input has no call time: its rows are filed under the run's date, and every table of
        # a night has a file for each of the night's call dates (empty where it has no rows), so readers
        # always find the columns
        expected = sorted({"call_date=2026-11-20", f"call_date={today}"})
        assert [f.parent.name for f in files] == expected, name
        stored = pq.read_schema(files[0])
        assert stored.metadata[b"callqa.schema_version"] == SCHEMA_VERSION.encode()
        assert stored.remove_metadata().equals(schema.remove_metadata()), name
    calls = pd.read_parquet(tmp_path / "calls")  # plain pandas, as a QA manager would
    assert sorted(calls["call_id"]) == ["bad", "c1", "c2", "rejected:x.wav"]
    assert set(calls.query("call_id != 'rejected:x.wav'")["call_date"].astype(str)) == {"2026-11-20"}
    ok = calls.set_index("call_id").loc["c1"]
    assert ok["status"] == "ok" and ok["n_utterances"] == 2 and list(ok["warnings"]) == ["a warning"]
    assert ok["started_at"] == pd.Timestamp(NIGHT)
    utts = read_table(tmp_path, "utterances").sort_values(["call_id", "utterance_idx"])
    expected = pd.DataFrame([r for r in tables["utterances"]]).sort_values(["call_id", "utterance_idx"])
    for column in ("call_id", "utterance_idx", "speaker", "start_s", "end_s", "text", "raw_text"):
        assert utts[column].tolist() == expected[column].tolist(), column
    assert utts.iloc[0]["words"][0]["word"] == "您好"
    errors = read_table(tmp_path, "errors")
    assert sorted(errors["stage"]) == ["decode", "manifest"]


def test_writing_the_same_night_twice_replaces_rows(tmp_path):
    write_run(tmp_path, rows_for_run([result("c1", NIGHT, n_utts=4), result("bad", NIGHT, status="error")],
                                     [], "run-1", TZ))
    # the second run processes the same calls again: c1 now has 2 utterances and "bad" was fixed
    write_run(tmp_path, rows_for_run([result("c1", NIGHT, n_utts=2), result("bad", NIGHT)], [], "run-2", TZ))
    calls = read_table(tmp_path, "calls")
    assert sorted(calls["call_id"]) == ["bad", "c1"] and set(calls["run_id"]) == {"run-2"}
    assert len(read_table(tmp_path, "utterances").query("call_id == 'c1'")) == 2
    assert read_table(tmp_path, "errors").empty  # the fixed file's old error row is gone
    # another night's calls are kept alongside
    write_run(tmp_path, rows_for_run([result("c3", datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc))],
                                     [], "run-3", TZ))
    assert sorted(read_table(tmp_path, "calls")["call_id"]) == ["bad", "c1", "c3"]


def test_a_table_without_rows_is_still_readable(tmp_path):
    write_run(tmp_path, rows_for_run([result("c1", NIGHT)], [], "run-1", TZ))  # no errors this night
    errors = pd.read_parquet(tmp_path / "errors")
    assert errors.empty and {"file", "stage", "error_type", "message"} <= set(errors.columns)


def test_rows_that_do_not_match_the_schema_are_refused():
    with pytest.raises(SchemaMismatchError, match="not in schema"):
        to_arrow("calls", [{"call_id": "c", "colour": "blue"}])
    with pytest.raises(SchemaMismatchError, match="do not match"):
        to_arrow("utterances", [{"call_id": "c", "utterance_idx": "first", "speaker": "agent", "start_s": 0.0,
                                 "end_s": 1.0, "text": "", "raw_text": ""}])


def test_reading_an_empty_output_gives_the_columns(tmp_path):
    frame = read_table(tmp_path, "calls")
    assert frame.empty and "call_id" in frame.columns


def test_library_never_imports_prefect():
    code = ("import sys, pkgutil, importlib, pipeline\n"
            "names = [m.name for m in pkgutil.walk_packages(pipeline.__path__, 'pipeline.')]\n"
            "assert 'pipeline.transcribe.recording' in names and 'pipeline.review.examples' in names\n"
            "for name in names: importlib.import_module(name)\n"
            "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('prefect', 'dask'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pandas_pyarrow_and_duckdb_read_the_same_rows(tmp_path):
    import duckdb
    import pyarrow.dataset as ds

    write_run(tmp_path, rows_for_run([result("c1", NIGHT), result("c2", NIGHT, n_utts=3)], [], "run-1", TZ))
    by_pandas = pd.read_parquet(tmp_path / "utterances")
    by_arrow = ds.dataset(tmp_path / "utterances", format="parquet", partitioning="hive").to_table()
    by_duckdb = duckdb.sql(f"select call_id, utterance_idx, text, call_date from read_parquet("
                           f"'{tmp_path}/utterances/*/*.parquet', hive_partitioning = true) "
                           f"order by call_id, utterance_idx").fetchall()
    assert len(by_pandas) == by_arrow.num_rows == len(by_duckdb) == 5
    assert [r[:3] for r in by_duckdb] == sorted(zip(by_pandas["call_id"], by_pandas["utterance_idx"], by_pandas["text"]))
    assert {str(r[3]) for r in by_duckdb} == {"2026-11-20"}
    words = duckdb.sql(f"select words[1].word from read_parquet('{tmp_path}/utterances/*/*.parquet') limit 1")
    assert words.fetchall()[0][0] == "您好"  # nested columns too


def test_a_write_interrupted_midway_leaves_the_old_file_whole(tmp_path, monkeypatch):
    import pyarrow.parquet as pq_module

    from pipeline.storage import parquet as store

    write_run(tmp_path, rows_for_run([result("c1", NIGHT)], [], "run-1", TZ))
    before = read_table(tmp_path, "calls")
    real_write = pq_module.write_table

    def crash(table, where, **kwargs):  # write part of the file, then the machine "dies"
        real_write(table.slice(0, 0), where, **kwargs)
        with open(where, "ab") as fh:
            fh.write(b"\x00garbage")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(store.pq, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        write_run(tmp_path, rows_for_run([result("c1", NIGHT, n_utts=5), result("c9", NIGHT)], [], "run-2", TZ))
    monkeypatch.undo()
    after = read_table(tmp_path, "calls")  # the reader sees the previous night, whole
    assert after[["call_id", "run_id"]].values.tolist() == before[["call_id", "run_id"]].values.tolist()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]  # no half file left behind
    write_run(tmp_path, rows_for_run([result("c1", NIGHT, n_utts=5), result("c9", NIGHT)], [], "run-2", TZ))
    assert sorted(read_table(tmp_path, "calls")["call_id"]) == ["c1", "c9"]  # the rerun completes it


def test_files_of_another_major_schema_version_are_refused(tmp_path):
    write_run(tmp_path, rows_for_run([result("c1", NIGHT)], [], "run-1", TZ))
    target = next((tmp_path / "calls").rglob("*.parquet"))
    table = pq.read_table(target)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"callqa.schema_version": b"2.0"}), target)
    with pytest.raises(SchemaMismatchError, match="schema version"):
        read_table(tmp_path, "calls")
    older = table.drop_columns(["score", "passed"]).replace_schema_metadata(
        {**table.schema.metadata, b"callqa.schema_version": b"1.0"})
    pq.write_table(older, target)
    frame = read_table(tmp_path, "calls")  # an older minor version reads, with the new columns empty
    assert frame["score"].isna().all() and frame["call_id"].tolist() == ["c1"]


def test_a_transcript_is_the_same_from_a_fresh_result_and_from_the_stored_rows(tmp_path):
    """What the second half reads (records.CallTranscript) does not depend on where it came from: the
    night's result, or its rows read back from Parquet by pandas (arrays for lists, NaN for nulls) or
    Arrow."""
    from pipeline.storage.parquet import read_arrow
    from pipeline.storage.rows import transcript_of_result, transcripts_of

    fresh = result("c1", NIGHT, n_utts=3)
    for u in fresh.utterances:  # figures float32 holds exactly (the tables store confidences as float32)
        u.avg_logprob, u.no_speech_prob, u.words = -0.25, 0.125, [Word(w.word, w.start_s, w.end_s, 0.75) for w in u.words]
    fresh.utterances[1].avg_logprob = None  # a value the engine did not give stays None
    write_run(tmp_path, rows_for_run([fresh, result("bad", NIGHT, status="error")], [], "run-1", TZ))
    made = transcript_of_result(fresh, TZ, "run-1")
    names = ("calls", "utterances", "voice_activity")
    by_pandas = transcripts_of({n: read_table(tmp_path, n).to_dict("records") for n in names})
    by_arrow = transcripts_of({n: read_arrow(tmp_path, n).to_pylist() for n in names})
    assert [t.call_id for t in by_pandas] == [t.call_id for t in by_arrow] == ["c1"]  # the failed call has none
    for stored in (by_pandas[0], by_arrow[0]):
        assert stored.utterances == made.utterances and stored.voice == made.voice
        assert (stored.channels, stored.duration_s, stored.company, stored.call_date, stored.warnings) == \
            (2, 61.5, "星河通信", "2026-11-20", ("a warning",))
        assert stored.utterances[1].avg_logprob is None and stored.utterances[0].words[0].prob == 0.75
    assert transcript_of_result(result("bad", NIGHT, status="error"), TZ) is None

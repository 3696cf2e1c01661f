from datetime import datetime, timedelta

import pytest

from pipeline.config import InputOptions
from pipeline.transcribe.discover import discover_recordings
from pipeline.errors import InputError, ManifestError

HEADER = "file,agent_id,call_id,started_at,agent_channel,company\n"


def folder_with(tmp_path, names=("a.wav", "b.flac"), manifest=None):
    for name in names:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF")  # discovery does not decode
    if manifest is not None:
        (tmp_path / "manifest.csv").write_text(manifest, encoding="utf-8")
    return tmp_path


def test_without_manifest_every_audio_file_is_a_recording(tmp_path):
    folder_with(tmp_path, ("a.wav", "sub/b.MP3", "notes.txt", ".hidden.wav"))
    found = discover_recordings(tmp_path, InputOptions())
    assert [r.file for r in found.recordings] == ["a.wav", "sub/b.MP3"]
    assert {r.agent_id for r in found.recordings} == {"unknown"}
    assert [r.call_id for r in found.recordings] == ["a", "b"]
    assert found.ignored == ["notes.txt"]
    assert found.recordings[0].started_at.tzinfo is not None  # file time, in the site's timezone
    assert found.recordings[0].agent_channel == "left"


def test_duplicate_stems_get_distinct_call_ids(tmp_path):
    folder_with(tmp_path, ("x/1.wav", "y/1.wav"))
    ids = [r.call_id for r in discover_recordings(tmp_path, InputOptions()).recordings]
    assert ids == ["x__1", "y__1"]


def test_manifest_rows_with_defaults(tmp_path):
    folder_with(tmp_path, manifest="\ufefffile,agent_id\na.wav,A1\nb.flac,A2\n")  # Excel's BOM
    found = discover_recordings(tmp_path, InputOptions(agent_channel="right", company="海尔斯科技"))
    assert found.errors == []
    a, b = found.recordings
    assert (a.call_id, a.agent_id, a.agent_channel, a.company) == ("a", "A1", "right", "海尔斯科技")
    assert b.agent_id == "A2"


def test_manifest_full_row(tmp_path):
    folder_with(tmp_path, ("a.wav",), manifest=HEADER + "a.wav,A1,c-1,2026-11-20T09:30:00,mono,星河通信\n")
    (rec,) = discover_recordings(tmp_path, InputOptions(timezone="Asia/Shanghai")).recordings
    assert rec.call_id == "c-1" and rec.agent_channel == "mono" and rec.company == "星河通信"
    # a timestamp without offset is local time at the contact centre
    assert rec.started_at.utcoffset() == timedelta(hours=8)
    assert rec.started_at.replace(tzinfo=None) == datetime(2026, 11, 20, 9, 30)


@pytest.mark.parametrize("row, message", [
    ("missing.wav,A1,,,,", "does not exist"),
    ("a.wav,,,,,", "agent_id is empty"),
    ("a.wav,A1,,yesterday,,", "not an ISO 8601"),
    ("a.wav,A1,,,middle,", "agent_channel"),
    ("../a.wav,A1,,,,", "outside the input folder"),
    (",A1,,,,", "file column is empty"),
    ("a.wav,A1,,,,,extra", "more fields"),
])
def test_bad_manifest_rows_become_errors_and_the_rest_goes_on(tmp_path, row, message):
    folder = tmp_path / "in"
    folder_with(folder, ("a.wav", "b.flac"), manifest=HEADER + row + "\nb.flac,A2,,,,\n")
    (tmp_path / "a.wav").write_bytes(b"x")  # the target of ../a.wav exists but is outside
    found = discover_recordings(folder, InputOptions())
    assert [r.file for r in found.recordings] == ["b.flac"]
    row_errors = [e for e in found.errors if e.stage == "manifest"]
    assert len(row_errors) == 1
    assert message in row_errors[0].message and "line 2" in row_errors[0].message


def test_duplicates_in_manifest(tmp_path):
    folder_with(tmp_path, manifest=HEADER + "a.wav,A1,x,,,\nb.flac,A1,x,,,\na.wav,A1,y,,,\n")
    found = discover_recordings(tmp_path, InputOptions())
    assert [r.call_id for r in found.recordings] == ["x"]
    messages = sorted(e.message for e in found.errors)
    assert "call_id 'x' is used twice" in messages[0] and "line 3" in messages[0]
    assert "listed twice" in messages[1] and "line 4" in messages[1]


def test_audio_file_not_in_manifest_is_recorded(tmp_path):
    folder_with(tmp_path, ("a.wav", "b.flac"), manifest="file,agent_id\na.wav,A1\n")
    found = discover_recordings(tmp_path, InputOptions())
    assert [r.file for r in found.recordings] == ["a.wav"]
    (error,) = found.errors
    assert (error.file, error.error_type, error.stage) == ("b.flac", "NotInManifestError", "discover")


@pytest.mark.parametrize("header, message", [
    ("file,call_id\n", "missing required column"),
    ("agent_id\n", "missing required column"),
    ("file,agent_id,agent_chanel\n", "unknown column"),
])
def test_bad_manifest_header_fails_the_run(tmp_path, header, message):
    folder_with(tmp_path, manifest=header)
    with pytest.raises(ManifestError, match=message):
        discover_recordings(tmp_path, InputOptions())


def test_missing_input_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        discover_recordings(tmp_path / "nope", InputOptions())


def test_who_hung_up_and_the_customers_rating_come_in_every_common_spelling(tmp_path):
    rows = ["a.wav,A1,坐席挂机,5", "b.wav,A1,CUSTOMER_DISCONNECT,非常不满意", "c.wav,A1,Customer,４",
            "d.wav,A1,system,3.0", "e.wav,A1,,", "f.wav,A1,客户先挂,满意"]
    folder_with(tmp_path, [r.split(",")[0] for r in rows],
                manifest="file,agent_id,hangup_by,satisfaction\n" + "\n".join(rows) + "\n")
    found = discover_recordings(tmp_path, InputOptions())
    assert found.errors == []
    assert [(r.hangup_by, r.satisfaction) for r in found.recordings] == [
        ("agent", 5), ("customer", 1), ("customer", 4), ("other", 3), (None, None), ("customer", 4)]


@pytest.mark.parametrize("row, message", [
    ("a.wav,A1,caller,", "hangup_by 'caller' is not one of agent, customer, other"),
    ("a.wav,A1,,6", "satisfaction '6' is not a rating from 1 to 5"),
    ("a.wav,A1,,4.5", "satisfaction '4.5'"),
    ("a.wav,A1,,好评", "satisfaction '好评'"),
])
def test_a_bad_hangup_or_rating_is_an_error_naming_its_line(tmp_path, row, message):
    folder_with(tmp_path, ("a.wav", "b.wav"), manifest="file,agent_id,hangup_by,satisfaction\n" + row + "\nb.wav,A2,,\n")
    found = discover_recordings(tmp_path, InputOptions())
    assert [r.file for r in found.recordings] == ["b.wav"]
    (error,) = found.errors
    assert message in error.message and "manifest.csv line 2" in error.message


def test_a_folder_or_a_fifo_named_as_audio_is_an_error_not_skipped(tmp_path):
    """Without a manifest they were skipped without a word; with one, the error said the file did not
    exist."""
    import os

    folder_with(tmp_path, ("a.wav",))
    (tmp_path / "b.wav").mkdir()
    os.mkfifo(tmp_path / "c.wav")
    found = discover_recordings(tmp_path, InputOptions())
    assert [r.file for r in found.recordings] == ["a.wav"]
    messages = {e.file: e.message for e in found.errors}
    assert "b.wav is named as audio but is a folder" in messages["b.wav"]
    assert "c.wav is named as audio but is a named pipe (FIFO)" in messages["c.wav"]
    (tmp_path / "manifest.csv").write_text("file,agent_id\na.wav,A1\nb.wav,A1\nc.wav,A1\n", encoding="utf-8")
    found = discover_recordings(tmp_path, InputOptions())
    messages = {e.file: e.message for e in found.errors}
    assert [r.file for r in found.recordings] == ["a.wav"] and len(found.errors) == 2
    assert "file 'b.wav' is a folder: not a recording" in messages["b.wav"]
    assert "line 4: file 'c.wav' is a named pipe (FIFO)" in messages["c.wav"]

"""The fault suite: what contact centres really send, and nights that are killed, run twice at once or
cut off from the network. Every input must end scored, unscorable or failed, with its reason, and no
fault may leave a state from which a later night scores anything wrongly."""

import json
import os
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import InputOptions
from pipeline.errors import ManifestError, OutputBusyError
from pipeline.schemas import TABLES, table_key
from pipeline.storage.lock import LOCK_NAME, OutputLock
from pipeline.storage.parquet import read_table
from pipeline.transcribe.audio import decode_audio
from pipeline.transcribe.discover import discover_recordings
from tests.conftest import DATA, ROOT

RATE = 16000
SPEECH = DATA / "long_hold_8k_stereo.flac"  # 2 voices, ~6 s of agent speech, a 12 s hold


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Float samples (channels, n) as 16-bit PCM WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").T.copy()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(samples.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def fault_folder(folder: Path) -> dict[str, tuple[str, str]]:
    """Recordings as contact centres send them, and what each must become: file -> (status, a piece of
    the reason, or the errors table's stage for failures)."""
    speech = decode_audio(SPEECH).channels_data
    rng = np.random.default_rng(7)
    (folder / "empty.wav").parent.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    whole = write_wav(folder / "_whole.wav", speech).read_bytes()
    (folder / "_whole.wav").unlink()
    (folder / "header_only.wav").write_bytes(whole[:44])
    (folder / "notes.wav").write_text("会议记录：这不是录音。\n", encoding="utf-8")
    (folder / "random.wav").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    write_wav(folder / "surround.wav", np.zeros((3, RATE)))
    (folder / "tiny.wav").write_bytes(whole[:3000])  # 0.09 s, and the header promises much more
    (folder / "cut_in_half.wav").write_bytes(whole[: len(whole) // 2])
    write_wav(folder / "silence.wav", np.zeros((2, 30 * RATE)))
    write_wav(folder / "half_second.wav", speech[:, int(2.6 * RATE): int(3.1 * RATE)])
    write_wav(folder / "dead_agent.wav", np.stack([np.zeros(speech.shape[1]), speech[1]]))
    write_wav(folder / "dead_customer.wav", np.stack([speech[0], np.zeros(speech.shape[1])]))
    write_wav(folder / "clipped.wav", np.clip(speech * 30, -1, 1))
    write_wav(folder / "noisy.wav", speech + rng.normal(0, 0.01, speech.shape))
    positions = np.arange(0, speech.shape[1], RATE / 11025)
    resampled = np.stack([np.interp(positions, np.arange(speech.shape[1]), ch) for ch in speech])
    write_wav(folder / "rate_11025.wav", resampled, 11025)
    shutil.copy(SPEECH, folder / "录音 一号.flac")  # a Chinese name with a space
    (folder / "sub").mkdir()
    shutil.copy(SPEECH, folder / "sub" / "嵌套.flac")
    shutil.copy(DATA / "fmt_ulaw_8k_stereo.wav", folder / "ulaw.wav")
    shutil.copy(DATA / "fmt_alaw_8k_stereo.wav", folder / "alaw.wav")
    outside = folder.parent / "outside.wav"
    shutil.copy(SPEECH, outside)
    (folder / "link_out.wav").symlink_to(outside)
    return {
        "empty.wav": ("error", "decode"),
        "header_only.wav": ("error", "decode"),
        "notes.wav": ("error", "decode"),
        "random.wav": ("error", "decode"),
        "surround.wav": ("error", "decode"),
        "link_out.wav": ("error", "discover"),
        "tiny.wav": ("unscorable", "cut off"),
        "cut_in_half.wav": ("unscorable", "cut off"),
        "silence.wav": ("unscorable", "0.0 s of speech in the recording"),  # two identical channels: mono
        "half_second.wav": ("unscorable", "of speech on the agent's channel"),
        "dead_agent.wav": ("unscorable", "0.0 s of speech on the agent's channel"),
        "ulaw.wav": ("unscorable", "of speech on the agent's channel"),  # 2.5 s: too short to score
        "alaw.wav": ("unscorable", "of speech on the agent's channel"),
        "dead_customer.wav": ("ok", ""),
        "clipped.wav": ("ok", ""),
        "noisy.wav": ("ok", ""),
        "rate_11025.wav": ("ok", ""),
        "录音 一号.flac": ("ok", ""),
        "sub/嵌套.flac": ("ok", ""),
    }


def test_every_broken_or_odd_recording_ends_scored_unscorable_or_failed_with_its_reason(tmp_path, model):
    from pipeline.night import run_night

    folder = tmp_path / "in"
    expected = fault_folder(folder)
    night = run_night(folder, tmp_path / "out").summary
    calls = read_table(tmp_path / "out", "calls").set_index("file")
    errors = read_table(tmp_path / "out", "errors").set_index("file")
    assert sorted(calls.index) == sorted(expected)  # every input has a calls row, nothing else does
    for file, (status, detail) in expected.items():
        row = calls.loc[file]
        assert row["status"] == status, (file, row["status"], row["status_reason"])
        if status == "error":
            assert errors.loc[file, "stage"] == detail and row["status_reason"], file
            assert "Errno" not in row["status_reason"], row["status_reason"]
            # a plain reason: only a real 3-channel file is told to split or down-mix
            assert ("down-mix" in row["status_reason"]) == (file == "surround.wav"), row["status_reason"]
        elif status == "unscorable":
            assert detail in row["status_reason"], (file, row["status_reason"])
        assert pd.isna(row["score"]) == (status != "ok"), file  # only whole conversations are scored
    assert "empty (0 bytes)" in errors.loc["empty.wav", "message"] and "3 channels" in errors.loc["surround.wav", "message"]
    assert "symbolic link" in errors.loc["link_out.wav", "message"]
    assert calls.loc["tiny.wav", "truncated"] and calls.loc["cut_in_half.wav", "truncated"]
    assert any("customer's channel carries no speech" in w for w in calls.loc["dead_customer.wav", "warnings"])
    assert (night.inputs, night.scored, night.unscorable, night.failed) == (19, 6, 7, 6)
    assert night.scored + night.unscorable + night.failed == night.inputs

    # no unscorable or failed recording is in any score, pass rate, rule rate or rank
    results = read_table(tmp_path / "out", "rule_results")
    assert set(results["call_id"]) == set(calls.query("status == 'ok'")["call_id"])
    day = read_table(tmp_path / "out", "agent_scores").query("period_type == 'day'")
    assert day["calls"].sum() == 6 and day["unscorable_calls"].sum() == 7 and day["error_calls"].sum() == 6
    scored = calls.query("status == 'ok'")
    for row in day.itertuples():
        mine = scored[(scored["agent_id"] == row.agent_id) & (scored["call_date"] == row.period)]
        assert row.mean_score == pytest.approx(mine["score"].mean()) if len(mine) else pd.isna(row.mean_score)


def gbk_manifest(folder: Path, encoding: str, bom: bool = False) -> None:
    text = "file,agent_id,company\na.wav,坐席001,星河通信\n"
    data = text.encode(encoding)
    (folder / "manifest.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    (folder / "a.wav").write_bytes(b"RIFF")


@pytest.mark.parametrize("encoding, bom", [("utf-8", False), ("utf-8", True), ("gbk", False), ("gb18030", False)])
def test_manifests_as_excel_writes_them(tmp_path, encoding, bom):
    gbk_manifest(tmp_path, encoding, bom)
    (recording,) = discover_recordings(tmp_path, InputOptions()).recordings
    assert (recording.agent_id, recording.company) == ("坐席001", "星河通信")


def test_a_manifest_in_another_encoding_is_named_with_the_way_out(tmp_path):
    gbk_manifest(tmp_path, "gbk")
    with pytest.raises(ManifestError, match=r"not UTF-8 text \(byte 0x[0-9a-f]{2} at position \d+\).*manifest_encoding"):
        discover_recordings(tmp_path, InputOptions(manifest_encoding="utf-8"))
    (tmp_path / "manifest.csv").write_bytes(b"file,agent_id\n" + bytes([0x81, 0x30]) + b",x\n")  # half a GB18030 char
    with pytest.raises(ManifestError, match=r"not UTF-8 nor GB18030 text"):
        discover_recordings(tmp_path, InputOptions())
    with pytest.raises(ManifestError, match="not an encoding Python knows"):
        discover_recordings(tmp_path, InputOptions(manifest_encoding="klingon"))


def test_one_link_policy_with_and_without_a_manifest(tmp_path):
    folder, outside = tmp_path / "in", tmp_path / "elsewhere"
    (folder / "sub").mkdir(parents=True)
    outside.mkdir()
    (folder / "sub" / "real.wav").write_bytes(b"RIFF")
    (outside / "x.wav").write_bytes(b"RIFF")
    (folder / "inside.wav").symlink_to(folder / "sub" / "real.wav")
    (folder / "out.wav").symlink_to(outside / "x.wav")
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (folder / "linked_folder").symlink_to(outside)
    (folder / "alias").symlink_to(folder / "sub")  # a folder link inside: its files would be found twice
    found = discover_recordings(folder, InputOptions())
    assert sorted(r.file for r in found.recordings) == ["inside.wav", "sub/real.wav"]
    refused = {e.file: e.message for e in found.errors}
    assert set(refused) == {"out.wav", "gone.wav", "linked_folder", "alias"}
    assert {e.error_type for e in found.errors} == {"LinkError"}
    for name in ("out.wav", "linked_folder"):
        assert "symbolic link to" in refused[name] and "outside the input folder" in refused[name]
    assert "broken symbolic link" in refused["gone.wav"] and "does not follow" in refused["alias"]
    # with a manifest: the link inside is followed, and covers the file it links to (one recording)
    (folder / "manifest.csv").write_text("file,agent_id\ninside.wav,A1\nout.wav,A1\n", encoding="utf-8")
    found = discover_recordings(folder, InputOptions())
    assert [(r.file, r.path) for r in found.recordings] == [("inside.wav", (folder / "sub" / "real.wav").resolve())]
    by_file = {e.file: e for e in found.errors}
    assert "line 3" in by_file["out.wav"].message and "symbolic link to" in by_file["out.wav"].message
    assert set(by_file) == {"out.wav", "gone.wav", "linked_folder", "alias"}  # refused links the manifest lacks, too


# ---- nights killed, run twice at once, cut off: through the night driver (a stand-in model)

RUN_COLUMNS = {"run_id", "processed_at", "occurred_at"}


def driver(input_dir: Path, out_dir: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.night_driver", str(input_dir), str(out_dir), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def tables_of(out: Path) -> dict[str, pd.DataFrame]:
    found = {}
    for table in TABLES:
        frame = read_table(out, table)
        frame = frame.drop(columns=[c for c in frame.columns if c in RUN_COLUMNS])
        key = [c for c in table_key(table) if c in frame.columns] + (["stage"] if table == "errors" else [])
        found[table] = frame.sort_values(key).reset_index(drop=True)
    return found


def assert_same_tables(out: Path, clean: Path) -> None:
    mine, theirs = tables_of(out), tables_of(clean)
    for table in TABLES:
        pd.testing.assert_frame_equal(mine[table], theirs[table], obj=table)


def two_nights(folder: Path) -> tuple[str, str]:
    """Night 1: two calls on the 19th. Night 2: the first moved to the 20th, the second unchanged
    (reused), a third new, and a manifest row whose file is missing."""
    shutil.copy(SPEECH, folder / "a.flac")
    shutil.copy(SPEECH, folder / "b.flac")
    shutil.copy(DATA / "mono_8k.wav", folder / "c.wav")
    header = "file,agent_id,call_id,started_at,agent_channel\n"
    night1 = header + "a.flac,A1,a,2026-11-19T09:00:00+08:00,left\nb.flac,A2,b,2026-11-19T10:00:00+08:00,left\n"
    night2 = (header + "a.flac,A1,a,2026-11-20T09:00:00+08:00,left\nb.flac,A2,b,2026-11-19T10:00:00+08:00,left\n"
              "c.wav,A3,c,2026-11-20T11:00:00+08:00,mono\ngone.wav,A4,d,2026-11-20T12:00:00+08:00,left\n")
    return night1, night2


def night_two_ready(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Night 1 run (:func:`two_nights`) into ``after-night-1``, the manifest set for night 2, and a copy of
    the output for a clean night 2: the input folder, that output and the copy."""
    folder = tmp_path / "in"
    folder.mkdir()
    night1, night2 = two_nights(folder)
    (folder / "manifest.csv").write_text(night1, encoding="utf-8")
    base = tmp_path / "after-night-1"
    assert driver(folder, base).returncode == 0
    (folder / "manifest.csv").write_text(night2, encoding="utf-8")
    clean = tmp_path / "clean"
    shutil.copytree(base, clean)
    return folder, base, clean


def test_a_night_killed_at_any_point_leaves_nothing_a_rerun_gets_wrong(tmp_path):
    folder, base, clean = night_two_ready(tmp_path)
    done = driver(folder, clean)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["inputs"], summary["scored"], summary["unscorable"], summary["failed"]) == (4, 2, 1, 1)
    # kill it while it transcribes, at the first, middle and last file it stages, when the journal is
    # written (the first replace), at the first and middle move, and after the last move
    writes, replaces = summary["counts"]["write"], summary["counts"]["replace"]
    assert writes >= 10 and replaces >= 10  # the journal, then one move per file (a file rewritten in a night moves once)
    points = ["transcribe:1", "write:1", f"write:{writes // 2}", f"write:{writes}", "replace:1", "replace:2",
              f"replace:{replaces // 2}", f"replace:{replaces}"]
    for point in points:
        out = tmp_path / f"killed-{point.replace(':', '-')}"
        shutil.copytree(base, out)
        killed = driver(folder, out, "--kill-at", point)
        assert killed.returncode == -9, (point, killed.stdout[-500:], killed.stderr[-2000:])  # SIGKILL
        rerun = driver(folder, out)
        assert rerun.returncode == 0, (point, rerun.stderr[-2000:])
        assert not (out / "_staging").exists() and not (out / "_commit.json").exists()
        assert_same_tables(out, clean)


def test_a_stored_transcript_missing_its_utterances_is_transcribed_again_not_reused(tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = tmp_path / "in"
    folder.mkdir()
    night1, _ = two_nights(folder)
    (folder / "c.wav").unlink()
    (folder / "manifest.csv").write_text(night1, encoding="utf-8")
    out = tmp_path / "out"
    assert driver(folder, out).returncode == 0
    clean = tmp_path / "clean"
    shutil.copytree(out, clean)
    # what an old crash between writing calls and utterances left: a's utterances are gone
    for part in (out / "utterances").rglob("*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.filter(pc.not_equal(table["call_id"], "a")), part)
    rerun = driver(folder, out)
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert (summary["processed"], summary["cached"]) == (1, 1)  # a transcribed again, b reused
    assert "a: the stored transcript is incomplete" in rerun.stderr
    assert_same_tables(out, clean)


def test_a_second_night_on_the_same_output_is_refused_with_who_holds_it(tmp_path, capsys):
    from pipeline.night import run_night

    folder = tmp_path / "in"
    folder.mkdir()
    night1, _ = two_nights(folder)
    (folder / "manifest.csv").write_text(night1, encoding="utf-8")
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "tests.night_driver", str(folder), str(out), "--hold-s", "4"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (out / LOCK_NAME).exists() or not (out / LOCK_NAME).read_text():
            assert time.time() < deadline and first.poll() is None, first.stderr.read()
            time.sleep(0.1)
        with pytest.raises(OutputBusyError, match=rf"being written by another callqa night \(pid {first.pid} "):
            run_night(folder, out)
        from flows.cli import main

        assert main(["run", str(folder), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("callqa: error (store): ") and f"pid {first.pid}" in err and err.count("\n") == 1
    finally:
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr[-2000:]
    assert len(read_table(out, "calls")) == 3  # the first night's tables, whole (c.wav: not in its manifest)


def test_a_lock_left_by_a_killed_night_is_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text(json.dumps({"what": "night", "pid": 999999, "host": "h", "started_at": "then"}))
    with OutputLock(out, "night") as lock:  # nobody holds the flock: the file is what a dead night left
        assert lock.previous["pid"] == 999999
    assert "ended without releasing it" in caplog.text
    assert (out / LOCK_NAME).read_text() == ""  # released cleanly this time


@pytest.mark.model
def test_a_night_runs_with_the_network_cut(tmp_path):
    """callqa run, Prefect server included, in a network namespace with only loopback."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0 or not shutil.which("ip"):
        pytest.skip("no network namespaces here (unshare -n needs root or user namespaces)")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SPEECH, folder / "a.flac")
    callqa = Path(sys.executable).with_name("callqa")
    env = {**os.environ, "PREFECT_API_URL": "", "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run(["unshare", "-n", "sh", "-c", f'ip link set lo up && exec "{callqa}" run "{folder}" '
                                                        f'--out "{tmp_path / "out"}"'],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert read_table(tmp_path / "out", "calls")["status"].tolist() == ["ok"]


def test_what_a_night_transcribed_outlives_its_failure_to_write(tmp_path):
    """A night that dies after transcribing, while writing its tables (a full disk, a kill before the
    journal), left its rows staged; the next night publishes them first and transcribes nothing again,
    and its tables are a clean night's."""
    folder, base, clean = night_two_ready(tmp_path)
    done = json.loads(driver(folder, clean).stdout.strip().splitlines()[-1])
    assert done["processed"] == 1  # c.wav is new; a and b were transcribed by night 1
    out = tmp_path / "failed-writing"
    shutil.copytree(base, out)
    assert driver(folder, out, "--kill-at", "publish:1").returncode == -9  # everything staged, nothing written
    assert list((out / "_staging").glob("night-*"))
    rerun = driver(folder, out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert (summary["processed"], summary["cached"]) == (0, 3)  # c.wav's transcription was kept
    assert summary["counts"]["transcribe"] == 0
    assert "an earlier night staged but never wrote (night-driver)" in rerun.stderr
    assert not (out / "_staging").exists()
    assert_same_tables(out, clean)

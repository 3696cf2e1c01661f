"""Trainers' example calls: picking, clips around the finding, the shared page (opened in Chromium)."""

import json
import os
import re
import shutil
import subprocess
import wave

import pytest

from pipeline.errors import ExampleSelectionError
from pipeline.review import examples, explore

pytestmark = pytest.mark.model

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def results(demo_truth_results):
    return explore.load_results(demo_truth_results)


def test_worst_examples_are_the_failures_most_serious_first(results):
    worst = examples.pick_examples(results, "forbidden.phrase", "worst", 5)
    assert {e.call_id for e in worst} == {"call03", "call04"}  # the two calls with forbidden phrases
    ranks = [examples.SEVERITIES.index(e.severity) for e in worst]
    assert ranks == sorted(ranks, reverse=True)
    for ex in worst:
        assert ex.outcome == "fail" and ex.findings and ex.at_s == min(f["start_s"] for f in ex.findings)
    heavy = {e.call_id for e in worst if e.severity == "重"}
    assert heavy  # the corpus has a 重 forbidden phrase, so the filter has something to keep
    only_heavy = examples.pick_examples(results, "forbidden.phrase", "worst", 5, min_severity="重")
    assert {e.call_id for e in only_heavy} == heavy and all(e.severity == "重" for e in only_heavy)


def test_best_examples_are_clean_passes_highest_score_first(results):
    best = examples.pick_examples(results, "closing.farewell", "best", 3)
    assert len(best) == 3
    assert all(e.outcome == "pass" and e.passed for e in best)
    assert [e.score for e in best] == sorted((e.score for e in best), reverse=True)
    assert all(e.at_s > 20 for e in best)  # the farewell is at the end of the call, not the start


def test_filters_by_agent_and_clear_errors(results):
    assert [e.call_id for e in examples.pick_examples(results, "opening.greeting", "worst", 5, agent="A1003")] == [
        "call03"]
    assert examples.pick_examples(results, "opening.greeting", "worst", 5, agent="A1001") == []
    with pytest.raises(ExampleSelectionError, match="rules there: .*forbidden.phrase"):
        examples.pick_examples(results, "no.such.rule")
    with pytest.raises(ExampleSelectionError, match="severity"):
        examples.pick_examples(results, "forbidden.phrase", min_severity="huge")


def test_export_cuts_clips_around_the_finding_with_both_channels(results, tmp_path):
    picked = examples.pick_examples(results, "hold.notice", "worst", 1)  # call07: an unannounced hold
    page = examples.export_examples(results, picked, tmp_path / "ex", pad_s=3.0, max_focus_s=20.0)
    ex = picked[0]
    assert ex.call_id == "call07" and ex.clip and ex.audio_error is None
    with wave.open(str(tmp_path / "ex" / ex.clip)) as clip:
        seconds = clip.getnframes() / clip.getframerate()
        assert clip.getnchannels() == 2 and clip.getframerate() == 16000
    focus = examples.focus_end(ex, 20.0) - ex.at_s
    assert ex.until_s - ex.at_s <= focus <= 20.0  # the hold, and any later finding of the rule within 20 s
    assert seconds == pytest.approx(focus + 6.0, abs=0.05)  # 3 s of padding either side
    assert ex.play_from_s == pytest.approx(3.0) and ex.clip_start_s == pytest.approx(ex.at_s - 3.0)
    stored = json.loads((tmp_path / "ex" / "examples.json").read_text(encoding="utf-8"))
    assert stored["examples"][0]["clip"] == ex.clip and stored["examples"][0]["rule_id"] == "hold.notice"
    text = page.read_text(encoding="utf-8")
    assert f'src="{ex.clip}#t=3.00"' in text and "等待前告知" in text
    assert "<script src" not in text and "<link" not in text  # self-contained


def test_the_clip_stretches_over_the_rules_later_findings(results):
    ex = next(e for e in examples.pick_examples(results, "forbidden.phrase", "worst", 2) if e.call_id == "call04")
    later = [f for f in ex.findings if f["start_s"] > ex.until_s]
    assert later  # call04 has forbidden phrases all through the call
    end = examples.focus_end(ex, 20.0)
    assert end == max(f["end_s"] for f in ex.findings if f["start_s"] <= ex.at_s + 20.0) or end == ex.at_s + 20.0
    # the evidence span, but never past max_focus_s
    assert min(ex.until_s, ex.at_s + 1.0) - 1e-9 <= examples.focus_end(ex, 1.0) <= ex.at_s + 1.0


def test_a_missing_recording_is_listed_with_the_reason(results, tmp_path):
    elsewhere = tmp_path / "moved"
    elsewhere.mkdir()  # the recordings folder given, but the file is not in it
    picked = examples.pick_examples(results, "forbidden.phrase", "worst", 1)
    page = examples.export_examples(results, picked, tmp_path / "ex", recordings_dir=elsewhere)
    assert picked[0].clip is None and "recording not found" in picked[0].audio_error
    assert "没有音频" in page.read_text(encoding="utf-8")
    assert json.loads((tmp_path / "ex" / "examples.json").read_text(encoding="utf-8"))["examples"][0]["audio_error"]


def test_callqa_examples_command(demo_truth_results, tmp_path, capsys):
    from flows.cli import main

    out = tmp_path / "page"
    assert main(["examples", "--rule", "forbidden.phrase", "--worst", "2", "--results", str(demo_truth_results),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "call04" in printed and "index.html" in printed
    assert len(list((out / "clips").glob("*.wav"))) == 2
    assert main(["examples", "--rule", "forbidden.phrase", "--best", "1", "--agent", "A1002", "--results",
                 str(demo_truth_results), "--out", str(out)]) == 0
    assert len(list((out / "clips").glob("*.wav"))) == 1  # the new export replaced the old clips
    assert main(["examples", "--rule", "nope", "--results", str(demo_truth_results), "--out", str(out)]) == 1
    assert "no results for rule 'nope'" in capsys.readouterr().err
    assert main(["examples", "--rule", "forbidden.phrase", "--results", str(tmp_path / "empty"),
                 "--out", str(out)]) == 1
    assert "no callqa output" in capsys.readouterr().err


def chromium_dom(page) -> str:
    """The page's DOM after Chromium loaded it (and its audio metadata), headless."""
    if CHROMIUM is None:
        if os.environ.get("CALLQA_REQUIRE_BROWSER"):
            pytest.fail("CALLQA_REQUIRE_BROWSER is set but Chromium is not installed (apt-get install chromium)")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); CI installs it")
    profile = page.parent / ".chromium-profile"
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def test_the_page_opens_in_chromium_and_its_players_load_their_clips(results, tmp_path):
    picked = examples.pick_examples(results, "forbidden.phrase", "worst", 2)
    page = examples.export_examples(results, picked, tmp_path / "ex")
    dom = chromium_dom(page)
    assert 'data-examples="2"' in dom
    assert len(re.findall(r'<section class="example worst"', dom)) == 2
    players = re.findall(r"<audio[^>]*>", dom)
    assert len(players) == 2
    for tag in players:
        src = re.search(r'src="([^"#]+)', tag).group(1)
        assert (tmp_path / "ex" / src).is_file()
        assert 'data-state="ok"' in tag, tag  # Chromium decoded the clip's header
        assert float(re.search(r'data-duration="([\d.]+)"', tag).group(1)) > 3

    (tmp_path / "ex" / picked[1].clip).unlink()  # a clip that is gone is reported by the page itself
    dom = chromium_dom(page)
    assert len(re.findall(r'data-state="error"', dom)) == 1 and "音频无法播放" in dom


def test_a_mono_example_says_how_its_speakers_were_found_and_marks_untrusted_lines(results):
    from pipeline.review.examples import _channels_note, _who

    picked = examples.pick_examples(results, "opening.greeting", "best", n=20)
    mono = next(ex for ex in picked if ex.call_id == "call12")
    assert mono.roles_method == "diarised+words" and 0.7 <= mono.roles_confidence <= 1.0
    assert _channels_note(mono).startswith("单声道录音：按声音分出说话人") and f"{mono.roles_confidence:.2f}" in _channels_note(mono)
    stereo = next(ex for ex in picked if ex.call_id != "call12")
    assert stereo.roles_method == "channels" and _channels_note(stereo).startswith("立体声")
    assert _who({"speaker": "agent", "role_confidence": 0.95}) == "坐席"
    assert _who({"speaker": "other", "role_confidence": 1.0}) == "第三方"
    assert "坐席？" in _who({"speaker": "agent", "role_confidence": 0.55}) and "0.55" in _who(
        {"speaker": "agent", "role_confidence": 0.55})

"""The command line: documented options, fast and clear failures."""

import subprocess
import sys

import pytest

from flows.cli import build_parser, main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_documents_every_command_and_option():
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("run", "demo", "model", "config"):
        assert command in top.stdout
    run_help = run_cli("run", "--help").stdout
    for option in ("INPUT_DIR", "--out", "--config", "--concurrency"):
        assert option in run_help
    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices.values():  # every option has help text
        for option in action._actions:
            assert option.help, (action.prog, option.dest)


def test_missing_input_folder_fails_fast_with_a_reason(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 1
    assert "input folder" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unwritable_output_fails_fast(tmp_path, capsys):
    import os

    if os.geteuid() == 0:  # root writes anywhere: use a path under a file instead
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "out"
    (tmp_path / "in").mkdir()
    assert main(["run", str(tmp_path / "in"), "--out", str(out)]) == 1
    assert "output folder" in capsys.readouterr().err


def test_bad_config_fails_fast(tmp_path, capsys):
    (tmp_path / "callqa.toml").write_text("[asr]\nbeem = 1\n")
    assert main(["config", "--config", str(tmp_path / "callqa.toml")]) == 1
    assert "unknown option" in capsys.readouterr().err


def test_config_prints_the_effective_options(monkeypatch, capsys):
    monkeypatch.setenv("CALLQA_ASR_BEAM_SIZE", "3")
    assert main(["config"]) == 0
    assert '"beam_size": 3' in capsys.readouterr().out


def test_rules_check_lists_the_rules(capsys):
    assert main(["rules", "check"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "forbidden.phrase" in out and "15 rules" in out


def test_rules_check_reports_every_problem_with_file_and_line(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("[x]\n@severity = huge\n好\n", encoding="utf-8")
    (tmp_path / "rules.toml").write_text('[rules."r"]\ntype = "nope"\n', encoding="utf-8")
    assert main(["rules", "check", "--lexicons", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "a.txt:2" in err and "rules.toml:2" in err


def test_rules_test_runs_a_dialogue(tmp_path, capsys):
    dialogue = tmp_path / "call.txt"
    dialogue.write_text("[0.5s] agent: 喂，什么事？\n[3s] customer: 查话费。\n[6s] agent: 我不知道。\n", encoding="utf-8")
    assert main(["rules", "test", str(dialogue)]) == 0
    out = capsys.readouterr().out
    assert "opening.greeting" in out and "fail" in out and "不知道" in out

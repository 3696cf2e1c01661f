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


def test_demo_has_every_option_the_run_it_starts_reads():
    # callqa demo is callqa run on demo/recordings: a run option it lacks ends the demo in an AttributeError
    run = vars(build_parser().parse_args(["run", "in", "--out", "out"]))
    demo = vars(build_parser().parse_args(["demo"]))
    assert set(run) - {"input_dir"} <= set(demo)


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
    assert "OK" in out and "forbidden.phrase" in out and "21 rules" in out and "service.complaint_ack" in out


def outcome_in_table(out: str, rule_id: str) -> str:
    """The outcome cell of a rule's row in the printed rule results table."""
    row = next(line for line in out.splitlines() if f"│ {rule_id} " in line)
    return row.split("│")[2].strip()


def test_rules_test_runs_a_dialogue(tmp_path, capsys):
    dialogue = tmp_path / "call.txt"
    dialogue.write_text("[0.5s] agent: 喂，什么事？\n[3s] customer: 查话费。\n[6s] agent: 我不知道。\n", encoding="utf-8")
    assert main(["rules", "test", str(dialogue)]) == 0
    out = capsys.readouterr().out
    assert outcome_in_table(out, "opening.greeting") == "fail"  # no 您好 in the opening
    assert outcome_in_table(out, "hold.notice") == "not_applicable"  # no hold in this dialogue
    assert outcome_in_table(out, "answer.delay") == "pass"
    assert "不知道" in out  # the forbidden phrase, among the findings
    dialogue.write_text("[0.5s] agent: 您好，星河通信，请讲。\n[3s] customer: 查话费。\n[6s] agent: 好的，谢谢，再见。\n",
                        encoding="utf-8")
    assert main(["rules", "test", str(dialogue)]) == 0
    assert outcome_in_table(capsys.readouterr().out, "opening.greeting") == "pass"


def test_rules_check_prints_each_rules_effective_options(capsys):
    assert main(["rules", "check"]) == 0
    out = capsys.readouterr().out
    assert "hallucination list" in out and "OK" in out
    row = " ".join(line for line in out.splitlines() if "hold.notice" in line or "edge_s" in line)
    assert "check=announced" in row and "edge_s=0.5" in row  # a default the file does not spell out


def _bad_lexicons(folder):
    folder.mkdir()
    (folder / "a.txt").write_text("[x]\n@severity = huge\n好\n", encoding="utf-8")
    (folder / "rules.toml").write_text('[rules."r"]\ntype = "nope"\n', encoding="utf-8")
    return folder


def _config(tmp_path, text):
    path = tmp_path / "callqa.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# every error a user can cause: (command line, the stage the one-line message names)
USER_ERRORS = {
    "missing input folder": (lambda t: ["run", str(t / "nope"), "--out", str(t / "out")], "discover"),
    "unknown config option": (lambda t: ["config", "--config", _config(t, "[asr]\nbeem = 1\n")], "config"),
    "config path is a folder": (lambda t: ["config", "--config", str(t)], "config"),
    "bad rubric": (lambda t: ["rules", "check", "--rubric", _config(t, "[score]\npass_mark = 200\n")], "rubric"),
    "bad hallucination list": (lambda t: ["rules", "check", "--config", _config(
        t, f"[guard]\nphrases_file = '{t / 'missing.txt'}'\n")], "guard"),
    "run with a bad hallucination list": (lambda t: ["run", str(t), "--out", str(t / "out"), "--config", _config(
        t, f"[guard]\nphrases_file = '{t / 'missing.txt'}'\n")], "guard"),
    "run with a model that is not there": (lambda t: ["run", str(t), "--out", str(t / "out"), "--config", _config(
        t, f"[asr]\nmodel = '{t / 'no-model'}'\n")], "model"),
    "rules test without a dialogue": (lambda t: ["rules", "test"], "usage"),
    "rules test of a missing dialogue": (lambda t: ["rules", "test", str(t / "none.txt")], "dialogue"),
    "rescore a folder without results": (lambda t: ["rescore", str(t)], "discover"),
    "rescore from a bad date": (lambda t: ["rescore", str(t), "--from", "yesterday"], "usage"),
    "examples without results": (lambda t: ["examples", "--rule", "x", "--results", str(t), "--out", str(t / "x")],
                                 "results"),
    "examples of zero calls": (lambda t: ["examples", "--rule", "x", "--worst", "0", "--out", str(t / "x")], "usage"),
    "unknown command": (lambda t: ["transcribe"], "usage"),
    "missing --out": (lambda t: ["run", str(t)], "usage"),
    "unknown model action": (lambda t: ["model", "download"], "usage"),
}


@pytest.mark.parametrize("case", sorted(USER_ERRORS))
def test_every_user_error_is_one_line_and_exit_1(case, tmp_path, capsys):
    argv, stage = USER_ERRORS[case]
    code = main(argv(tmp_path))
    captured = capsys.readouterr()
    assert code == 1, captured
    assert captured.err.startswith(f"callqa: error ({stage}): ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err + captured.out


def test_a_file_with_several_problems_lists_each_under_one_error_line(tmp_path, capsys):
    assert main(["rules", "check", "--lexicons", str(_bad_lexicons(tmp_path / "lex"))]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "callqa: error (lexicon): 2 problems in the lexicons:"
    assert lines[1].strip().startswith("a.txt:2: ") and lines[2].strip().startswith("rules.toml:2: ")

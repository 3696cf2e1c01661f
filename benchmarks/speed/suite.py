"""The speed and accuracy suite: `callqa run` end to end against the script a user would write, in one run.

Usage:
    python benchmarks/speed/suite.py [--corpus DIR]... [--calls N] [--reuse OUT_DIR] [--skip-plain]
                                     [--config callqa.toml] [--report FILE]

First, what the model alone costs for a full 30-s window of speech with the night's decoding options
(the bound's unit). Then on each corpus with ``recordings/`` and ``truth/`` (default
``benchmarks/speed/corpus``; ``make bench`` names it and ``benchmarks/speed/short``, both built by
``make bench-corpus``: 64 stereo calls of 0.5-8 min, and 60 telephone-band calls of 20-90 s), one
after the other, nothing cached:

1. ``callqa run`` end to end as a user starts it (a subprocess: the local Prefect server's start, the
   model load and the writing of every table included), its peak memory sampled every 0.2 s over the
   whole process tree (the Prefect server included), and its own summary's seconds per stage and the
   windows it gave the model.
2. The plain script (``benchmarks/speed/plain_script.py``: faster-whisper beam 5, VAD on, both channels,
   one call after the other, threads pinned to the same cores as the night), then plain substring
   search of the same lexicon phrases in the channel texts (traditional -> simplified first, as anyone
   who has seen Whisper's Chinese does).

Printed (and written to ``--report``, markdown): per rule precision, recall and F1 of ``fail`` (the
finding) and accuracy of every outcome, for callqa and, on the rules a substring can judge, for the
plain script; agent and customer CER of both; seconds and x real time per stage and the bound (the
windows used x the cost of a window); end to end for both and their ratio; peak memory; and the corpora
side by side.

``--reuse OUT_DIR`` reads a night already run by this suite (its ``summary.json`` beside the tables)
instead of running one; ``--skip-plain`` leaves the plain script out.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from pipeline.config import load_config, resolve_concurrency  # noqa: E402
from pipeline.rules.lexicon import load_lexicons  # noqa: E402
from pipeline.storage.parquet import read_table  # noqa: E402
from pipeline.summary import stage_rows  # noqa: E402
from pipeline.text import cer_counts, normalise_text  # noqa: E402
from pipeline.transcribe.model import model_label, resolve_model  # noqa: E402
from pipeline.transcribe.privacy import mask_text  # noqa: E402
from benchmarks.verify.compare import COLUMNS as VERIFY_COLUMNS, before_after  # noqa: E402

DEFAULT_CORPUS = ROOT / "benchmarks" / "speed" / "corpus"
WORD_RULE_TYPES = {"keyword", "response"}  # rules whose verdict is about what was said
# the rules a plain substring search can judge: a phrase anywhere in the agent's text (no time window)
SUBSTRING_RULES = ("courtesy.ninhao", "courtesy.qingjiang", "courtesy.xiexie", "courtesy.baoqian",
                   "courtesy.zaijian", "forbidden.phrase", "forbidden.deflection")


class PeakMemory:
    """Samples the resident memory of a process and all its descendants until stopped: the peak of
    their sum, and the peak of the largest single process."""

    def __init__(self, pid: int, every_s: float = 0.2):
        import psutil

        self._root = psutil.Process(pid)
        self._every = every_s
        self.total = self.largest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                processes = [self._root, *self._root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            sizes = []
            for process in processes:
                try:
                    sizes.append(process.memory_info().rss)
                except psutil.Error:
                    pass
            if sizes:
                self.total, self.largest = max(self.total, sum(sizes)), max(self.largest, max(sizes))
            self._stop.wait(self._every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def timed_process(command: list[str], log: Path, env: dict | None = None) -> tuple[float, float, PeakMemory, int]:
    """Run a command to its end; its wall time, CPU seconds (user and system, of it and every descendant it
    waited for), peak memory and exit status (its output goes to ``log``). CPU seconds are the steadier
    figure on a shared machine: wall time also counts what other tenants took."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        memory = PeakMemory(process.pid)
        code = process.wait()
    memory.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - started, cpu, memory, code


def subset(corpus: Path, calls: int, work: Path) -> Path:
    """The corpus's first ``calls`` recordings, their manifest rows and truth, copied into ``work`` (hard
    links where they can be: a night refuses symbolic links out of its folder); the corpus if 0."""
    if not calls:
        return corpus
    files = sorted(p for p in (corpus / "recordings").iterdir() if p.suffix != ".csv")[:calls]
    for sub in ("recordings", "truth"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    for source, target in [(p, work / "recordings" / p.name) for p in files] + [
            (corpus / "truth" / f"{p.stem}.json", work / "truth" / f"{p.stem}.json") for p in files]:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    manifest = corpus / "recordings" / "manifest.csv"
    if manifest.is_file():
        lines = manifest.read_text(encoding="utf-8").splitlines()
        names = {p.name for p in files}
        kept = [line for line in lines[1:] if line.split(",", 1)[0] in names]
        (work / "recordings" / "manifest.csv").write_text("\n".join(lines[:1] + kept) + "\n", encoding="utf-8")
    return work


def rule_metrics(pairs: list[tuple[str, str]]) -> dict:
    """Precision, recall and F1 of ``fail`` and accuracy of every outcome over (got, expected) pairs."""
    tp = sum(g == "fail" and e == "fail" for g, e in pairs)
    fp = sum(g == "fail" and e != "fail" for g, e in pairs)
    fn = sum(g != "fail" and e == "fail" for g, e in pairs)
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else None
    return {"n": len(pairs), "fails": tp + fn, "precision": precision, "recall": recall, "f1": f1,
            "accuracy": sum(g == e for g, e in pairs) / len(pairs) if pairs else None,
            "false_alarms": fp, "misses": fn}


def callqa_verdicts(out: Path, truth: dict) -> dict[str, list[tuple[str, str]]]:
    results = read_table(out, "rule_results")
    got = {(r.call_id, r.rule_id): r.outcome for r in results.itertuples()}
    pairs: dict[str, list[tuple[str, str]]] = {}
    for call_id, t in truth.items():
        for rule_id, expected in t["expected"].items():
            pairs.setdefault(rule_id, []).append((got.get((call_id, rule_id), "no result"), expected))
    return pairs


def substring_verdicts(plain: dict, truth: dict, lexicons) -> dict[str, list[tuple[str, str]]]:
    """The plain script's verdicts: a rule's phrases searched in the agent channel's simplified text."""
    specs = {spec.rule_id: spec for spec in lexicons.rules}
    pairs: dict[str, list[tuple[str, str]]] = {}
    for rule_id in SUBSTRING_RULES:
        spec = specs.get(rule_id)
        if spec is None:
            continue
        patterns = spec.options.lexicon
        phrases = [p.text for gid, group in lexicons.groups.items() if any(fnmatch.fnmatch(gid, pat) for pat in patterns)
                   for p in group.phrases if "{" not in p.text]
        for call_id, t in truth.items():
            if rule_id not in t["expected"] or call_id not in plain:
                continue
            channel = 0 if t.get("agent_channel", "left") == "left" else 1
            text = normalise_text(plain[call_id]["texts"][channel])
            said = any(phrase in text for phrase in phrases)
            got = ("pass" if said else "fail") if spec.options.mode == "any" else ("fail" if said else "pass")
            pairs.setdefault(rule_id, []).append((got, t["expected"][rule_id]))
    return pairs


def cer(texts: dict[str, dict[str, str]], truth: dict, mask) -> dict[str, float]:
    """Agent and customer CER over all calls: ``texts[call_id][speaker]`` against the scripts."""
    totals = {}
    for speaker in ("agent", "customer"):
        edits = length = 0
        for call_id, t in truth.items():
            if call_id not in texts:
                continue
            reference = "".join(turn["text"] for turn in t["turns"] if turn["speaker"] == speaker)
            e, n = cer_counts(reference, texts[call_id].get(speaker, ""), mask)
            edits, length = edits + e, length + n
        totals[speaker] = edits / length if length else float("nan")
    return totals


def fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class Report:
    """Tables to the screen and, as markdown, to a file."""

    def __init__(self, console: Console):
        self.console = console
        self.lines: list[str] = []

    def table(self, title: str, columns: list[str], rows: list[list[str]], notes: str = "") -> None:
        table = Table(title=title)
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        self.console.print(table)
        self.lines += [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        self.lines += ["| " + " | ".join(row) + " |" for row in rows]
        if notes:
            self.console.print(notes, markup=False)
            self.lines += ["", notes]
        self.lines.append("")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, action="append", default=None,
                        help="a corpus (recordings/ and truth/); repeat for several, run one after the other "
                             "(default: the 64-call corpus)")
    parser.add_argument("--calls", type=int, default=0, help="only the first N recordings (default: all)")
    parser.add_argument("--config", type=Path, default=None, help="callqa.toml for the night (default: defaults)")
    parser.add_argument("--reuse", type=Path, default=None,
                        help="a night this suite ran before (its output folder; one corpus only)")
    parser.add_argument("--skip-plain", action="store_true", help="leave the plain script out")
    parser.add_argument("--keep", type=Path, default=None, help="keep the nights and the plain texts in this folder")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "speed" / "report.md")
    args = parser.parse_args()
    corpora = args.corpus or [DEFAULT_CORPUS]
    for corpus in corpora:
        if not (corpus / "recordings").is_dir() or not (corpus / "truth").is_dir():
            parser.error(f"{corpus}: no recordings/ and truth/ there (make bench-corpus builds the corpora)")
    if args.reuse and len(corpora) > 1:
        parser.error("--reuse reads one night: name one --corpus")
    console = Console(width=150)
    report = Report(console)
    work = Path(tempfile.mkdtemp(prefix="callqa-speed-"))
    keep = args.keep or work
    config = load_config(args.config)
    cores = os.cpu_count() or 1
    console.print("the model alone on full windows of speech (the bound's cost per window)…")
    workers = resolve_concurrency(config)
    per_window = window_cost(config, corpora[0], config.asr.cpu_threads or max(1, cores // workers), workers)
    headlines = [run_corpus(corpus, args, report, config, work / corpus.name, keep / corpus.name, per_window)
                 for corpus in corpora]
    if any(h is None for h in headlines):
        return 1
    side_by_side(report, headlines, per_window)
    header = [f"# Speed and accuracy suite: {', '.join(str(c) for c in corpora)}", "",
              f"{time.strftime('%Y-%m-%d %H:%M')}, {cores} cores, model {model_label(config.asr)}, "
              f"`{' '.join(sys.argv)}`", ""]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(header + report.lines), encoding="utf-8")
    console.print(f"report written to {args.report}" + (f"; nights and plain texts in {keep}" if args.keep else ""))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_corpus(corpus_dir: Path, args, report: "Report", config, work: Path, keep: Path,
               per_window: dict) -> dict | None:
    """One corpus: the night, the plain script, the tables; the headline figures (None: a run failed)."""
    console = report.console
    keep.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    name = corpus_dir.name
    corpus = subset(corpus_dir, args.calls, work / "corpus")
    truth = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((corpus / "truth").glob("*.json"))}
    lexicons = load_lexicons(config.rules.lexicons)
    workers = resolve_concurrency(config)
    cores = os.cpu_count() or 1
    threads = config.asr.cpu_threads * workers if config.asr.cpu_threads else cores
    python = sys.executable
    callqa = str(Path(python).with_name("callqa"))

    rows = {}
    if args.reuse:
        out, summary = args.reuse, json.loads((args.reuse / "summary.json").read_text(encoding="utf-8"))
        rows["callqa"] = dict(summary.get("suite", {}))
    else:
        out = keep / "night"
        if out.exists():
            shutil.rmtree(out)
        env = {**os.environ, "CALLQA_RUN_STATE_DIR": str(work / "state")}
        command = [callqa, "run", str(corpus / "recordings"), "--out", str(out), "--summary-json", str(work / "s.json")]
        if args.config:
            command += ["--config", str(args.config)]
        console.print(f"{name}: callqa run on {len(truth)} calls ({workers} in flight, {threads} cores)…")
        wall, cpu, memory, code = timed_process(command, keep / "callqa-run.log", env)
        if code not in (0, 2):
            console.print(f"callqa run failed with exit status {code}: see {keep / 'callqa-run.log'}")
            return None
        summary = json.loads((work / "s.json").read_text(encoding="utf-8"))
        if summary["failed"]:
            console.print(f"[bold red]{summary['failed']} of {summary['inputs']} inputs failed[/]: see the errors "
                          f"table in {out} and {keep / 'callqa-run.log'}; their rules count as no result")
        summary["suite"] = rows["callqa"] = {"wall_s": wall, "cpu_s": cpu, "peak_total": memory.total,
                                             "peak_largest": memory.largest}
        (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    audio_s = summary["audio_s"]

    plain = None
    if not args.skip_plain:
        location = resolve_model(config.asr.model).location
        console.print(f"{name}: the plain script on the same calls ({threads} cores)…")
        calls = ",".join(sorted(truth))
        wall, cpu, memory, code = timed_process(
            [python, str(ROOT / "benchmarks" / "speed" / "plain_script.py"), str(corpus / "recordings"),
             str(keep / "plain.json"), "--model", location, "--threads", str(threads), "--calls", calls],
            keep / "plain.log")
        if code != 0:
            console.print(f"the plain script failed with exit status {code}: see {keep / 'plain.log'}")
            return None
        plain = json.loads((keep / "plain.json").read_text(encoding="utf-8"))
        clock = time.perf_counter()
        plain_pairs = substring_verdicts(plain["calls"], truth, lexicons)
        search_s = time.perf_counter() - clock
        rows["plain"] = {"wall_s": wall + search_s, "cpu_s": cpu + search_s, "peak_total": memory.total,
                         "peak_largest": memory.largest}

    # accuracy
    specs = {spec.rule_id: spec for spec in lexicons.rules}
    pairs = callqa_verdicts(out, truth)
    metric_rows = []
    for rule_id, rule_pairs in pairs.items():
        m = rule_metrics(rule_pairs)
        kind = specs[rule_id].type if rule_id in specs else "?"
        row = [rule_id, "words" if kind in WORD_RULE_TYPES else kind, str(m["n"]), str(m["fails"]),
               fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"]), fmt(m["accuracy"]),
               str(m["false_alarms"]), str(m["misses"])]
        if plain is not None:
            p = rule_metrics(plain_pairs[rule_id]) if rule_id in plain_pairs else None
            row += [fmt(p["f1"]) if p else "", fmt(p["accuracy"]) if p else ""]
        metric_rows.append(row)
    every = [pair for rule_pairs in pairs.values() for pair in rule_pairs]
    total = rule_metrics(every)
    last = ["ALL", "", str(total["n"]), str(total["fails"]), fmt(total["precision"]), fmt(total["recall"]),
            fmt(total["f1"]), fmt(total["accuracy"]), str(total["false_alarms"]), str(total["misses"])]
    if plain is not None:
        searched = [pair for rule_id in plain_pairs for pair in pairs[rule_id]]
        plain_all = [pair for rule_pairs in plain_pairs.values() for pair in rule_pairs]
        last += [f"{rule_metrics(plain_all)['f1']:.3f} (callqa {rule_metrics(searched)['f1']:.3f})",
                 f"{rule_metrics(plain_all)['accuracy']:.3f} (callqa {rule_metrics(searched)['accuracy']:.3f})"]
    metric_rows.append(last)
    columns = ["rule", "judges", "calls", "truth fails", "precision", "recall", "F1", "accuracy",
               "false alarms", "misses"] + (["plain F1", "plain accuracy"] if plain is not None else [])
    report.table(f"{name}: per rule, {len(truth)} calls (precision, recall, F1: of fail, the finding)", columns, metric_rows,
                 "F1 '-': no call fails the rule and none was failed. Plain: substring search of the rule's lexicon "
                 "phrases in the agent channel's text (simplified), on the rules a substring can judge; ALL of "
                 "plain is over those rules only, with callqa's figure on the same rules beside it.")

    verify_rows, _totals = before_after(out, truth, lexicons)
    report.table(f"{name}: phrase rules: the transcript alone (before) and checked on the audio (after), same night",
                 VERIFY_COLUMNS, verify_rows,
                 "before: the stored night judged again with [verify] enabled = false; changed: verdicts the checks "
                 "changed; review: left to a person (no points taken); decided accuracy: over the verdicts not in "
                 "review.")

    mask = functools.partial(mask_text, options=config.privacy)
    utterances = read_table(out, "utterances")
    ours = {}
    for u in utterances.sort_values(["call_id", "start_s"]).itertuples():
        ours.setdefault(u.call_id, {}).setdefault(u.speaker, "")
        ours[u.call_id][u.speaker] += u.text
    our_cer = cer(ours, truth, mask)
    cer_rows = [["callqa", *(f"{v:.3f}" for v in our_cer.values())]]
    plain_cer = None
    if plain is not None:
        theirs = {}
        for call_id, c in plain["calls"].items():
            left, right = c["texts"][0], c["texts"][1] if len(c["texts"]) > 1 else ""
            agent_left = truth[call_id].get("agent_channel", "left") == "left"
            theirs[call_id] = {"agent": left if agent_left else right, "customer": right if agent_left else left}
        plain_cer = cer(theirs, truth, mask)
        cer_rows.append(["plain script", *(f"{v:.3f}" for v in plain_cer.values())])
    report.table(f"{name}: character error rate (against the scripts, simplified, punctuation out, numbers masked)",
                 ["", "agent CER", "customer CER"], cer_rows)

    stages = summary.get("stage_s", {})
    stage_table = [[label, f"{seconds:.1f}", speed] for label, seconds, speed in stage_rows(stages, audio_s)]
    stage_table.append(["sum of stages", f"{sum(stages.values()):.1f}", f"{audio_s / sum(stages.values()):.1f}"
                       if stages else "-"])
    stage_table.append(["flow wall time (the night's own clock)", f"{summary['wall_s']:.1f}",
                       f"{audio_s / summary['wall_s']:.1f}"])
    transcription = stages.get("transcribe_s", 0.0) + stages.get("second_pass_s", 0.0)
    verify_share = (f" The phrase checks on the audio (verify) took {stages['verify_s']:.1f} s, "
                    f"{stages['verify_s'] / transcription:.1%} of the transcription's {transcription:.1f} s "
                    "(transcribe + second pass)." if stages.get("verify_s") and transcription else "")
    windows = summary.get("windows", {})
    bound = bound_s(windows, per_window)
    if bound is not None:
        used = windows.get("windows", 0) + windows.get("second_pass_windows", 0)
        audio_in = windows.get("window_audio_s", 0.0)
        stage_table.append([f"the bound: {used:.0f} windows ({windows.get('windows', 0):.0f} + "
                            f"{windows.get('second_pass_windows', 0):.0f} second pass) x "
                            f"{per_window['encode_s']:.2f} s to encode, {windows.get('window_turns_s', 0.0):.0f} s "
                            f"of turns ({audio_in / max(used, 1):.1f} s a window) x "
                            f"{per_window['decode_s'] / 30:.3f} s a second to decode", f"{bound:.1f}",
                            f"{audio_s / max(bound, 1e-9):.1f}"])
    report.table(f"{name}: callqa: where the time went ({audio_s / 60:.1f} min of audio, {workers} recordings in flight)",
                 ["stage", "seconds", "x real time"], stage_table,
                 "Recording stages (decode to verify) are summed over the recordings in flight, so they add up to "
                 "more than the wall time; rules, scoring and writing run once for the night. The bound: what the "
                 "model alone costs for the windows the night gave it: each window encoded, and the speech in them "
                 "decoded (beam search and word timing), at the costs measured on full windows at the start of "
                 "this run." + verify_share)

    gib = 1024 ** 3
    end_rows = []
    for who, label in (("callqa", "callqa run, end to end (Prefect server start, model load, writing)"),
                       ("plain", "plain faster-whisper beam 5 + VAD, both channels, then substring search")):
        if who in rows and rows[who]:
            r = rows[who]
            cpu = r.get("cpu_s")
            end_rows.append([label, f"{r['wall_s']:.1f}", f"{audio_s / r['wall_s']:.1f}",
                             f"{cpu:.0f}" if cpu else "-", f"{r['peak_total'] / gib:.2f}", f"{r['peak_largest'] / gib:.2f}"])
    if "plain" in rows and rows.get("callqa"):
        ours, theirs = rows["callqa"], rows["plain"]
        cpu_ratio = (f"{theirs['cpu_s'] / ours['cpu_s']:.2f}x less" if ours.get("cpu_s") and theirs.get("cpu_s") else "-")
        end_rows.append(["callqa / plain", f"{theirs['wall_s'] / ours['wall_s']:.2f}x faster", "", cpu_ratio, "", ""])
    report.table(f"{name}: end to end, {len(truth)} calls, {audio_s / 60:.1f} min, {threads} cores",
                 ["", "wall s", "x real time", "CPU s", "peak memory GiB (process tree)", "largest process GiB"],
                 end_rows)
    return {"name": name, "calls": len(truth), "audio_s": audio_s, "callqa": rows.get("callqa") or {},
            "plain": rows.get("plain"), "cer": our_cer, "plain_cer": plain_cer, "accuracy": total["accuracy"],
            "f1": total["f1"], "bound_s": bound, "stages": stages}


def bound_s(windows: dict, per_window: dict) -> float | None:
    """What the model alone costs for a night's windows (``RunSummary.windows``): each window encoded,
    and the turns' seconds in them decoded, at the costs per full 30-s window of :func:`window_cost`
    (the encoder reads only as far as a short batch's audio, the decoder's work follows the speech)."""
    if not windows:
        return None
    used = windows.get("windows", 0) + windows.get("second_pass_windows", 0)
    return used * per_window["encode_s"] + windows.get("window_turns_s", 0.0) / 30.0 * per_window["decode_s"]


def side_by_side(report: "Report", headlines: list[dict], per_window: dict) -> None:
    """The corpora next to each other: speed against the plain script and the bound, CER, accuracy."""
    rows = []
    for h in headlines:
        ours, plain, audio = h["callqa"], h["plain"], h["audio_s"]
        bound = h["bound_s"]
        rows.append([h["name"], str(h["calls"]), f"{audio / 60:.1f}",
                     f"{ours['wall_s']:.1f} ({audio / ours['wall_s']:.1f}x)" if ours else "-",
                     f"{plain['wall_s']:.1f} ({audio / plain['wall_s']:.1f}x)" if plain else "-",
                     f"{plain['wall_s'] / ours['wall_s']:.2f}x" if plain and ours else "-",
                     f"{bound:.1f} ({audio / bound:.1f}x)" if bound else "-",
                     f"{h['cer']['agent']:.3f} / {h['cer']['customer']:.3f}",
                     f"{h['plain_cer']['agent']:.3f} / {h['plain_cer']['customer']:.3f}" if h["plain_cer"] else "-",
                     fmt(h["accuracy"]), fmt(h["f1"])])
    report.table("Both corpora: end to end against the plain script and the bound",
                 ["corpus", "calls", "minutes", "callqa s (x real time)", "plain s (x real time)", "callqa / plain",
                  "bound s (x real time)", "CER agent / customer", "plain CER", "accuracy, all rules", "F1, all rules"],
                 rows, f"The bound: each window the night gave the model encoded ({per_window['encode_s']:.2f} s) "
                       f"and the speech in them decoded with the night's options, beam search and word timing "
                       f"({per_window['decode_s']:.2f} s a full 30-s window): one worker's costs ("
                       f"{per_window['threads']} thread(s)) on {per_window['windows']} full windows of the first "
                       f"corpus's agent speech at the start of the run, divided by the {per_window['workers']} "
                       f"workers that run side by side.")


def window_cost(config, corpus: Path, threads: int, workers: int, count: int = 16) -> dict:
    """What the model alone costs for one full 30-s window of speech, with the night's decoding options:
    the truth's agent turns of the corpus packed back to back into ``count`` windows, encoded one at a
    time, then transcribed as the night does (beam, batch, word timing, prompt), by one worker with its
    ``threads``; divided by the ``workers`` that run side by side in a night (as if they shared the
    machine perfectly)."""
    from dataclasses import replace as swap

    from benchmarks.speed.batch_cost import agent_speech
    from pipeline.transcribe.audio import TARGET_RATE
    from pipeline.transcribe.model import load_model

    asr = swap(config.asr, cpu_threads=threads)
    model = load_model(asr)
    window = int(asr.window_s * TARGET_RATE)
    speech = agent_speech(corpus, count * asr.window_s)
    packed = speech[: count * window]
    windows = [{"start": k * asr.window_s, "end": (k + 1) * asr.window_s} for k in range(packed.size // window)]
    clock = time.perf_counter()
    for k in range(len(windows)):
        model.whisper.encode(model.whisper.feature_extractor(packed[k * window:(k + 1) * window])[:, :3000])
    encode_s = (time.perf_counter() - clock) / len(windows)
    clock = time.perf_counter()
    segments, _ = model.batched.transcribe(packed, language=asr.language or None, beam_size=asr.beam_size,
                                           batch_size=asr.decode_batch, clip_timestamps=windows, word_timestamps=True,
                                           without_timestamps=True, initial_prompt=asr.initial_prompt or None,
                                           temperature=0.0, log_progress=False)
    list(segments)
    total = (time.perf_counter() - clock) / len(windows)
    return {"window_s": total / workers, "encode_s": encode_s / workers,
            "decode_s": max(total - encode_s, 0.0) / workers, "windows": len(windows), "threads": threads,
            "workers": workers}


if __name__ == "__main__":
    sys.exit(main())

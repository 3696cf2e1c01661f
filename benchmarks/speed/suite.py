"""The speed and accuracy suite: `callqa run` end to end against the script a user would write, in one run.

Usage:
    python benchmarks/speed/suite.py [--corpus DIR] [--calls N] [--reuse OUT_DIR] [--skip-plain]
                                     [--config callqa.toml] [--report FILE]

On a corpus with ``recordings/`` and ``truth/`` (default ``benchmarks/speed/corpus``, built by
``make bench-corpus``: 64 stereo calls, 144 min), one after the other, nothing cached:

1. ``callqa run`` end to end as a user starts it (a subprocess: the local Prefect server's start, the
   model load and the writing of every table included), its peak memory sampled every 0.2 s over the
   whole process tree (the Prefect server included), and its own summary's seconds per stage.
2. The plain script (``benchmarks/speed/plain_script.py``: faster-whisper beam 5, VAD on, both channels,
   one call after the other, threads pinned to the same cores as the night), then plain substring
   search of the same lexicon phrases in the channel texts (traditional -> simplified first, as anyone
   who has seen Whisper's Chinese does).

Printed (and written to ``--report``, markdown): per rule precision, recall and F1 of ``fail`` (the
finding) and accuracy of every outcome, for callqa and, on the rules a substring can judge, for the
plain script; agent and customer CER of both; seconds and x real time per stage; end to end for both
and their ratio; peak memory.

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
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--calls", type=int, default=0, help="only the first N recordings (default: all)")
    parser.add_argument("--config", type=Path, default=None, help="callqa.toml for the night (default: defaults)")
    parser.add_argument("--reuse", type=Path, default=None, help="a night this suite ran before (its output folder)")
    parser.add_argument("--skip-plain", action="store_true", help="leave the plain script out")
    parser.add_argument("--keep", type=Path, default=None, help="keep the night and the plain texts in this folder")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks" / "speed" / "report.md")
    args = parser.parse_args()
    if not (args.corpus / "recordings").is_dir() or not (args.corpus / "truth").is_dir():
        parser.error(f"{args.corpus}: no recordings/ and truth/ there (make bench-corpus builds the default)")
    console = Console(width=150)
    report = Report(console)
    work = Path(tempfile.mkdtemp(prefix="callqa-speed-"))
    keep = args.keep or work
    keep.mkdir(parents=True, exist_ok=True)
    corpus = subset(args.corpus, args.calls, work / "corpus")
    truth = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted((corpus / "truth").glob("*.json"))}
    config = load_config(args.config)
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
        console.print(f"callqa run on {len(truth)} calls ({workers} in flight, {threads} cores)…")
        wall, cpu, memory, code = timed_process(command, keep / "callqa-run.log", env)
        if code not in (0, 2):
            console.print(f"callqa run failed with exit status {code}: see {keep / 'callqa-run.log'}")
            return 1
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
        console.print(f"the plain script on the same calls ({threads} cores)…")
        calls = ",".join(sorted(truth))
        wall, cpu, memory, code = timed_process(
            [python, str(ROOT / "benchmarks" / "speed" / "plain_script.py"), str(corpus / "recordings"),
             str(keep / "plain.json"), "--model", location, "--threads", str(threads), "--calls", calls],
            keep / "plain.log")
        if code != 0:
            console.print(f"the plain script failed with exit status {code}: see {keep / 'plain.log'}")
            return 1
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
    report.table(f"Per rule, {len(truth)} calls (precision, recall, F1: of fail, the finding)", columns, metric_rows,
                 "F1 '-': no call fails the rule and none was failed. Plain: substring search of the rule's lexicon "
                 "phrases in the agent channel's text (simplified), on the rules a substring can judge; ALL of "
                 "plain is over those rules only, with callqa's figure on the same rules beside it.")

    verify_rows, _totals = before_after(out, truth, lexicons)
    report.table("Phrase rules: the transcript alone (before) and checked on the audio (after), same night",
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
    cer_rows = [["callqa", *(f"{v:.3f}" for v in cer(ours, truth, mask).values())]]
    if plain is not None:
        theirs = {}
        for call_id, c in plain["calls"].items():
            left, right = c["texts"][0], c["texts"][1] if len(c["texts"]) > 1 else ""
            agent_left = truth[call_id].get("agent_channel", "left") == "left"
            theirs[call_id] = {"agent": left if agent_left else right, "customer": right if agent_left else left}
        cer_rows.append(["plain script", *(f"{v:.3f}" for v in cer(theirs, truth, mask).values())])
    report.table("Character error rate (against the scripts, simplified, punctuation out, numbers masked)",
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
    report.table(f"callqa: where the time went ({audio_s / 60:.1f} min of audio, {workers} recordings in flight)",
                 ["stage", "seconds", "x real time"], stage_table,
                 "Recording stages (decode to verify) are summed over the recordings in flight, so they add up to "
                 "more than the wall time; rules, scoring and writing run once for the night." + verify_share)

    gib = 1024 ** 3
    end_rows = []
    for name, label in (("callqa", "callqa run, end to end (Prefect server start, model load, writing)"),
                        ("plain", "plain faster-whisper beam 5 + VAD, both channels, then substring search")):
        if name in rows and rows[name]:
            r = rows[name]
            cpu = r.get("cpu_s")
            end_rows.append([label, f"{r['wall_s']:.1f}", f"{audio_s / r['wall_s']:.1f}",
                             f"{cpu:.0f}" if cpu else "-", f"{r['peak_total'] / gib:.2f}", f"{r['peak_largest'] / gib:.2f}"])
    if "plain" in rows and rows.get("callqa"):
        ours, theirs = rows["callqa"], rows["plain"]
        cpu_ratio = (f"{theirs['cpu_s'] / ours['cpu_s']:.2f}x less" if ours.get("cpu_s") and theirs.get("cpu_s") else "-")
        end_rows.append(["callqa / plain", f"{theirs['wall_s'] / ours['wall_s']:.2f}x faster", "", cpu_ratio, "", ""])
    report.table(f"End to end, {len(truth)} calls, {audio_s / 60:.1f} min, {threads} cores",
                 ["", "wall s", "x real time", "CPU s", "peak memory GiB (process tree)", "largest process GiB"],
                 end_rows)
    header = [f"# Speed and accuracy suite: {args.corpus} ({len(truth)} calls)", "",
              f"{time.strftime('%Y-%m-%d %H:%M')}, {cores} cores, model {model_label(config.asr)}, "
              f"`{' '.join(sys.argv)}`", ""]
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(header + report.lines), encoding="utf-8")
    console.print(f"report written to {args.report}" + (f"; night and plain texts in {keep}" if args.keep else ""))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A night of 1,000 / 10,000 / 100,000 calls, simulated: imported transcripts through the whole night
(plan, batches, rules, scores, staging, publishing, agent scores) on threads and on a Dask cluster.

Usage:
    python benchmarks/scale_benchmark.py [--calls 1000,10000,100000] [--runners threads,dask]
                                         [--work DIR]

Generates the calls once per size under ``--work`` (callqa's transcript format, ten dialogues of
8-12 turns varied by number and agent, 200 agents, one call date, a manifest), then runs each night
in a fresh process on a fresh output folder:

- ``threads``: :func:`pipeline.night.run_night`, two threads (no Prefect);
- ``dask``: the Prefect flow (a temporary local server) with a local Dask cluster of two worker
  processes (``[run] runner = "dask"``, ``dask_workers = 2``).

Reported: wall time; orchestration overhead per call, ``(wall - plan - publish - sum of batch task
seconds / 2) / calls``; peak resident memory of the process that drives the night (its own
``ru_maxrss``) and of each Dask worker (sampled every 0.2 s); and what crosses between the driver and
the tasks, pickled (task arguments and returned reports; Prefect's own API traffic not included).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIALOGUES = [
    [("agent", "您好，星河通信，请讲。"), ("customer", "你好，我想查一下话费。"), ("agent", "好的，请您提供一下手机号码。"),
     ("customer", "{phone}。"), ("agent", "好的，请您稍候，我帮您查一下。"), ("agent", "让您久等了，您本月话费是{money}元。"),
     ("customer", "好的，谢谢。"), ("agent", "不客气，请问还有其他可以帮您的吗？"), ("customer", "没有了。"),
     ("agent", "感谢您的来电，再见。")],
    [("agent", "喂，什么事？"), ("customer", "我的宽带又断了。"), ("agent", "你自己重启一下路由器。"),
     ("customer", "重启过了，还是不行。"), ("agent", "那我也没办法，你明天再打吧。"), ("customer", "你这什么态度？"),
     ("agent", "不知道，这个不归我管。"), ("customer", "我要投诉你。")],
    [("agent", "您好，星河通信，请讲。"), ("customer", "我要办理套餐变更。"), ("agent", "好的，您想变更成哪一个套餐呢？"),
     ("customer", "每月{money}元那个。"), ("agent", "好的，请您稍候。"), ("agent", "抱歉让您久等了，已经为您办理好了，下个月生效。"),
     ("customer", "好的。"), ("agent", "还有其他问题吗？"), ("customer", "没有了，谢谢。"), ("agent", "谢谢您的来电，再见。")],
    [("agent", "您好，请讲。"), ("customer", "我想投诉一下上次的维修人员。"), ("agent", "非常抱歉给您带来不便，请您具体说一下。"),
     ("customer", "他迟到了两个小时，还收了我{money}块钱。"), ("agent", "抱歉，我这边马上为您登记投诉。"),
     ("agent", "已经登记好了，三个工作日内给您回复。"), ("customer", "好吧。"), ("agent", "感谢您的理解，再见。")],
    [("agent", "星河通信，您好。"), ("customer", "我手机欠费停机了，怎么交费？"), ("agent", "您可以通过网上营业厅交费。"),
     ("customer", "我不会用。"), ("agent", "没关系，我一步一步教您。"), ("agent", "首先打开我们的应用。"),
     ("customer", "打开了。"), ("agent", "然后点击交费，输入{money}元就可以了。"), ("customer", "好了，谢谢你。"),
     ("agent", "不客气，祝您生活愉快，再见。")],
    [("agent", "您好，星河通信，请讲。"), ("customer", "喂，能听到吗？"), ("agent", "能听到，请讲。"),
     ("customer", "我想改一下账单地址。"), ("agent", "好的，请您说一下新的地址。"), ("customer", "幸福路{money}号。"),
     ("agent", "好的，已经为您修改了。"), ("customer", "谢谢。"), ("agent", "再见。")],
    [("agent", "你好，有什么事？"), ("customer", "我的流量怎么用得这么快？"), ("agent", "你自己用的你不知道吗？"),
     ("customer", "我没怎么用啊。"), ("agent", "系统显示你用了{money}兆。"), ("customer", "那能不能帮我查一下明细？"),
     ("agent", "等一下。"), ("agent", "明细发你短信了。"), ("customer", "行吧。")],
    [("agent", "您好，星河通信，工号{money}为您服务，请讲。"), ("customer", "我想开通国际漫游。"),
     ("agent", "好的，请问您要去哪个国家？"), ("customer", "日本。"), ("agent", "好的，请您稍候，正在为您开通。"),
     ("agent", "让您久等了，已经开通成功。"), ("customer", "费用怎么算？"), ("agent", "每天二十八元，不限流量。"),
     ("customer", "好的，谢谢。"), ("agent", "感谢您的来电，祝您旅途愉快，再见。")],
    [("agent", "您好，请讲。"), ("customer", "你们的网络太差了，天天掉线。"), ("agent", "非常抱歉，请问您在哪个小区？"),
     ("customer", "阳光花园。"), ("agent", "好的，这个小区最近在做网络升级，给您带来不便，十分抱歉。"),
     ("customer", "什么时候能好？"), ("agent", "预计本周五完成。"), ("customer", "好吧。"), ("agent", "谢谢您的耐心，再见。")],
    [("agent", "您好，星河通信，请讲。"), ("customer", "我想注销一张副卡。"), ("agent", "请您提供一下主卡号码。"),
     ("customer", "{phone}。"), ("agent", "请您稍候。"), ("agent", "让您久等了，副卡已经注销。"), ("customer", "谢谢。"),
     ("agent", "不客气，再见。")],
]


def generate(folder: Path, calls: int, seed: int = 7) -> None:
    """``calls`` transcripts and their manifest in ``folder`` (kept: the next run reuses them)."""
    if (folder / "manifest.csv").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines = ["file,agent_id,call_id,started_at,agent_channel,company"]
    for n in range(calls):
        dialogue = DIALOGUES[n % len(DIALOGUES)]
        clock, utterances = rng.uniform(0.3, 1.5), []
        for speaker, text in dialogue:
            said = text.format(phone=f"138{rng.randrange(10**8):08d}", money=rng.randrange(10, 500))
            length = 0.25 * len(said) + rng.uniform(0.2, 1.0)
            utterances.append({"speaker": speaker, "start_s": round(clock, 2), "end_s": round(clock + length, 2),
                               "text": said})
            clock += length + rng.uniform(0.3, 2.0) + (15.0 if "稍候" in said else 0.0)
        name = f"c{n:06d}.json"
        (folder / name).write_text(json.dumps({"format": "callqa-transcript", "version": 1, "utterances": utterances},
                                              ensure_ascii=False), encoding="utf-8")
        started = f"2026-11-20T{8 + (n * 11 // calls):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}+08:00"
        lines.append(f"{name},A{rng.randrange(200):03d},c{n:06d},{started},left,星河通信")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


class Wire:
    """A runner wrapped to count what crosses to and from its tasks, pickled."""

    def __init__(self, runner):
        self.runner, self.sent, self.received, self.tasks = runner, 0, 0, 0

    def submit(self, step, *args):
        self.sent += len(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL))
        self.tasks += 1
        future, wire = self.runner.submit(step, *args), self

        class Counted:
            def result(self):
                value = future.result()
                wire.received += len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
                return value

        return Counted()


def one_night(runner: str, input_dir: Path, out_dir: Path) -> dict:
    """Run one night in this process; its figures as a dict."""
    os.environ["CALLQA_ASR_ENGINE"] = "import"
    config_path = out_dir.parent / f"{out_dir.name}.toml"
    config_path.write_text(f'[run]\nrunner = "{runner}"\ndask_workers = 2\nconcurrency = 2\n', encoding="utf-8")
    from pipeline.config import load_config

    config = load_config(config_path)
    wires: list[Wire] = []
    started = time.perf_counter()
    if runner == "threads":
        from pipeline import night

        with night.ThreadRunner(2) as threads:
            wire = Wire(threads)
            wires.append(wire)
            summary = night.drive_night(input_dir, out_dir, config, "scale", 2, wire).summary.to_dict()
    else:
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        from prefect.testing.utilities import prefect_test_harness

        from flows import nightly

        base = nightly.PrefectRunner

        class Measured(Wire):
            def __init__(self):
                super().__init__(base())
                wires.append(self)

        nightly.PrefectRunner = Measured
        with prefect_test_harness(server_startup_timeout=120):
            flow, workers = nightly.configured_flow(config)
            started = time.perf_counter()
            summary = flow(input_dir=str(input_dir), out_dir=str(out_dir), config_path=str(config_path),
                           concurrency=workers)
    wall = time.perf_counter() - started
    return {"summary": summary, "wall_s": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "sent": sum(w.sent for w in wires), "received": sum(w.received for w in wires),
            "messages": sum(w.tasks for w in wires)}


def measure(runner: str, input_dir: Path, out_dir: Path) -> dict:
    """A night in a child process, its workers' memory sampled from here."""
    import psutil

    child = subprocess.Popen([sys.executable, __file__, "--one", runner, "--input", str(input_dir), "--out",
                              str(out_dir)], stdout=subprocess.PIPE, text=True)
    proc = psutil.Process(child.pid)
    workers: dict[int, float] = {}
    while child.poll() is None:
        try:
            for kid in proc.children(recursive=True):
                try:
                    cmdline = " ".join(kid.cmdline())
                    if "spawn_main" in cmdline and "resource_tracker" not in cmdline:
                        workers[kid.pid] = max(workers.get(kid.pid, 0.0), kid.memory_info().rss / 2**20)
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        time.sleep(0.2)
    figures = json.loads(child.stdout.read().strip().splitlines()[-1])
    figures["worker_peaks_mb"] = sorted(workers.values())
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1000,10000,100000")
    parser.add_argument("--runners", default="threads,dask")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "callqa-scale")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_night(args.one, args.input, args.out), default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="simulated nights (imported transcripts, the import engine's 500 calls a task, 2 workers)")
    for column in ("calls", "runner", "wall s", "calls/s", "tasks", "overhead ms/call", "driver peak MB",
                   "worker peak MB", "wire KB/call", "scored"):
        table.add_column(column, justify="right")
    for calls in [int(c) for c in args.calls.split(",")]:
        folder = args.work / f"in-{calls}"
        clock = time.perf_counter()
        generate(folder, calls)
        print(f"{calls} calls ready in {folder} ({time.perf_counter() - clock:.0f} s)", flush=True)
        for runner in args.runners.split(","):
            out = args.work / f"out-{calls}-{runner}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            f = measure(runner, folder, out)
            s = f["summary"]
            stages = s["stage_s"]
            overhead = f["wall_s"] - stages.get("plan_s", 0) - stages.get("publish_s", 0) - s["task_s"] / 2
            row = (str(calls), runner, f"{f['wall_s']:.1f}", f"{calls / f['wall_s']:.0f}", str(s["tasks"]),
                   f"{1000 * overhead / calls:.2f}", f"{f['peak_mb']:.0f}",
                   " / ".join(f"{m:.0f}" for m in f["worker_peaks_mb"]) or "-",
                   f"{(f['sent'] + f['received']) / 1024 / calls:.2f}", str(s["scored"]))
            table.add_row(*row)
            print(json.dumps({"calls": calls, "runner": runner, **{k: v for k, v in f.items() if k != "summary"},
                              "plan_s": stages.get("plan_s"), "publish_s": stages.get("publish_s"),
                              "task_s": s["task_s"], "tasks": s["tasks"], "scored": s["scored"],
                              "inputs": s["inputs"]}), flush=True)
    Console(width=160).print(table)
    print(f"machine: {os.cpu_count()} cpus")
    return 0


if __name__ == "__main__":
    sys.exit(main())

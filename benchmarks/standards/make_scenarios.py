"""Write the scripts of the standards corpus (issue 28): calls where the customer gives details and the
agent confirms them or not, promises a follow-up with or without a time, and hangs up first or not.

    python benchmarks/standards/make_scenarios.py [--seed N] /tmp/standards_scenarios.json
    /tmp/ttsvenv/bin/python demo/make_corpus.py --scenarios /tmp/standards_scenarios.json --out benchmarks/standards/corpus
    python benchmarks/standards/score.py benchmarks/standards/corpus      # callqa run, then F1 per rule

(`make standards-bench` does this for seed 28, the lexicons' tuning set, and seed 2812, never tuned on.)

Each call is built from the pools below with a fixed seed; its labels for service.confirm,
service.commitment_time and closing.hangup_order follow from what was chosen (the other rules' truth is
derived by demo/make_corpus.py as for the demo). The scripts are not committed: this file is their source.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta

SEED = 28
CALLS = 36
COMPANY = "星河通信"
AGENTS = {"C3001": {"pitch_cents": 0}, "C3002": {"pitch_cents": 150}, "C3003": {"pitch_cents": -120}}
DIGITS = "零一二三四五六七八九"
MATTERS = [("我家的宽带断了，一直连不上。", "宽带"), ("我这个月的话费好像多扣了。", "话费"),
           ("我想办理一下套餐变更。", "套餐"), ("我家的电视机顶盒坏了。", "机顶盒")]
ROADS = ["人民路", "解放路", "中山路", "建设路"]
# how the agent answers the customer's number: (line, does it confirm)
CONFIRMS = [
    ("好的，{number}，我帮您查一下。", "pass"),
    ("好的，尾号{tail}，我帮您查一下。", "pass"),
    ("您说的是{number}，对吗？", "pass"),
    ("好的，跟您核对一下，是{number}吗？", "pass"),
    ("好的，我帮您查一下。", "fail"),
    ("谢谢，已经查到了。", "fail"),
]
# the promise: (line, outcome of service.commitment_time)
PROMISES = [
    ("我们会在二十四小时内给您回电。", "pass"),
    ("我已经帮您登记了，两个小时之内给您回复。", "pass"),
    ("我已经转给维修部门，师傅明天上午上门。", "pass"),  # other departments: 48 h; tomorrow noon is within
    ("结果会在三个工作日内短信通知您。", "fail"),  # an ordinary matter: 24 h
    ("我们三天内给您答复。", "fail"),
    ("下周一给您回电。", "fail"),  # three days at least
    ("我们会尽快处理。", "review"),
    ("明天是周末，我们会尽快给您答复。", "review"),  # 明天 is in another clause: no deadline
    ("这个问题已经帮您处理好了。", "not_applicable"),  # done, not promised
    ("您看还有什么需要帮忙的吗？", "not_applicable"),
]


def spoken(number: str) -> str:
    """A phone number as a customer reads it: 三, 四, 四 digits with pauses (一三八，一二三四，五六七八)."""
    words = "".join(DIGITS[int(d)] for d in number)
    return f"{words[:3]}，{words[3:7]}，{words[7:]}"


def call(index: int, rng: random.Random, shift: int = 0) -> dict:
    """One call's script; ``shift`` moves which confirmation and promise each call gets (another seed's
    corpus pairs them differently)."""
    agent = list(AGENTS)[index % len(AGENTS)]
    start = datetime(2026, 11, 16, 9, 0) + timedelta(days=index % 5, minutes=rng.randrange(0, 480))
    matter, _ = rng.choice(MATTERS)
    gives_number = index % 7 != 6  # one call in seven gives no detail: service.confirm not applicable
    number = "1" + "".join(rng.choice("3456789")) + "".join(str(rng.randrange(10)) for _ in range(9))
    confirm_line, confirm = CONFIRMS[(index + shift) % len(CONFIRMS)]
    promise_line, commitment = PROMISES[(index * 5 + index // 8 + shift) % len(PROMISES)]
    turns = [{"speaker": "agent", "text": f"您好，{COMPANY}，工号{''.join(DIGITS[int(d)] for d in agent[1:])}为您服务，请问有什么可以帮您？"},
             {"speaker": "customer", "text": f"你好，{matter}"}]
    if gives_number:
        turns += [{"speaker": "agent", "text": "好的，请讲一下您的手机号码。"},
                  {"speaker": "customer", "text": f"{spoken(number)}。"},
                  {"speaker": "agent", "text": confirm_line.format(number=spoken(number).replace("，", ""),
                                                                 tail="".join(DIGITS[int(d)] for d in number[-4:]))}]
        if "吗" in confirm_line:
            turns.append({"speaker": "customer", "text": "对，没错。"})
    else:
        confirm = "not_applicable"
        turns.append({"speaker": "agent", "text": "好的，我帮您看一下。"})
    if index % 4 == 3 and gives_number:  # an address as well, repeated back when the number was
        road, house = rng.choice(ROADS), rng.randrange(10, 99)
        said = f"{road}{house}号"
        turns.append({"speaker": "customer", "text": f"我的地址是{said}。"})
        turns.append({"speaker": "agent", "text": f"好的，{said}，记下了。" if confirm == "pass" else "好的，记下了。"})
    turns += [{"speaker": "agent", "text": promise_line},
              {"speaker": "customer", "text": "好的，谢谢。"},
              {"speaker": "agent", "text": "感谢您的来电，再见！"}]
    hangup = ("customer", "agent", None)[index % 3]
    return {"call_id": f"s{index + 1:02d}", "agent_id": agent, "format": "flac8k" if index % 2 else "ulaw8k",
            "started_at": start.strftime("%Y-%m-%dT%H:%M:%S+08:00"), "confirm": confirm, "commitment": commitment,
            **({"hangup_by": hangup} if hangup else {}), "satisfaction": rng.randrange(1, 6),
            "scenario": "standards", "description": f"confirm {confirm}, promise {commitment}, hangup {hangup}",
            "customer_pitch_cents": rng.choice((-400, -450, -500)), "lead_s": round(rng.uniform(0.5, 1.2), 2),
            "turns": turns}


def main(argv: list[str]) -> int:
    seed = SEED
    if len(argv) == 3 and argv[0] == "--seed":  # another draw of the same pools: a held-out corpus
        seed, argv = int(argv[1]), argv[2:]
    if len(argv) != 1:
        print(__doc__)
        return 2
    rng = random.Random(seed)
    scenarios = {"_comment": "generated by benchmarks/standards/make_scenarios.py", "company": COMPANY,
                 "date": "2026-11-20", "seed": seed, "min_call_s": 12, "agents": AGENTS, "calls": [call(i, rng, seed - SEED) for i in range(CALLS)]}
    with open(argv[0], "w", encoding="utf-8") as handle:
        json.dump(scenarios, handle, ensure_ascii=False, indent=1)
    counts = {}
    for c in scenarios["calls"]:
        for rule in ("confirm", "commitment"):
            counts.setdefault(rule, {}).setdefault(c[rule], 0)
            counts[rule][c[rule]] += 1
    print(f"{CALLS} calls written to {argv[0]}: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

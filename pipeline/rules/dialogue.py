"""Plain-text dialogues for trying rules without audio (``callqa rules test DIALOGUE.txt``).

One line per utterance: ``agent: 您好，星河通信。`` or ``customer: …`` (also ``坐席:`` / ``客户:``), with an
optional timestamp in seconds before or after the speaker: ``[12.5s] agent: …``. Lines without a
timestamp follow the previous line after 0.5 s; an utterance lasts one second per 4.5 characters (a
moderate pace), so a gap between timestamps is silence, which is how holds are written. ``#`` starts a
comment. A line ``@hangup_by: customer`` gives what the switch would record of the call (who released
the line, for ``closing.hangup_order``; the manifest's spellings are accepted), ``@started_at:
2026-11-20T09:30:00+08:00`` when it started (a promise of 明天 counts from it).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from pathlib import Path

from ..errors import DialogueError
from ..records import (SPEAKER_AGENT, SPEAKER_CUSTOMER, SPEAKER_UNKNOWN, CallTranscript, NumberMark, Utterance,
                       parse_hangup_by)
from ..text import match_key, normalise_text, number_marks

CHARS_PER_SECOND = 4.5
GAP_S = 0.5
_SPEAKERS = {"agent": SPEAKER_AGENT, "坐席": SPEAKER_AGENT, "客服": SPEAKER_AGENT,
             "customer": SPEAKER_CUSTOMER, "客户": SPEAKER_CUSTOMER, "unknown": SPEAKER_UNKNOWN}
_TIME = r"\[\s*(?P<{name}>\d+(?:\.\d+)?)\s*s?\s*\]"
_LINE = re.compile(r"^(?:%s\s*)?(?P<speaker>[A-Za-z\u4e00-\u9fff]+)\s*[:：]\s*(?:%s\s*)?(?P<text>.*)$"
                   % (_TIME.format(name="t1"), _TIME.format(name="t2")))


def parse_dialogue(text: str, call_id: str = "dialogue", agent_id: str = "dialogue",
                   company: str = "") -> CallTranscript:
    """Turn a dialogue into the transcript the rule engine reads: its utterances and voice activity.

    Raises:
        DialogueError: a line is neither blank, a comment, nor ``speaker: text``.
    """
    said_lines: list[tuple[float, float, str, str, str]] = []  # start, end, speaker, text, raw
    cursor = 0.0
    hangup_by = started_at = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("@"):
            key, _, value = line[1:].replace("：", ":", 1).partition(":")
            try:
                if key.strip() == "hangup_by":
                    hangup_by = parse_hangup_by(value.strip())
                elif key.strip() == "started_at":
                    started_at = datetime.fromisoformat(value.strip())
                    if started_at.tzinfo is None:
                        raise ValueError(f"started_at {value.strip()!r} has no UTC offset (2026-11-20T09:30:00+08:00)")
                else:
                    raise ValueError(f"the call record lines are '@hangup_by: agent|customer|other' and '@started_at: "
                                     f"2026-11-20T09:30:00+08:00', got {raw.strip()!r}")
            except ValueError as exc:
                raise DialogueError(f"line {number}: {exc}") from None
            continue
        m = _LINE.match(line)
        speaker = _SPEAKERS.get(m.group("speaker").lower()) if m else None
        if m is None or speaker is None:
            raise DialogueError(f"line {number}: expected 'agent: …' or 'customer: …' (optionally with [12.5s]), "
                                f"got {raw.strip()!r}")
        said = normalise_text(m.group("text"))
        stamp = m.group("t1") or m.group("t2")
        start = float(stamp) if stamp else cursor
        duration = max(1.0, len(match_key(said)) / CHARS_PER_SECOND)
        said_lines.append((round(start, 3), round(start + duration, 3), speaker, said, m.group("text")))
        cursor = start + duration + GAP_S
    said_lines.sort(key=lambda line: line[0])
    key = secrets.token_bytes(16)  # the numbers said, comparable within the dialogue as in a night's call
    utterances = tuple(Utterance(call_id, idx, speaker, start, end, said, raw, None, None,
                                 numbers=[NumberMark(*mark) for mark in number_marks(said, key)])
                       for idx, (start, end, speaker, said, raw) in enumerate(said_lines))
    speakers = {u.speaker for u in utterances}
    return CallTranscript(call_id, agent_id, company, 1 if speakers <= {SPEAKER_UNKNOWN} else 2,
                          max((u.end_s for u in utterances), default=0.0), utterances,
                          tuple((u.speaker, u.start_s, u.end_s) for u in utterances), file=call_id,
                          started_at=started_at, hangup_by=hangup_by)


def read_dialogue(path: str | Path, company: str = "") -> CallTranscript:
    """Read a dialogue file (UTF-8). Raises DialogueError for unreadable files or bad lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DialogueError(f"cannot read dialogue {path}: {exc}") from None
    try:
        return parse_dialogue(text, call_id=path.stem, company=company)
    except DialogueError as exc:
        raise DialogueError(f"{path.name}: {exc}") from None

"""A results folder's transcripts written out in callqa's transcript format (``callqa export``).

One ``CALL_ID.json`` per call with a transcript (scored or unscorable) and a ``manifest.csv`` naming
them with the calls' agents, start times, channels and companies: the folder ``callqa run --engine
import`` reads. It carries everything the rules read (utterances with words, confidence statistics and
the phrases checked on the audio, voice activity, language and roles), so a night over it gives the
same outcomes and scores as the night that transcribed the calls. Texts are as stored: masked.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

from ..records import has_transcript
from ..storage.parquet import read_arrow
from .imported import FORMAT_NAME, FORMAT_VERSION

MANIFEST_COLUMNS = ("file", "agent_id", "call_id", "started_at", "agent_channel", "company", "hangup_by",
                    "satisfaction")


def _plain(value):
    """A stored number as JSON writes it (None for a missing or not-a-number value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def transcript_document(call: dict, utterances: list[dict], regions: list[dict]) -> dict:
    """One call in callqa's transcript format (version 1)."""
    document = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "call_id": call["call_id"],
        "duration_s": _plain(call.get("duration_s")), "channels": _plain(call.get("channels")),
        "language": {"agent": call.get("agent_language"), "agent_prob": _plain(call.get("agent_language_prob")),
                     "agent_zh_prob": _plain(call.get("agent_zh_prob"))},
        "roles": {"method": call.get("roles_method"), "confidence": _plain(call.get("roles_confidence"))},
        "utterances": [],
        "voice_activity": [{"speaker": r["speaker"], "start_s": r["start_s"], "end_s": r["end_s"]} for r in regions],
    }
    for u in sorted(utterances, key=lambda u: u["utterance_idx"]):
        item = {"speaker": u["speaker"], "start_s": u["start_s"], "end_s": u["end_s"], "text": u["text"],
                "raw_text": u["raw_text"], "avg_logprob": _plain(u.get("avg_logprob")),
                "no_speech_prob": _plain(u.get("no_speech_prob")),
                "role_confidence": _plain(u.get("role_confidence")),
                "words": [{"word": w["word"], "start_s": w["start_s"], "end_s": w["end_s"], "prob": _plain(w.get("prob"))}
                          for w in (u.get("words") or [])]}
        if u.get("checks"):
            item["checks"] = [dict(c) for c in u["checks"]]
        if u.get("numbers") is not None:  # the numbers said, comparable though masked (service.confirm)
            item["numbers"] = [dict(n) for n in u["numbers"]]
        document["utterances"].append(item)
    return document


def export_transcripts(results: str | Path, to: str | Path) -> int:
    """Write every transcribed call of ``results`` to ``to`` (created); returns how many.

    Raises:
        ResultsNotFoundError, StoreError: the results cannot be read.
    """
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    calls = [c for c in read_arrow(results, "calls").to_pylist() if has_transcript(c)]
    wanted = {c["call_id"] for c in calls}
    utterances: dict[str, list[dict]] = defaultdict(list)
    for row in read_arrow(results, "utterances").to_pylist():
        if row["call_id"] in wanted:
            utterances[row["call_id"]].append(row)
    regions: dict[str, list[dict]] = defaultdict(list)
    for row in read_arrow(results, "voice_activity").to_pylist():
        if row["call_id"] in wanted:
            regions[row["call_id"]].append(row)
    rows = []
    for call in sorted(calls, key=lambda c: c["call_id"]):
        name = f"{call['call_id']}.json"
        document = transcript_document(call, utterances[call["call_id"]], regions[call["call_id"]])
        (to / name).write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        rows.append({"file": name, "agent_id": call["agent_id"], "call_id": call["call_id"],
                     "started_at": call["started_at"].isoformat(), "agent_channel": call["agent_channel"],
                     "company": call["company"] or "", "hangup_by": call.get("hangup_by") or "",
                     "satisfaction": call.get("satisfaction") or ""})
    with open(to / "manifest.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)

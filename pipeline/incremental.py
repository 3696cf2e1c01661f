"""Incremental nights: a recording already transcribed from the same bytes, by the same model with the
same options, is not transcribed again; its stored transcript is checked and scored anew instead.

A change of model or of any option that changes a transcript (decoding, voice activity, turns, guard,
masking) changes the fingerprint and the recording is transcribed again; a change of lexicons or
rubric changes neither, so those calls are only rescored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from .config import CallqaConfig
from .records import Recording
from .schemas import PARTITION_COLUMN
from .store import call_date, read_arrow

# Options that do not change what a transcript says: how hard the machine works.
_NOT_IN_FINGERPRINT = {"cpu_threads", "batch_size", "device"}


def file_sha256(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in chunks (recordings and model weights alike)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def transcription_fingerprint(model_id: str, config: CallqaConfig) -> str:
    """A hash of the model and every option that changes a transcript."""
    options = {
        "model": model_id,
        "asr": {k: v for k, v in asdict(config.asr).items() if k not in _NOT_IN_FINGERPRINT and k != "model"},
        "voice_activity": asdict(config.voice_activity),
        "segmentation": asdict(config.segmentation),
        "guard": {**asdict(config.guard), "phrases": Path(config.guard.phrases_file).read_text(encoding="utf-8")},
        "privacy": asdict(config.privacy),
    }
    options["guard"].pop("phrases_file")
    text = json.dumps(options, sort_keys=True, ensure_ascii=False, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_cached(out_dir: str | Path, recordings: list[Recording], fingerprint: str,
                 tz: ZoneInfo | None = None) -> tuple[list[Recording], dict]:
    """Which recordings need transcribing, and the stored rows of those that do not.

    Returns:
        ``(to_transcribe, cached)`` where ``cached`` maps table name to the stored rows (calls,
        utterances, voice_activity, suppressed) of the recordings whose transcript can be reused.
    """
    hashes = {r.call_id: file_sha256(r.path) for r in recordings}
    stored = read_arrow(out_dir, "calls", ["call_id", "status", "content_sha256", "transcription_fingerprint",
                                           "agent_channel", "company"])
    known = {row["call_id"]: row for row in stored.to_pylist()}
    by_id = {r.call_id: r for r in recordings}
    # the channel assignment and the company (it is in the decoder prompt) shape a transcript too
    reuse = {cid for cid, sha in hashes.items()
             if (row := known.get(cid)) and row["status"] == "ok" and row["content_sha256"] == sha
             and row["transcription_fingerprint"] == fingerprint
             and row["agent_channel"] == by_id[cid].agent_channel and row["company"] == by_id[cid].company}
    to_transcribe = [r for r in recordings if r.call_id not in reuse]
    cached: dict[str, list[dict]] = {}
    if reuse:
        wanted = pa.array(sorted(reuse), pa.string())
        for table in ("calls", "utterances", "voice_activity", "suppressed"):
            rows = read_arrow(out_dir, table)
            cached[table] = rows.filter(pc.is_in(rows["call_id"], value_set=wanted)).to_pylist()
        for row in cached["calls"]:  # the manifest may have changed who took the call, and when
            rec = by_id[row["call_id"]]
            row.update(agent_id=rec.agent_id, file=rec.file, started_at=rec.started_at,
                       path=str(Path(rec.path).resolve()))
        if tz is not None:
            dates = {r.call_id: call_date(r.started_at, tz) for r in recordings if r.call_id in reuse}
            for table in ("calls", "utterances", "voice_activity", "suppressed"):
                for row in cached[table]:
                    row[PARTITION_COLUMN] = dates[row["call_id"]]
    return to_transcribe, {"hashes": hashes, **cached}

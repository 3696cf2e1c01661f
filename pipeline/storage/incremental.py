"""Incremental nights: what is already stored, so a recording is never transcribed twice for nothing.

A recording already transcribed from the same bytes (sha256), by the same model with the same options
(the transcription fingerprint, see :func:`pipeline.transcribe.recording.transcription_fingerprint`),
with the same agent channel and company (the company is in the decoder prompt), is not transcribed
again: its stored transcript is checked and scored anew with tonight's lexicons and rubric. A change
of model or of any option that changes a transcript changes the fingerprint, and the recording is
transcribed again; a change of lexicons or rubric changes neither, so those calls are only rescored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from ..records import Recording, has_transcript
from ..text import readable_name
from ..schemas import PARTITION_COLUMN
from .hashing import file_sha256
from .parquet import read_arrow
from .rows import call_date

logger = logging.getLogger("callqa.incremental")

TRANSCRIPT_TABLES = ("calls", "utterances", "voice_activity", "suppressed")


@dataclass
class StoredTranscripts:
    """The recordings of a night whose stored transcript can be reused (their rows are read by the
    task that rescores them: :func:`stored_rows`).

    Attributes:
        recordings: the reusable recordings, as tonight's manifest describes them.
        dates: call id -> the call date its rows are stored under.
    """

    recordings: list[Recording] = field(default_factory=list)
    dates: dict[str, str] = field(default_factory=dict)

    @property
    def call_ids(self) -> set[str]:
        return {r.call_id for r in self.recordings}

    @property
    def files(self) -> list[str]:
        return [r.file for r in self.recordings]

    def __len__(self) -> int:
        return len(self.recordings)


def _incomplete(out_dir: str | Path, calls: dict[str, dict]) -> list[str]:
    """The calls whose stored transcript does not match their ``calls`` row: fewer (or more) utterances
    than ``n_utterances``, or utterances without voice activity. Never reuse half a transcript: an
    interrupted write or a deleted file would otherwise be scored as a call where nothing was said."""
    if not calls:
        return []
    wanted = pa.array(sorted(calls), pa.string())
    counts = {}
    for table in ("utterances", "voice_activity"):
        ids = read_arrow(out_dir, table, ["call_id"])["call_id"]
        ids = ids.filter(pc.is_in(ids, value_set=wanted))
        counts[table] = dict(zip(*(c.to_pylist() for c in pc.value_counts(ids).flatten()))) if len(ids) else {}
    return sorted(cid for cid, row in calls.items()
                  if counts["utterances"].get(cid, 0) != (row["n_utterances"] or 0)
                  or (row["n_utterances"] and not counts["voice_activity"].get(cid)))


def _sha256_or_none(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def find_stored_transcripts(out_dir: str | Path, recordings: list[Recording], fingerprint: str,
                            tz: ZoneInfo, content_path: Callable[[Recording], Path] | None = None) -> StoredTranscripts:
    """Which of ``recordings`` were already transcribed into ``out_dir`` the way tonight would.

    Args:
        out_dir: the output folder.
        recordings: the night's recordings.
        fingerprint: tonight's transcription fingerprint.
        tz: the contact centre's timezone (a changed start time moves a call to another date).
        content_path: the file whose bytes a call's transcript comes from (default: the recording;
            an imported call: its transcript file).

    Returns:
        The reusable calls (their rows are read later, by :func:`stored_rows`). A recording that cannot be read just now is not
        reused: transcribing it reports (and retries) the read error.
    """
    stored = read_arrow(out_dir, "calls", ["call_id", "status", "content_sha256", "transcription_fingerprint",
                                           "agent_channel", "company", "error_stage", "n_utterances"])
    known = {row["call_id"]: row for row in stored.to_pylist()}
    dates = {cid: row[PARTITION_COLUMN] for cid, row in known.items()}
    reuse: dict[str, Recording] = {}
    for rec in recordings:
        row = known.get(rec.call_id)
        if (row is not None and has_transcript(row) and row["transcription_fingerprint"] == fingerprint
                and row["agent_channel"] == rec.agent_channel and row["company"] == rec.company
                and row["content_sha256"] == _sha256_or_none(content_path(rec) if content_path else rec.path)):
            reuse[rec.call_id] = rec
    for call_id in _incomplete(out_dir, {cid: known[cid] for cid in reuse}):
        logger.warning("%s: the stored transcript is incomplete (its utterances or voice activity are missing): "
                       "transcribed again", call_id)
        del reuse[call_id]
    return StoredTranscripts(list(reuse.values()), {cid: dates[cid] for cid in reuse})


def stored_rows(out_dir: str | Path, stored: StoredTranscripts, tz: ZoneInfo) -> dict[str, list[dict]]:
    """The stored transcript rows (``calls``, ``utterances``, ``voice_activity``, ``suppressed``) of
    ``stored``'s calls, with tonight's manifest metadata (agent, file, path, start time, call date)
    on them. Only the partitions they are stored under are read, a row group at a time.

    Raises:
        StoreError, SchemaMismatchError: a stored file cannot be read.
    """
    by_id = {r.call_id: r for r in stored.recordings}
    wanted = set(by_id)
    dates = sorted(set(stored.dates.values()))
    rows: dict[str, list[dict]] = {}
    for table in TRANSCRIPT_TABLES:
        parts = [read_arrow(out_dir, table, dates=(date, date), call_ids=wanted) for date in dates]
        rows[table] = [row for part in parts for row in part.to_pylist()]
    for row in rows["calls"]:  # the manifest may have changed who took the call, when, how it ended and how
        rec = by_id[row["call_id"]]  # the customer rated it (ratings often arrive days later)
        row.update(agent_id=rec.agent_id, file=rec.file, started_at=rec.started_at,
                   path=readable_name(str(Path(rec.path).resolve())), hangup_by=rec.hangup_by,
                   satisfaction=rec.satisfaction)
    for table in TRANSCRIPT_TABLES:
        for row in rows[table]:
            row[PARTITION_COLUMN] = call_date(by_id[row["call_id"]].started_at, tz)
    return rows

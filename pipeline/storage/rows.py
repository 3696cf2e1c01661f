"""A night's results as table rows: what each :class:`~pipeline.records.CallResult` becomes in
``calls``, ``utterances``, ``voice_activity``, ``suppressed`` and ``errors``.

Every input of a night gets a ``calls`` row, so that ok + unscorable + error = inputs: a recording
processed (ok or failed), and an input rejected before processing (a manifest row that cannot be used,
an audio file the manifest lacks), whose row says what is known of it, with status ``error`` and a
``call_id`` of its own (``rejected:FILE``) that never replaces a real call's row.

Every row carries its ``call_date`` (the partition), the call's start in the contact centre's
timezone. The rows are plain dicts with exactly the schema's columns (``schemas.py``).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo

from ..records import STATUS_ERROR, CallResult, ErrorRecord
from ..schemas import PARTITION_COLUMN, TABLES, appended


def call_date(moment: datetime | None, tz: ZoneInfo) -> str:
    """The call date (local to the contact centre) that partitions a row; today for no moment."""
    return (moment or datetime.now(timezone.utc)).astimezone(tz).date().isoformat()


def error_row(error: ErrorRecord, run_id: str, date: str, occurred_at: datetime) -> dict:
    """One ``errors`` row."""
    return {PARTITION_COLUMN: date, "file": error.file, "call_id": error.call_id, "stage": error.stage,
            "error_type": error.error_type, "message": error.message, "run_id": run_id,
            "occurred_at": occurred_at}


def call_row(result: CallResult, run_id: str, date: str) -> dict:
    """One ``calls`` row (the score columns are filled in by the rubric, later)."""
    rec = result.recording
    return {
        PARTITION_COLUMN: date, "call_id": rec.call_id, "agent_id": rec.agent_id, "file": rec.file,
        "started_at": rec.started_at, "duration_s": result.duration_s, "channels": result.channels,
        "sample_rate": result.sample_rate, "codec": result.codec, "agent_channel": rec.agent_channel,
        "company": rec.company, "status": result.status, "model": result.model,
        "processed_at": result.processed_at, "run_id": run_id, "n_utterances": len(result.utterances),
        "warnings": list(result.warnings), "agent_language": result.agent_language,
        "agent_language_prob": result.agent_language_prob, "agent_zh_prob": result.agent_zh_prob,
        "content_sha256": result.content_sha256,
        "transcription_fingerprint": result.transcription_fingerprint,
        "path": str(Path(rec.path).resolve()) if rec.path is not None else None,
        "error_stage": result.error.stage if result.error is not None else None,
        "status_reason": f"{result.error.error_type}: {result.error.message}" if result.error is not None else None,
        "truncated": result.truncated, "roles_method": result.roles_method,
        "roles_confidence": result.roles_confidence}


def rejected_call_id(error: ErrorRecord) -> str:
    """The ``calls`` id of an input rejected before processing: its own, so it never replaces a real call."""
    return f"rejected:{error.file}" if error.file else f"rejected:manifest.csv line {error.line}"


def rejected_row(error: ErrorRecord, run_id: str, date: str, now: datetime) -> dict:
    """The ``calls`` row of an input rejected before processing: status error, never scored."""
    return {
        PARTITION_COLUMN: date, "call_id": rejected_call_id(error), "agent_id": error.agent_id or "unknown",
        "file": error.file, "started_at": error.started_at or now, "duration_s": None, "channels": None,
        "sample_rate": None, "codec": None, "agent_channel": None, "company": None, "status": STATUS_ERROR,
        "model": "", "processed_at": now, "run_id": run_id, "n_utterances": 0, "warnings": [],
        "agent_language": None, "agent_language_prob": None, "agent_zh_prob": None, "content_sha256": None,
        "transcription_fingerprint": None, "path": error.path, "error_stage": error.stage,
        "status_reason": f"{error.error_type}: {error.message}", "truncated": None, "roles_method": None,
        "roles_confidence": None}


def rows_for_run(results: Iterable[CallResult], errors: Iterable[ErrorRecord], run_id: str,
                 tz: ZoneInfo) -> dict[str, list[dict]]:
    """Flatten a run's results, and the inputs it rejected before processing, into rows per table.

    Args:
        results: one per recording processed (ok or failed).
        errors: inputs rejected before processing (manifest rows, files the manifest does not list).
        run_id: the run that made the rows.
        tz: the contact centre's timezone (call dates).

    Returns:
        Table name -> rows; every table of the schema a night writes is present, possibly empty (not
        ``reviews``, which only reviewers add to).
    """
    now = datetime.now(timezone.utc)
    tables: dict[str, list[dict]] = {name: [] for name in TABLES if not appended(name)}
    errors = list(errors)
    for error in errors:  # inputs rejected before processing are inputs too
        tables["calls"].append(rejected_row(error, run_id, call_date(error.started_at, tz), now))
    for result in results:
        date = call_date(result.recording.started_at, tz)
        call_id = result.recording.call_id
        tables["calls"].append(call_row(result, run_id, date))
        for u in result.utterances:
            row = asdict(u)
            tables["utterances"].append({PARTITION_COLUMN: date, **row})
        for region in result.voice_activity:
            tables["voice_activity"].append({PARTITION_COLUMN: date, "call_id": call_id, **asdict(region)})
        for item in result.suppressed:
            tables["suppressed"].append({PARTITION_COLUMN: date, "call_id": call_id, **asdict(item)})
        if result.error is not None:
            errors.append(result.error)
    tables["errors"] = [error_row(e, run_id, call_date(e.started_at, tz), now) for e in errors]
    return tables

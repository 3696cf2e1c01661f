"""A night's results as table rows: what each :class:`~pipeline.records.CallResult` becomes in
``calls``, ``utterances``, ``voice_activity``, ``suppressed`` and ``errors``.

Every input of a night gets a ``calls`` row, so that ok + unscorable + error = inputs: a recording
processed (ok or failed), and an input rejected before processing (a manifest row that cannot be used,
an audio file the manifest lacks), whose row says what is known of it, with status ``error`` and a
``call_id`` of its own (``rejected:FILE``) that never replaces a real call's row.

Every row carries its ``call_date`` (the partition), the call's start in the contact centre's
timezone. The rows are plain dicts with exactly the schema's columns (``schemas.py``).

The second half reads no rows: :func:`transcript_of_result` and :func:`transcripts_of` build the
typed :class:`~pipeline.records.CallTranscript` it reads (from a fresh result, or from rows as
stored), and :func:`with_scores` turns what it returns back into rows.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping
from zoneinfo import ZoneInfo

from ..records import (STATUS_ERROR, STATUS_OK, CallResult, CallTranscript, ErrorRecord, NumberMark, PhraseCheck,
                       Scoring, Utterance, Verdict, Word, has_transcript)
from ..schemas import PARTITION_COLUMN, TABLES, appended
from ..text import readable_name


def call_date(moment: datetime | None, tz: ZoneInfo) -> str:
    """The call date (local to the contact centre) that partitions a row; today for no moment."""
    return (moment or datetime.now(timezone.utc)).astimezone(tz).date().isoformat()


def error_row(error: ErrorRecord, run_id: str, date: str, occurred_at: datetime) -> dict:
    """One ``errors`` row."""
    return {PARTITION_COLUMN: date, "file": readable_name(error.file), "call_id": error.call_id, "stage": error.stage,
            "error_type": error.error_type, "message": readable_name(error.message), "run_id": run_id,
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
        "warnings": [readable_name(w) for w in result.warnings], "agent_language": result.agent_language,
        "agent_language_prob": result.agent_language_prob, "agent_zh_prob": result.agent_zh_prob,
        "content_sha256": result.content_sha256,
        "transcription_fingerprint": result.transcription_fingerprint,
        "path": readable_name(str(Path(rec.path).resolve())) if rec.path is not None else None,
        "error_stage": result.error.stage if result.error is not None else None,
        "status_reason": (readable_name(f"{result.error.error_type}: {result.error.message}")
                          if result.error is not None else None),
        "truncated": result.truncated, "roles_method": result.roles_method,
        "roles_confidence": result.roles_confidence, "hangup_by": rec.hangup_by, "satisfaction": rec.satisfaction,
        "crosstalk_db": result.crosstalk_db}


def rejected_call_id(error: ErrorRecord) -> str:
    """The ``calls`` id of an input rejected before processing: its own, so it never replaces a real call."""
    return f"rejected:{readable_name(error.file)}" if error.file else f"rejected:manifest.csv line {error.line}"


def rejected_row(error: ErrorRecord, run_id: str, date: str, now: datetime) -> dict:
    """The ``calls`` row of an input rejected before processing: status error, never scored."""
    return {
        PARTITION_COLUMN: date, "call_id": rejected_call_id(error), "agent_id": error.agent_id or "unknown",
        "file": readable_name(error.file), "started_at": error.started_at or now, "duration_s": None, "channels": None,
        "sample_rate": None, "codec": None, "agent_channel": None, "company": None, "status": STATUS_ERROR,
        "model": "", "processed_at": now, "run_id": run_id, "n_utterances": 0, "warnings": [],
        "agent_language": None, "agent_language_prob": None, "agent_zh_prob": None, "content_sha256": None,
        "transcription_fingerprint": None, "path": readable_name(error.path) if error.path else None,
        "error_stage": error.stage, "status_reason": readable_name(f"{error.error_type}: {error.message}"), "truncated": None, "roles_method": None,
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


# -- between the halves: typed transcripts in, scores out --------------------------------------------

def _present(value):
    """A stored value, None when missing (pandas reads nulls back as NaN)."""
    return None if value is None or value != value else value


def _number(value) -> float | None:
    value = _present(value)
    return None if value is None else float(value)


def word_of(row: Mapping[str, Any]) -> Word:
    """A stored word (``utterances.words`` entry) as a :class:`~pipeline.records.Word`."""
    return Word(str(row["word"]), float(row["start_s"]), float(row["end_s"]), _number(row.get("prob")))


def words_of(rows) -> list[Word]:
    """An utterance's stored words (None: none stored)."""
    return [word_of(w) for w in rows] if rows is not None else []


def check_of(row: Mapping[str, Any]) -> PhraseCheck:
    """A stored phrase check (``utterances.checks`` entry) as a :class:`~pipeline.records.PhraseCheck`."""

    def floats(key: str) -> list[float]:
        values = row.get(key)
        return [float(v) for v in values] if values is not None else []

    options = row.get("options")
    return PhraseCheck(str(row["phrase"]), int(row["key_start"]), int(row["key_end"]), str(row.get("heard") or ""),
                       [str(o) for o in options] if options is not None else [], floats("logprobs"),
                       floats("priors"), str(row.get("prefix") or ""), float(row.get("clip_start_s") or 0.0),
                       float(row.get("clip_end_s") or 0.0))


def utterance_of(row: Mapping[str, Any]) -> Utterance:
    """A stored ``utterances`` row (all columns, or the ones a reader chose) as an
    :class:`~pipeline.records.Utterance`."""
    checks, numbers = row.get("checks"), row.get("numbers")
    return Utterance(str(row["call_id"]), int(row["utterance_idx"]), str(row["speaker"]), float(row["start_s"]),
                     float(row["end_s"]), str(row["text"]), str(row.get("raw_text") or row["text"]),
                     _number(row.get("avg_logprob")), _number(row.get("no_speech_prob")), words_of(row.get("words")),
                     _number(row.get("role_confidence")), [check_of(c) for c in checks] if checks is not None else [],
                     [NumberMark(int(n["start"]), int(n["end"]), str(n["code"])) for n in numbers]
                     if numbers is not None else None)


def _strings(values) -> tuple[str, ...]:
    """A stored list of strings (pandas reads one back as an array; a missing one as None or NaN)."""
    return tuple(str(v) for v in values) if values is not None and not isinstance(values, float) else ()


def transcript_of_rows(call: Mapping[str, Any], utterances: Iterable[Mapping[str, Any]],
                       voice: Iterable[Mapping[str, Any]] = ()) -> CallTranscript:
    """One call's transcript from its rows as stored: its ``calls`` row, its ``utterances`` rows and
    its ``voice_activity`` rows."""
    ordered = sorted((utterance_of(r) for r in utterances), key=lambda u: (u.start_s, u.utterance_idx))
    truncated = _present(call.get("truncated"))
    return CallTranscript(
        str(call["call_id"]), str(call.get("agent_id") or ""), str(call.get("company") or ""),
        int(call["channels"]) if _present(call.get("channels")) is not None else None,
        _number(call.get("duration_s")), tuple(ordered),
        tuple((str(v["speaker"]), float(v["start_s"]), float(v["end_s"])) for v in voice),
        _present(call.get("file")), _present(call.get("started_at")), _present(call.get(PARTITION_COLUMN)),
        _present(call.get("run_id")), str(call.get("status") or STATUS_OK), _present(call.get("error_stage")),
        bool(truncated) if truncated is not None else None, _strings(call.get("warnings")),
        _present(call.get("agent_language")), _number(call.get("agent_language_prob")),
        _number(call.get("agent_zh_prob")), _number(call.get("roles_confidence")), _present(call.get("hangup_by")))


def transcripts_of(tables: Mapping[str, list[dict]]) -> list[CallTranscript]:
    """The transcripts of every call of ``tables`` (rows per table, as :func:`rows_for_run` makes them or
    as read back) that has one (:func:`~pipeline.records.has_transcript`), in the order of ``calls``."""
    utterances: dict[str, list[dict]] = {}
    for row in tables.get("utterances", []):
        utterances.setdefault(row["call_id"], []).append(row)
    voice: dict[str, list[dict]] = {}
    for row in tables.get("voice_activity", []):
        voice.setdefault(row["call_id"], []).append(row)
    return [transcript_of_rows(call, utterances.get(call["call_id"], []), voice.get(call["call_id"], []))
            for call in tables["calls"] if has_transcript(call)]


def transcript_of_result(result: CallResult, tz: ZoneInfo, run_id: str | None = None) -> CallTranscript | None:
    """A fresh result's transcript (None: it failed, it has none)."""
    if result.status != STATUS_OK:
        return None
    rec = result.recording
    return CallTranscript(
        rec.call_id, rec.agent_id, rec.company or "", result.channels, result.duration_s,
        tuple(sorted(result.utterances, key=lambda u: (u.start_s, u.utterance_idx))),
        tuple((v.speaker, v.start_s, v.end_s) for v in result.voice_activity), rec.file, rec.started_at,
        call_date(rec.started_at, tz), run_id, result.status, None, result.truncated, tuple(result.warnings),
        result.agent_language, result.agent_language_prob, result.agent_zh_prob, result.roles_confidence,
        rec.hangup_by)


SCORE_COLUMNS = ("status", "status_reason", "error_stage", "score", "passed", "red_line")


def with_scores(tables: Mapping[str, list], scoring: Scoring) -> dict[str, list]:
    """New tables: ``tables`` with each call's row carrying its :class:`~pipeline.records.CallScore` (a
    call without one, failed before the rules, is left unscored), every call stamped with the rubric's
    and lexicons' versions, the hits and rule results of ``scoring``, and an ``errors`` row for each
    call a rule crashed on."""
    by_call = {s.call_id: s for s in scoring.calls}
    calls = []
    for row in tables["calls"]:
        score = by_call.get(row["call_id"])
        values = ({c: getattr(score, c) for c in SCORE_COLUMNS} | {"warnings": list(score.warnings)}
                  if score is not None else {"score": None, "passed": None, "red_line": None})
        calls.append({**row, **values, "rubric_version": scoring.rubric_version,
                      "lexicon_version": scoring.lexicon_version or row.get("lexicon_version")})
    known = {row["call_id"]: row for row in calls}
    now = datetime.now(timezone.utc)
    added = []
    for error in scoring.errors:
        row = known.get(error.call_id, {})
        added.append(error_row(error, row.get("run_id") or "", row.get(PARTITION_COLUMN)
                               or call_date(error.started_at, timezone.utc), now))
    return {**tables, "calls": calls, "hits": list(scoring.hits), "rule_results": list(scoring.results),
            "commitments": list(scoring.commitments), "errors": list(tables.get("errors", [])) + added}


def latest_verdicts(reviews: Iterable[dict]) -> dict[tuple[str, str], Verdict]:
    """The verdict that counts per (call_id, rule_id): the latest ``kind = verdict`` row.

    Args:
        reviews: rows of the ``reviews`` table (dicts), in any order.

    Returns:
        (call_id, rule_id) -> its latest verdict; ties in time go to the larger review id, so every
        reader picks the same row.
    """
    latest: dict[tuple[str, str], tuple] = {}
    for row in reviews:
        if row.get("kind") != "verdict" or not row.get("verdict"):
            continue
        key = (row["call_id"], row["rule_id"])
        order = (row["recorded_at"], row["review_id"])
        if key not in latest or order > latest[key][0]:
            latest[key] = (order, row)
    return {key: Verdict(row["call_id"], row["rule_id"], row["verdict"], row.get("machine_outcome") or "",
                         row.get("reviewer") or "", row["recorded_at"], row.get("comment"))
            for key, (_, row) in latest.items()}

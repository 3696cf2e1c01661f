"""Finding the night's recordings: manifest.csv when present, otherwise every audio file.

Row-level problems (a missing file, a bad timestamp, a duplicate call id) become ErrorRecords and the
other rows go on; problems with the manifest as a whole (missing required column, unknown column,
unreadable file) raise ManifestError, because no row of it can be trusted.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ..config import AGENT_CHANNELS, InputOptions
from ..errors import InputError, ManifestError, ManifestRowError, NotInManifestError
from ..records import ErrorRecord, Recording

logger = logging.getLogger("callqa.discover")

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("file", "agent_id", "call_id", "started_at", "agent_channel", "company")
REQUIRED_COLUMNS = ("file", "agent_id")
UNKNOWN_AGENT = "unknown"


@dataclass
class Discovery:
    """What a run will process, what it could not accept, and what it ignored (not audio)."""

    recordings: list[Recording] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def parse_started_at(value: str, tz: ZoneInfo) -> datetime:
    """Parse an ISO 8601 timestamp; a timestamp without offset is local time in ``tz``.

    Raises:
        ValueError: the text is not ISO 8601.
    """
    parsed = datetime.fromisoformat(value.strip())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _file_time(path: Path, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz)


def _audio_files(input_dir: Path, options: InputOptions) -> tuple[list[Path], list[str]]:
    audio, ignored = [], []
    for path in sorted(p for p in input_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(input_dir)
        if any(part.startswith(".") for part in rel.parts) or rel.as_posix() == MANIFEST_NAME:
            continue
        if path.suffix.lower() in options.audio_extensions:
            audio.append(path)
        else:
            ignored.append(rel.as_posix())
    return audio, ignored


def _default_call_ids(rel_paths: list[str]) -> dict[str, str]:
    """File stem as call id; where two files share a stem, the relative path (``/`` -> ``__``)."""
    stems: dict[str, int] = {}
    for rel in rel_paths:
        stems[Path(rel).stem] = stems.get(Path(rel).stem, 0) + 1
    return {rel: Path(rel).stem if stems[Path(rel).stem] == 1
            else re.sub(r"[/\\]", "__", str(Path(rel).with_suffix(""))) for rel in rel_paths}


def discover_recordings(input_dir: str | Path, options: InputOptions) -> Discovery:
    """List the recordings of a folder with their metadata.

    Args:
        input_dir: the folder of recordings (with an optional manifest.csv).
        options: defaults for channel, company and timezone.

    Returns:
        Recordings to process, row errors, and files ignored because they are not audio.

    Raises:
        InputError: the folder does not exist or cannot be read.
        ManifestError: manifest.csv is unreadable or its header is wrong.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist or is not a folder")
    tz = ZoneInfo(options.timezone)
    try:
        audio, ignored = _audio_files(input_dir, options)
    except OSError as exc:
        raise InputError(f"cannot read input folder {input_dir}: {exc}") from exc
    manifest = input_dir / MANIFEST_NAME
    if not manifest.exists():
        ids = _default_call_ids([p.relative_to(input_dir).as_posix() for p in audio])
        recordings = [Recording(path=p, file=rel, call_id=ids[rel], agent_id=UNKNOWN_AGENT,
                                started_at=_file_time(p, tz), agent_channel=options.agent_channel,
                                company=options.company)
                      for p in audio for rel in [p.relative_to(input_dir).as_posix()]]
        return Discovery(recordings, [], ignored)
    discovery = read_manifest(manifest, input_dir, options)
    listed = {r.path.resolve() for r in discovery.recordings}
    listed |= {(input_dir / e.file).resolve() for e in discovery.errors if e.file}
    for path in audio:
        if path.resolve() not in listed:
            rel = path.relative_to(input_dir).as_posix()
            discovery.errors.append(ErrorRecord(
                file=rel, call_id=None, stage=NotInManifestError.stage, error_type=NotInManifestError.__name__,
                message=f"{rel} is an audio file in the input folder but manifest.csv does not list it; "
                        "add a row for it (agent_id is required) or move it out of the folder"))
    discovery.ignored = ignored
    return discovery


def read_manifest(manifest: Path, input_dir: Path, options: InputOptions) -> Discovery:
    """Read manifest.csv (UTF-8, with or without BOM, as Excel writes it).

    Raises:
        ManifestError: unreadable file, missing required column, or unknown column.
    """
    tz = ZoneInfo(options.timezone)
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{manifest}: cannot read: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"{manifest}: missing required column(s) {', '.join(missing)}; "
                            f"the header must name {', '.join(REQUIRED_COLUMNS)} "
                            f"(optional: {', '.join(MANIFEST_COLUMNS[2:])})")
    unknown = [c for c in header if c not in MANIFEST_COLUMNS]
    if unknown:
        raise ManifestError(f"{manifest}: unknown column(s) {', '.join(unknown)}; "
                            f"known columns: {', '.join(MANIFEST_COLUMNS)}")
    discovery = Discovery()
    seen_files: dict[Path, int] = {}
    seen_ids: dict[str, int] = {}
    root = input_dir.resolve()
    for line, raw in enumerate(rows, start=2):  # line 1 is the header
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            discovery.errors.append(_row_error(row.get("file", ""), None, line,
                                               "more fields than the header has columns"))
            continue
        file = row.get("file", "")
        call_id = row.get("call_id") or (Path(file).stem if file else "")
        try:
            if not file:
                raise ManifestRowError("the file column is empty")
            path = (input_dir / file).resolve()
            if root not in path.parents:
                raise ManifestRowError(f"file {file!r} is outside the input folder")
            if not path.is_file():
                raise ManifestRowError(f"file {file!r} does not exist")
            if path in seen_files:
                raise ManifestRowError(f"file {file!r} is listed twice (first on line {seen_files[path]})")
            agent_id = row.get("agent_id", "")
            if not agent_id:
                raise ManifestRowError("agent_id is empty (it is required when a manifest is given)")
            if call_id in seen_ids:
                raise ManifestRowError(f"call_id {call_id!r} is used twice (first on line {seen_ids[call_id]})")
            channel = (row.get("agent_channel") or options.agent_channel).lower()
            if channel not in AGENT_CHANNELS:
                raise ManifestRowError(f"agent_channel {row.get('agent_channel')!r} is not one of "
                                       f"{', '.join(AGENT_CHANNELS)}")
            if row.get("started_at"):
                try:
                    started_at = parse_started_at(row["started_at"], tz)
                except ValueError:
                    raise ManifestRowError(f"started_at {row['started_at']!r} is not an ISO 8601 timestamp "
                                           "(e.g. 2026-11-20T09:30:00+08:00)") from None
            else:
                started_at = _file_time(path, tz)
        except ManifestRowError as exc:
            discovery.errors.append(_row_error(file, call_id or None, line, str(exc)))
            continue
        seen_files[path] = line
        seen_ids[call_id] = line
        discovery.recordings.append(Recording(
            path=path, file=Path(file).as_posix(), call_id=call_id, agent_id=agent_id, started_at=started_at,
            agent_channel=channel, company=row.get("company") or options.company))
    return discovery


def _row_error(file: str, call_id: str | None, line: int, message: str) -> ErrorRecord:
    return ErrorRecord(file=file, call_id=call_id, stage=ManifestRowError.stage,
                       error_type=ManifestRowError.__name__, message=f"manifest.csv line {line}: {message}")

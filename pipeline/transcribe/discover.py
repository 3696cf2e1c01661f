"""Finding the night's recordings: manifest.csv when present, otherwise every audio file.

Row-level problems (a missing file, a bad timestamp, a duplicate call id) become ErrorRecords and the
other rows go on; problems with the manifest as a whole (missing required column, unknown column,
unreadable file) raise ManifestError, because no row of it can be trusted. The manifest may be UTF-8
(with or without the BOM Excel writes) or GBK/GB18030 (what Chinese-locale Excel writes), detected, or
as ``[input] manifest_encoding`` says.

Symbolic links follow one policy, with or without a manifest: a link to a file inside the input folder
is followed; a link that leads outside it, a broken link and a linked folder (whose files would
otherwise be missed without a word) are refused, each with a message saying it is a link.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ..config import AGENT_CHANNELS, InputOptions
from ..errors import InputError, LinkError, ManifestError, ManifestRowError, NotInManifestError
from ..records import ErrorRecord, Recording, parse_hangup_by, parse_satisfaction
from ..text import on_disk, readable_name

logger = logging.getLogger("callqa.discover")

MANIFEST_NAME = "manifest.csv"
MANIFEST_COLUMNS = ("file", "agent_id", "call_id", "started_at", "agent_channel", "company", "hangup_by",
                    "satisfaction")
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


def _link_problem(path: Path, root: Path) -> str | None:
    """Why a path in the input folder that is (or passes through) a symbolic link cannot be used, or None."""
    rel = path.relative_to(root) if path.is_relative_to(root) else path
    links = [root / Path(*rel.parts[:i]) for i in range(1, len(rel.parts) + 1)]
    link = next((p for p in links if p.is_symlink()), None)
    if link is None:
        return None
    target = Path(os.path.realpath(link))
    if not target.exists():
        return f"{rel.as_posix()} is a broken symbolic link (to {os.readlink(link)})"
    if target != root.resolve() and root.resolve() not in target.parents:
        return (f"{rel.as_posix()} is a symbolic link to {target}, outside the input folder: copy the recording "
                "into the folder, or link to a file inside it")
    if link == path and target.is_dir():
        return (f"{rel.as_posix()} is a symbolic link to a folder, which callqa does not follow (its recordings "
                "would be missed): move or copy them into the input folder")
    return None


def _audio_files(input_dir: Path, options: InputOptions, tz: ZoneInfo) -> tuple[list[Path], list[str], list[ErrorRecord]]:
    """The audio files of a folder (by extension), the other files, and the links refused."""
    audio, ignored, refused = [], [], []
    for path in sorted(input_dir.rglob("*")):
        rel = path.relative_to(input_dir)
        if any(part.startswith(".") for part in rel.parts) or rel.as_posix() == MANIFEST_NAME:
            continue
        problem = _link_problem(path, input_dir)
        if problem is not None:
            refused.append(_link_error(readable_name(rel.as_posix()), problem, input_dir, tz))
            continue
        if path.suffix.lower() in options.audio_extensions and not path.is_file():  # a folder or a FIFO
            refused.append(ErrorRecord(                                                # named as audio
                file=readable_name(rel.as_posix()), call_id=None, stage="discover", error_type="InputError",
                message=f"{readable_name(rel.as_posix())} is named as audio but {_not_a_file(path)}: "
                        "not a recording", started_at=None, path=readable_name(str(path))))
            continue
        if not path.is_file():
            continue
        if path.suffix.lower() in options.audio_extensions:
            audio.append(path)
        else:
            ignored.append(readable_name(rel.as_posix()))
    return audio, ignored, refused


def _not_a_file(path: Path) -> str:
    """What a path that is not a regular file is, in words."""
    if path.is_dir():
        return "is a folder"
    if path.is_fifo():
        return "is a named pipe (FIFO)"
    if path.is_socket():
        return "is a socket"
    if path.is_char_device() or path.is_block_device():
        return "is a device"
    return "is not a regular file"


def _link_error(rel: str, message: str, input_dir: Path, tz: ZoneInfo, line: int | None = None) -> ErrorRecord:
    return ErrorRecord(file=rel, call_id=None, stage=LinkError.stage, error_type=LinkError.__name__,
                       message=message, started_at=datetime.now(tz), path=str(input_dir / rel), line=line)


def _default_call_ids(rel_paths: list[str]) -> dict[str, str]:
    """File stem as call id; where two files share a stem, the relative path (``/`` -> ``__``)."""
    stems: dict[str, int] = {}
    for rel in rel_paths:
        stems[Path(rel).stem] = stems.get(Path(rel).stem, 0) + 1
    return {rel: Path(rel).stem if stems[Path(rel).stem] == 1
            else re.sub(r"[/\\]", "__", str(Path(rel).with_suffix(""))) for rel in rel_paths}


def discover_recordings(input_dir: str | Path, options: InputOptions, kind: str = "an audio file") -> Discovery:
    """List the recordings of a folder with their metadata.

    Args:
        input_dir: the folder of recordings (with an optional manifest.csv).
        options: defaults for channel, company and timezone; ``audio_extensions``: the inputs' endings.
        kind: what an input is, for the message of one the manifest does not list.

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
        audio, ignored, refused = _audio_files(input_dir, options, tz)
    except OSError as exc:
        raise InputError(f"cannot read input folder {input_dir}: {exc}") from exc
    manifest = input_dir / MANIFEST_NAME
    if not manifest.exists():
        # a name that is not valid Unicode (GBK bytes from a Windows recorder) is stored as it reads
        ids = _default_call_ids([readable_name(p.relative_to(input_dir).as_posix()) for p in audio])
        recordings = [Recording(path=p.resolve(), file=rel, call_id=ids[rel], agent_id=UNKNOWN_AGENT,
                                started_at=_file_time(p, tz), agent_channel=options.agent_channel,
                                company=options.company)
                      for p in audio for rel in [readable_name(p.relative_to(input_dir).as_posix())]]
        return Discovery(recordings, refused, ignored)
    discovery = read_manifest(manifest, input_dir, options)
    listed_files = {r.file for r in discovery.recordings} | {e.file for e in discovery.errors if e.file}
    for error in refused:  # a refused link the manifest lists is already its row's error
        if error.file not in listed_files:
            discovery.errors.append(error)
            listed_files.add(error.file)
    # a file is listed when the manifest names it, or names a link to it (the same recording)
    listed = {r.path for r in discovery.recordings} | {Path(e.path).resolve() for e in discovery.errors if e.path}
    for path in audio:
        rel = readable_name(path.relative_to(input_dir).as_posix())
        if path.resolve() not in listed and rel not in listed_files:
            discovery.errors.append(ErrorRecord(
                file=rel, call_id=None, stage=NotInManifestError.stage, error_type=NotInManifestError.__name__,
                message=f"{rel} is {kind} in the input folder but manifest.csv does not list it; "
                        "add a row for it (agent_id is required) or move it out of the folder",
                started_at=_file_time(path, tz), path=readable_name(str(path.resolve()))))
    discovery.ignored = ignored
    return discovery


def read_manifest_text(manifest: Path, encoding: str = "auto") -> tuple[str, str]:
    """manifest.csv's text and the encoding it was read with.

    ``auto`` reads UTF-8 (with or without a BOM) and, failing that, GB18030 (a superset of GBK and
    GB2312, what Chinese-locale Excel writes); any other value is a Python codec name.

    Raises:
        ManifestError: the file cannot be read, or is not text in that encoding (or in either).
    """
    try:
        data = manifest.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{manifest}: cannot read: {exc}") from exc
    candidates = ("utf-8-sig", "gb18030") if encoding == "auto" else (encoding,)
    for candidate in candidates:
        try:
            return data.decode(candidate), "utf-8" if candidate == "utf-8-sig" else candidate
        except UnicodeDecodeError as exc:
            failure = exc
        except LookupError:
            raise ManifestError(f"[input] manifest_encoding {encoding!r} is not an encoding Python knows "
                                "(e.g. utf-8, gb18030)") from None
    tried = " nor ".join("UTF-8" if c == "utf-8-sig" else c.upper() for c in candidates)
    raise ManifestError(f"{manifest}: not {tried} text (byte 0x{data[failure.start]:02x} at position "
                        f"{failure.start}); save it as 'CSV UTF-8' (Excel: Save As), or set [input] "
                        "manifest_encoding to its encoding") from None


def read_manifest(manifest: Path, input_dir: Path, options: InputOptions) -> Discovery:
    """Read manifest.csv (UTF-8 with or without BOM, or GBK/GB18030; see :func:`read_manifest_text`).

    Raises:
        ManifestError: unreadable file, missing required column, or unknown column.
    """
    tz = ZoneInfo(options.timezone)
    text, _encoding = read_manifest_text(manifest, options.manifest_encoding)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip() for h in (reader.fieldnames or [])]
        rows = list(reader)
    except csv.Error as exc:
        raise ManifestError(f"{manifest}: not a readable CSV file: {exc}") from exc
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
    for line, raw in enumerate(rows, start=2):  # line 1 is the header
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        file = row.get("file", "")
        call_id = row.get("call_id") or (Path(file).stem if file else "")
        known = {"agent_id": row.get("agent_id") or None, "line": line,
                 "started_at": _started_or_none(row.get("started_at", ""), tz),
                 "path": os.path.normpath(input_dir / file) if file else None}
        try:
            if None in raw:
                raise ManifestRowError("more fields than the header has columns")
            if not file:
                raise ManifestRowError("the file column is empty")
            lexical = Path(os.path.normpath(input_dir.absolute() / file))
            if not lexical.is_relative_to(input_dir.absolute()):
                raise ManifestRowError(f"file {file!r} is outside the input folder")
            problem = _link_problem(lexical, input_dir.absolute())
            if problem is not None:
                raise LinkError(problem)
            path = on_disk(lexical).resolve()  # the name as written, or its GBK bytes on the disk
            known["path"] = readable_name(str(path))
            if not path.exists():
                raise ManifestRowError(f"file {file!r} does not exist")
            if not path.is_file():
                raise ManifestRowError(f"file {file!r} {_not_a_file(path)}: not a recording")
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
            try:
                hangup_by = parse_hangup_by(row.get("hangup_by", ""))
                satisfaction = parse_satisfaction(row.get("satisfaction", ""))
            except ValueError as exc:
                raise ManifestRowError(str(exc)) from None
        except (ManifestRowError, LinkError) as exc:
            discovery.errors.append(ErrorRecord(
                file=file, call_id=call_id or None, stage=ManifestRowError.stage, error_type=type(exc).__name__,
                message=f"manifest.csv line {line}: {exc}", started_at=known["started_at"],
                agent_id=known["agent_id"], path=known["path"], line=line))
            continue
        seen_files[path] = line
        seen_ids[call_id] = line
        discovery.recordings.append(Recording(
            path=path, file=Path(file).as_posix(), call_id=call_id, agent_id=agent_id, started_at=started_at,
            agent_channel=channel, company=row.get("company") or options.company, hangup_by=hangup_by,
            satisfaction=satisfaction))
    return discovery


def _started_or_none(value: str, tz: ZoneInfo) -> datetime | None:
    """A manifest row's start time if it parses (to date a rejected row), else None."""
    try:
        return parse_started_at(value, tz) if value else None
    except ValueError:
        return None

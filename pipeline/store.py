"""The only module that reads or writes Parquet.

Layout: ``OUT_DIR/<table>/call_date=YYYY-MM-DD/part-0.parquet``, one file per table and call date.
A write merges into that file: rows of the calls (or files) being written replace their earlier rows,
so running the same night twice never duplicates anything. The new file is written beside the old one
under a hidden name and renamed over it, so a reader never sees a half-written file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import defaultdict
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .errors import SchemaMismatchError, StoreError
from .records import CallResult, ErrorRecord
from .schemas import PARTITION_COLUMN, SCHEMA_VERSION, TABLES

logger = logging.getLogger("callqa.store")

PART_NAME = "part-0.parquet"
# Tables derived from the whole history and rewritten whole (replace_table), not merged per call.
WHOLE_TABLES = ("agent_scores",)
# Which column identifies the unit a write replaces, per table.
_REPLACE_BY = {"calls": "call_id", "utterances": "call_id", "voice_activity": "call_id",
               "suppressed": "call_id", "errors": "file", "hits": "call_id", "rule_results": "call_id",
               "agent_scores": "agent_id"}


def call_date(moment: datetime | None, tz: ZoneInfo) -> str:
    """The call date (local to the contact centre) that partitions a row."""
    return (moment or datetime.now(timezone.utc)).astimezone(tz).date().isoformat()


def rows_for_run(results: Iterable[CallResult], errors: Iterable[ErrorRecord], run_id: str,
                 tz: ZoneInfo) -> dict[str, list[dict]]:
    """Flatten a run's results into rows per table, each with its ``call_date``."""
    now = datetime.now(timezone.utc)
    tables: dict[str, list[dict]] = {name: [] for name in TABLES}
    for result in results:
        rec = result.recording
        date = call_date(rec.started_at, tz)
        tables["calls"].append({
            PARTITION_COLUMN: date, "call_id": rec.call_id, "agent_id": rec.agent_id, "file": rec.file,
            "started_at": rec.started_at, "duration_s": result.duration_s, "channels": result.channels,
            "sample_rate": result.sample_rate, "codec": result.codec, "agent_channel": rec.agent_channel,
            "company": rec.company, "status": result.status, "model": result.model,
            "processed_at": result.processed_at, "run_id": run_id, "n_utterances": len(result.utterances),
            "warnings": list(result.warnings), "agent_language": result.agent_language,
            "agent_language_prob": result.agent_language_prob, "content_sha256": result.content_sha256,
            "transcription_fingerprint": result.transcription_fingerprint,
            "path": str(Path(rec.path).resolve()) if rec.path is not None else None})
        for u in result.utterances:
            row = asdict(u)
            row["words"] = [asdict(w) for w in u.words]
            tables["utterances"].append({PARTITION_COLUMN: date, **row})
        for region in result.voice_activity:
            tables["voice_activity"].append({PARTITION_COLUMN: date, "call_id": rec.call_id, **asdict(region)})
        for item in result.suppressed:
            tables["suppressed"].append({PARTITION_COLUMN: date, "call_id": rec.call_id, **asdict(item)})
        if result.error is not None:
            errors = [*errors, result.error]
    for error in errors:
        tables["errors"].append({
            PARTITION_COLUMN: call_date(error.started_at, tz), "file": error.file, "call_id": error.call_id,
            "stage": error.stage, "error_type": error.error_type, "message": error.message, "run_id": run_id,
            "occurred_at": now})
    return tables


def to_arrow(table: str, rows: list[dict]) -> pa.Table:
    """Build an Arrow table for ``table`` from rows, validated against its schema.

    Raises:
        SchemaMismatchError: a column is missing, extra, or of the wrong type.
    """
    schema = TABLES[table]
    # keys starting with "_" are working data of the stage that made the rows, never columns
    extra = {k for row in rows for k in row if not k.startswith("_")} - set(schema.names) - {PARTITION_COLUMN}
    if extra:
        raise SchemaMismatchError(f"{table}: columns not in schema v{SCHEMA_VERSION}: {sorted(extra)}")
    try:
        return pa.Table.from_pylist([{k: row.get(k) for k in schema.names} for row in rows], schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise SchemaMismatchError(f"{table}: rows do not match schema v{SCHEMA_VERSION}: {exc}") from exc


def _major(version: bytes | None) -> str:
    return (version or b"?").decode().split(".")[0]


def conform(stored: pa.Table, table: str, where: str) -> pa.Table:
    """A stored table in the current schema: columns an older minor version lacks become nulls.

    Raises:
        SchemaMismatchError: the file has another major schema version, or its columns cannot be cast.
    """
    schema = TABLES[table]
    version = (stored.schema.metadata or {}).get(b"callqa.schema_version")
    if _major(version) != _major(SCHEMA_VERSION.encode()):
        raise SchemaMismatchError(f"{where}: schema version {version!r}, this callqa reads {SCHEMA_VERSION}")
    columns = [stored[f.name] if f.name in stored.column_names else pa.nulls(stored.num_rows, f.type)
               for f in schema]
    try:
        return pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaMismatchError(f"{where}: does not match schema {SCHEMA_VERSION}: {exc}") from exc


def _without(table: pa.Table, column: str, values: set[str]) -> pa.Table:
    """The rows of ``table`` whose ``column`` is not one of ``values``."""
    return table.filter(pc.invert(pc.is_in(table[column], value_set=pa.array(sorted(values), pa.string()))))


def _atomic_write(table: pa.Table, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=target.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _partitions(table: str, rows: list[dict] | pa.Table) -> dict[str, pa.Table]:
    """Rows (dicts, or an Arrow table with a ``call_date`` column) split by call date, in the schema."""
    if isinstance(rows, pa.Table):
        out = {}
        for date in pc.unique(rows[PARTITION_COLUMN]).to_pylist():
            part = rows.filter(pc.equal(rows[PARTITION_COLUMN], date)).drop_columns([PARTITION_COLUMN])
            try:
                out[date] = part.select(TABLES[table].names).cast(TABLES[table])
            except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
                raise SchemaMismatchError(f"{table}: table does not match schema v{SCHEMA_VERSION}: {exc}") from exc
        return out
    by_date: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_date[row[PARTITION_COLUMN]].append(row)
    return {date: to_arrow(table, date_rows) for date, date_rows in by_date.items()}


def write_table(out_dir: str | Path, table: str, rows: list[dict] | pa.Table, replace: set[str] | None = None) -> int:
    """Merge rows into a table's date partitions, atomically.

    Args:
        out_dir: the output folder.
        table: one of ``schemas.TABLES``.
        rows: rows with a ``call_date`` each (dicts, or an Arrow table with a ``call_date`` column).
        replace: values of the table's replace column whose old rows are removed (default: those in rows).

    Returns:
        The number of rows written.

    Raises:
        SchemaMismatchError: rows (or an existing file) do not match the schema.
        StoreError: the output cannot be written.
    """
    column = _REPLACE_BY[table]
    partitions = _partitions(table, rows)
    replace = set(replace or ()) | {v for part in partitions.values() for v in part[column].to_pylist()}
    try:
        for date, new in sorted(partitions.items()):
            target = Path(out_dir) / table / f"{PARTITION_COLUMN}={date}" / PART_NAME
            if target.exists():
                old = conform(pq.read_table(target), table, str(target))
                new = pa.concat_tables([_without(old, column, replace), new])
            _atomic_write(new, target)
    except OSError as exc:
        raise StoreError(f"cannot write {table} under {out_dir}: {exc}") from exc
    return sum(part.num_rows for part in partitions.values())


def write_run(out_dir: str | Path, tables: dict[str, list[dict]]) -> dict[str, int]:
    """Write every table of a run. Rows of the run's calls replace earlier rows of the same calls.

    Returns:
        Rows written per table.
    """
    call_ids = {row["call_id"] for row in tables.get("calls", [])}
    files = {row["file"] for row in tables.get("calls", [])} | {row["file"] for row in tables.get("errors", [])}
    dates = {row[PARTITION_COLUMN] for row in tables.get("calls", [])}
    _drop_moved_calls(out_dir, {row["call_id"]: row[PARTITION_COLUMN] for row in tables.get("calls", [])})
    written = {}
    for table in TABLES:
        if table in WHOLE_TABLES:
            continue
        rows = tables.get(table, [])
        replace = files if table == "errors" else call_ids
        if rows:
            written[table] = write_table(out_dir, table, rows, replace)
        else:
            written[table] = 0
            _remove_keys(out_dir, table, replace)
        # every table of a night exists, even with no rows, so readers get its columns instead of an error
        for date in dates:
            target = Path(out_dir) / table / f"{PARTITION_COLUMN}={date}" / PART_NAME
            if not target.exists():
                _atomic_write(TABLES[table].empty_table(), target)
    return written


def _drop_moved_calls(out_dir: str | Path, new_dates: dict[str, str]) -> None:
    """Remove the rows of calls that are stored under another call date than the one they are written
    with now (the manifest's start time changed), so that no call is ever stored twice."""
    if not new_dates or not (Path(out_dir) / "calls").exists():
        return
    stored = read_arrow(out_dir, "calls", ["call_id"])
    moved: dict[str, set[str]] = defaultdict(set)
    for call_id, date in zip(stored["call_id"].to_pylist(), stored[PARTITION_COLUMN].to_pylist()):
        if call_id in new_dates and new_dates[call_id] != date:
            moved[date].add(call_id)
    for date, call_ids in moved.items():
        logger.info("%d call(s) moved from call date %s: their old rows are removed", len(call_ids), date)
        for table in TABLES:
            if table in WHOLE_TABLES or _REPLACE_BY[table] != "call_id":
                continue
            target = Path(out_dir) / table / f"{PARTITION_COLUMN}={date}" / PART_NAME
            if target.exists():
                old = pq.read_table(target)
                _atomic_write(_without(old, "call_id", call_ids), target)


def _remove_keys(out_dir: str | Path, table: str, replace: set[str]) -> None:
    """Drop old rows of re-processed calls from a table that gets no new rows this time."""
    if not replace:
        return
    column = _REPLACE_BY[table]
    for target in sorted((Path(out_dir) / table).glob(f"{PARTITION_COLUMN}=*/{PART_NAME}")):
        old = pq.read_table(target)
        kept = _without(old, column, replace)
        if kept.num_rows < old.num_rows:
            _atomic_write(kept, target)


def replace_table(out_dir: str | Path, table: str, rows: list[dict]) -> int:
    """Rewrite a derived table whole (``agent_scores``): new partitions are written, then swapped in.

    Each partition file is replaced atomically; partitions that no longer have rows are removed last.

    Returns:
        The number of rows written.
    """
    by_date: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_date[row[PARTITION_COLUMN]].append(row)
    root = Path(out_dir) / table
    try:
        for date, date_rows in sorted(by_date.items()):
            _atomic_write(to_arrow(table, date_rows), root / f"{PARTITION_COLUMN}={date}" / PART_NAME)
        for stale in root.glob(f"{PARTITION_COLUMN}=*"):
            if stale.name.split("=", 1)[1] not in by_date:
                for child in stale.iterdir():
                    child.unlink()
                stale.rmdir()
    except OSError as exc:
        raise StoreError(f"cannot write {table} under {out_dir}: {exc}") from exc
    return len(rows)


def read_arrow(out_dir: str | Path, table: str, columns: list[str] | None = None,
               dates: tuple[str | None, str | None] = (None, None)) -> pa.Table:
    """Read a table (optionally some columns, optionally call dates ``from..to`` inclusive) as Arrow.

    Raises:
        SchemaMismatchError: a file has another major schema version.
    """
    schema = TABLES[table]
    path = Path(out_dir) / table
    wanted = [f for f in schema if columns is None or f.name in columns]
    out_schema = pa.schema(wanted + [pa.field(PARTITION_COLUMN, pa.string())])
    if not path.exists():
        return out_schema.empty_table()
    dataset = ds.dataset(path, format="parquet", partitioning=ds.partitioning(
        pa.schema([pa.field(PARTITION_COLUMN, pa.string())]), flavor="hive"))
    parts = []
    for fragment in dataset.get_fragments():
        date = fragment.path.rsplit(f"{PARTITION_COLUMN}=", 1)[1].split("/", 1)[0]
        if (dates[0] and date < dates[0]) or (dates[1] and date > dates[1]):
            continue
        stored = conform(fragment.to_table(schema=fragment.physical_schema), table, fragment.path)
        stored = stored.select([f.name for f in wanted])
        parts.append(stored.append_column(PARTITION_COLUMN, pa.array([date] * stored.num_rows, pa.string())))
    return pa.concat_tables(parts) if parts else out_schema.empty_table()


def read_table(out_dir: str | Path, table: str, columns: list[str] | None = None,
               dates: tuple[str | None, str | None] = (None, None)) -> pd.DataFrame:
    """Read a table (all dates, or ``dates`` from..to inclusive) into pandas, with ``call_date`` as a column.

    Returns:
        The rows; an empty frame with the schema's columns when nothing has been written yet.

    Raises:
        SchemaMismatchError: the files were written with another major schema version.
    """
    return read_arrow(out_dir, table, columns, dates).to_pandas()
